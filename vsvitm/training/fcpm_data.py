"""FCPM training samples: a run of consecutive frames, with the frozen ICAM's key-frame results.

Everything the plugin computes outside the graphs (pre-flows, exposure ratios, key schedule, which
key results each frame sees) is computed here the same way, so training matches run time.
"""
from __future__ import annotations

import numpy as np
import torch

from ..curves import overexposure_mask, to_linear
from ..flow import DISFlow, align_pair
from ..prep import net_input
from ..schedule import Schedule
from .icam_data import perturb_flow


class FCPMBatches(torch.utils.data.IterableDataset):
    def __init__(self, sources, icam, batch: int, size: int, run: int, seed: int, n_frames: int = 121,
                 max_refs: int = 2, keys: int = 5, start_step: int = 0, video_weight: float | None = None,
                 knee: float = 0.0, p_bad_flow: float = 0.0):
        self.video_weight, self.knee, self.p_bad_flow = video_weight, knee, p_bad_flow
        self.sources, self.icam, self.batch, self.size, self.run = sources, icam, batch, size, run
        self.seed, self.n_frames, self.max_refs, self.keys, self.start_step = seed, n_frames, max_refs, keys, start_step

    def sample(self, rng) -> dict:
        from .sources import pick_source
        from .synth import synth_sequence
        src = pick_source(self.sources, rng, self.video_weight, self.knee)
        n = self.n_frames
        seq = synth_sequence(src, n, (self.size, self.size), seed=int(rng.integers(2**31)))
        sched = Schedule(n, num_refs=self.max_refs, fcpm_keys=self.keys)
        t0 = int(rng.integers(0, n - self.run))
        run = list(range(t0, t0 + self.run))
        keys_of = {t: sched.nearest_keys(t, []) for t in run}
        keys = sorted({k for ks in keys_of.values() for k in ks})
        refs_of = {k: sched.references(k, []) for k in keys}
        need = sorted(set(run) | set(keys) | {r for rs in refs_of.values() for r in rs})
        fr = seq.render(need)
        code = {i: fr["ldr"][j].astype(np.float32) / 255 for j, i in enumerate(need)}
        lin = {i: to_linear(c) for i, c in code.items()}
        flow_fn = DISFlow()
        ys, evs = {}, {}
        with torch.no_grad():
            for k in keys:
                refs, flows = [], []
                for r in refs_of[k]:
                    f, e = align_pair(lin[k], lin[r], flow_fn)
                    refs.append(torch.from_numpy(net_input(code[r], ratio=e))[None])
                    flows.append(torch.from_numpy(f.transpose(2, 0, 1).copy())[None])
                key = torch.from_numpy(net_input(code[k]))[None]
                fl, g, _ = self.icam.encode(key, refs, flows)
                ys[k] = self.icam.decode(key, fl, g)[0].numpy()
                evs[k] = self.icam.evidence(fl)[0].numpy()
        out = {"cur": [], "keys": [], "ys": [], "evidence": [], "preflows": [], "valid": [], "nflow_b": [],
               "nflow_f": [], "hdr": [], "alpha": []}
        for i, t in enumerate(run):
            ks = keys_of[t]
            ins, yk, pf, ev = [], [], [], []
            for j in range(self.keys):
                k = ks[min(j, len(ks) - 1)]
                f, e = (np.zeros(code[t].shape[:2] + (2,), np.float32), 1.0) if k == t else align_pair(lin[t], lin[k], flow_fn)
                # a pre-flow that misses (what DIS gives under parallax): the merge must learn to
                # distrust that key (no rng call at p = 0, so earlier runs repeat)
                if k != t and self.p_bad_flow > 0 and rng.random() < self.p_bad_flow:
                    f = perturb_flow(f, rng)
                ins.append(net_input(code[k], ratio=e))
                yk.append(ys[k] * np.float32(e))
                ev.append(evs[k])
                pf.append(f.transpose(2, 0, 1))
            out["cur"].append(net_input(code[t]))
            out["keys"].append(np.concatenate(ins))
            out["ys"].append(np.concatenate(yk))
            out["evidence"].append(np.concatenate(ev))
            out["preflows"].append(np.concatenate(pf))
            out["valid"].append((np.arange(self.keys) < len(ks)).astype(np.float32)[:, None, None])
            zero = np.zeros((2,) + code[t].shape[:2], np.float32)
            out["nflow_b"].append(align_pair(lin[t], lin[run[i + 1]], flow_fn)[0].transpose(2, 0, 1) if i + 1 < len(run) else zero)
            out["nflow_f"].append(align_pair(lin[t], lin[run[i - 1]], flow_fn)[0].transpose(2, 0, 1) if i > 0 else zero)
            out["hdr"].append(fr["hdr"][need.index(t)].transpose(2, 0, 1))
            out["alpha"].append(overexposure_mask(code[t]).transpose(2, 0, 1))
        return {k: np.stack(v).astype(np.float32) for k, v in out.items()}  # [T, C, H, W]

    def batch_at(self, step: int) -> dict:
        """The batch of a step: a dict of [T, B, C, H, W] tensors."""
        rng = np.random.default_rng([self.seed, step])
        samples = [self.sample(rng) for _ in range(self.batch)]
        return {k: torch.from_numpy(np.stack([s[k] for s in samples], 1)) for k in samples[0]}

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        torch.set_num_threads(1)
        step = self.start_step + wid
        while True:
            yield self.batch_at(step)
            step += nw


def run_fcpm(model, b: dict, log: bool = False) -> torch.Tensor:
    """The plugin's chunk procedure in torch: merge every frame, backward pass, forward pass, fuse.

    b holds [T, B, C, H, W] tensors; returns Y [T, B, 3, H, W] (log(Y + EPS) when log=True)."""
    fuse = model.fuse_log if log else model.fuse
    T = b["cur"].shape[0]
    ev = b.get("evidence")
    xs = [model.merge(b["cur"][t], b["keys"][t], b["ys"][t], b["preflows"][t], b["valid"][t],
                      None if ev is None else ev[t]) for t in range(T)]
    hid = model.cfg.hidden
    z = xs[0].new_zeros(xs[0].shape[0], hid, *xs[0].shape[2:])
    zf = xs[0].new_zeros(xs[0].shape[0], 2, *xs[0].shape[2:])
    hb = [None] * T
    for t in range(T - 1, -1, -1):
        last = t == T - 1
        hb[t] = model.back(xs[t], b["cur"][t], xs[t] if last else xs[t + 1], z if last else hb[t + 1],
                           zf if last else b["nflow_b"][t])
    ys, hf = [], None
    for t in range(T):
        first = t == 0
        hf = model.fwd(xs[t], b["cur"][t], xs[t] if first else xs[t - 1], z if first else hf,
                       zf if first else b["nflow_f"][t])
        ys.append(fuse(hf, hb[t], xs[t], b["cur"][t]))
    return torch.stack(ys)
