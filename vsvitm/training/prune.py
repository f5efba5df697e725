"""Narrower networks from trained ones: structured channel pruning, the start of a distilled student.

A half-width FCPM trained from scratch loses 1.5 dB (BENCHMARKS.md). Here a narrow network starts from the
trained one instead: each group of
channels that travels together (a layer's outputs and every input column that reads them) keeps its
most important members, and the training scripts then fine-tune it towards the wide network's output
(`--prune-from` with `--teacher`). Importance of channel i of a group = mean |activation| of i on real
batches x the norm of the weights that read i (a channel that is large but ignored, or read but
always near zero, contributes little).

A group is (size, producers, consumers, probe): producers are layer names whose output rows are the
group's channels (weight dim 0 and bias), consumers are (weight name, offset) pairs whose input columns
offset..offset+size read them (weight dim 1; Conv2d and Linear alike), probe is the module whose output
is the group's activation.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Group:
    size: int
    producers: list[str]
    consumers: list[tuple[str, int]]
    probe: str
    keep: list[int] = field(default_factory=list)


def icam_groups(cfg) -> dict[str, Group]:
    """ICAM's groups for a narrower c1 (the 1/2-res features: most of the reference step's cost).
    c1 space: the key's and references' features from e1 (one encoder) and the fused state fl, which is
    a residual stream (fl + fuse(...)), so all of them share one selection."""
    c, c2, k = cfg.c1, cfg.c2, cfg.offsets
    fuse_layers = [f"local.fuse.layers.{i}.weight" for i in range(3)] + ["local.fuse.out.weight"]
    return {
        "e1_mid": Group(c, ["enc.e1.0"], [("enc.e1.2.weight", 0)], "enc.e1.1"),
        "c1": Group(c, ["enc.e1.2", "local.fuse.out"],
                    [("local.correct.0.weight", 0), ("local.correct.0.weight", c), ("local.correct.0.weight", 2 * c),
                     ("local.offset.0.weight", 0), ("local.offset.0.weight", c), ("local.mask.0.weight", 0),
                     ("clue_w.0.weight", 0), ("enc.e2.0.weight", 0), ("d1.0.weight", c2)]
                    + [("local.dcn_out.weight", i * c) for i in range(k)] + [(w, 0) for w in fuse_layers],
                    "enc.e1.3"),
        # the aligned reference features and the filter mask that multiplies them
        "aligned": Group(c, ["local.dcn_out", "local.mask.2"],
                         [("local.mask.0.weight", c), ("clue_w.0.weight", c)] + [(w, c) for w in fuse_layers],
                         "local.dcn_out"),
        "d1_mid": Group(c, ["d1.0"], [("d1.2.weight", 0)], "d1.1"),
        "d1_out": Group(c, ["d1.2"], [("d0.0.weight", 0)], "d1.3"),
        # the flow-correction (eq. 3) and offset (eq. 5) nets' hidden layers
        "corr1": Group(cfg.align, ["local.correct.0"], [("local.correct.2.weight", 0)], "local.correct.1"),
        "corr2": Group(cfg.align, ["local.correct.2"], [("local.correct.4.weight", 0)], "local.correct.3"),
        "off1": Group(cfg.align, ["local.offset.0"], [("local.offset.2.weight", 0)], "local.offset.1"),
        "off2": Group(cfg.align, ["local.offset.2"], [("local.offset.4.weight", 0)], "local.offset.3"),
    }


def fcpm_groups(cfg) -> dict[str, Group]:
    """FCPM's groups for a narrower hidden state and mask net. Each direction's state is read by its
    own next step (after x, cur, xn: 3 + 4 + 3 columns) and by the fuse (hf first, then hb)."""
    h, m = cfg.hidden, cfg.mask_ch
    g = {"fuse_mid": Group(h, ["fuse_net.0"], [("fuse_net.2.weight", 0)], "fuse_net.1"),
         "hf": Group(h, ["prop_f.body.4"], [("prop_f.body.0.weight", 10), ("fuse_net.0.weight", 0)], "prop_f.body.5"),
         "hb": Group(h, ["prop_b.body.4"], [("prop_b.body.0.weight", 10), ("fuse_net.0.weight", h)], "prop_b.body.5")}
    for d in "fb":
        g[f"{d}_mid1"] = Group(h, [f"prop_{d}.body.0"], [(f"prop_{d}.body.2.weight", 0)], f"prop_{d}.body.1")
        g[f"{d}_mid2"] = Group(h, [f"prop_{d}.body.2"], [(f"prop_{d}.body.4.weight", 0)], f"prop_{d}.body.3")
    for name, off in (("local", 0), ("dilated", m)):
        g[f"m_{name}1"] = Group(m, [f"mask.{name}.0"], [(f"mask.{name}.2.weight", 0)], f"mask.{name}.1")
        g[f"m_{name}2"] = Group(m, [f"mask.{name}.2"], [("mask.out.weight", off)], f"mask.{name}.3")
    g["m_glob1"] = Group(m, ["mask.glob.0"], [("mask.glob.2.weight", 0)], "mask.glob.1")
    g["m_glob2"] = Group(m, ["mask.glob.2"], [("mask.glob_fc.0.weight", 0)], "mask.glob.3")
    g["m_glob3"] = Group(m, ["mask.glob_fc.0"], [("mask.out.weight", 2 * m)], "mask.glob_fc.1")
    g["corr1"] = Group(cfg.corr, ["correct.0"], [("correct.2.weight", 0)], "correct.1")
    g["corr2"] = Group(cfg.corr, ["correct.2"], [("correct.4.weight", 0)], "correct.3")
    return g


def measure(model: torch.nn.Module, groups: dict[str, Group], run) -> dict[str, torch.Tensor]:
    """Mean |activation| per channel of each group's probe over whatever `run()` feeds the model."""
    mods = dict(model.named_modules())
    sums = {n: torch.zeros(g.size, dtype=torch.float64) for n, g in groups.items()}
    hooks = []
    for name, g in groups.items():
        def hook(_mod, _inp, out, name=name):
            a = out.detach().abs().double()
            sums[name] += a.mean(dim=[d for d in range(a.dim()) if d != 1])
        hooks.append(mods[g.probe].register_forward_hook(hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in hooks:
            h.remove()
    return sums


def choose(groups: dict[str, Group], state: dict, activity: dict[str, torch.Tensor], widths: dict[str, int]) -> None:
    """Fill each group's `keep` with its `widths[name]` most important channels (in their order)."""
    for name, g in groups.items():
        n = widths.get(name, g.size)
        if not 0 < n <= g.size:
            raise ValueError(f"prune: group {name!r} has {g.size} channels, cannot keep {n}")
        reads = torch.zeros(g.size, dtype=torch.float64)
        for w, off in g.consumers:
            col = state[w][:, off: off + g.size].double()
            reads += col.pow(2).sum(dim=[d for d in range(col.dim()) if d != 1])
        score = activity[name] * reads.sqrt()
        g.keep = sorted(torch.argsort(score, descending=True)[:n].tolist())


def narrowed_state(wide: dict, groups: dict[str, Group], target: dict) -> dict:
    """The wide state dict cut to the kept channels; `target` (the narrow model's state dict) checks shapes."""
    rows: dict[str, list[int]] = {}
    cols: dict[str, list[tuple[int, Group]]] = {}
    for g in groups.values():
        for p in g.producers:
            rows[p + ".weight"] = rows[p + ".bias"] = g.keep
        for w, off in g.consumers:
            cols.setdefault(w, []).append((off, g))
    out = {}
    for k, v in wide.items():
        t = v
        if k in rows:
            t = t[rows[k]]
        if k in cols:
            keep_cols = []
            for j in range(t.shape[1]):
                hit = [(off, g) for off, g in cols[k] if off <= j < off + g.size]
                if not hit:
                    keep_cols.append(j)
                elif (j - hit[0][0]) in hit[0][1].keep:
                    keep_cols.append(j)
            t = t[:, keep_cols]
        if k not in target or t.shape != target[k].shape:
            raise ValueError(f"prune: {k} became {tuple(t.shape)}, the narrow network needs "
                             f"{tuple(target[k].shape) if k in target else 'nothing'}")
        out[k] = t.clone()
    missing = set(target) - set(out)
    if missing:
        raise ValueError(f"prune: the narrow network has tensors the wide one lacks: {sorted(missing)}")
    return out


def prune(wide: torch.nn.Module, narrow: torch.nn.Module, groups: dict[str, Group], widths: dict[str, int], run) -> dict:
    """Load into `narrow` the wide network's weights at the most important channels; returns the
    groups' kept channels (for the log). `run(model)` feeds the wide network real inputs."""
    activity = measure(wide, groups, lambda: run(wide))
    state = wide.state_dict()
    choose(groups, state, activity, widths)
    narrow.load_state_dict(narrowed_state(state, groups, narrow.state_dict()))
    return {n: g.keep for n, g in groups.items()}


def icam_widths(cfg_narrow) -> dict[str, int]:
    c, a = cfg_narrow.c1, cfg_narrow.align
    return {"e1_mid": c, "c1": c, "aligned": c, "d1_mid": c, "d1_out": c, "corr1": a, "corr2": a, "off1": a, "off2": a}


def fcpm_widths(cfg_narrow) -> dict[str, int]:
    h, m, r = cfg_narrow.hidden, cfg_narrow.mask_ch, cfg_narrow.corr
    return {n: (m if n.startswith("m_") else r if n.startswith("corr") else h) for n in fcpm_groups(cfg_narrow)}
