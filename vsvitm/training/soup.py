"""Average the weights of several fine-tunes of one model (a "model soup", Wortsman et al., ICML 2022)
(vsvitm-soup).

Fine-tunes that start from the same weights usually stay in one basin of the loss, so their mean is a
model too, and often a better one than each: run-to-run noise averages out. All inputs must be the same
network (no config value differs, same parameter names and shapes); each may carry a weight (PATH:W, default 1).

    vsvitm-soup --out runs/soup/icam.pt runs/shipped/icam.pt runs/icam_r12/last.pt:2

The output is a checkpoint like the training scripts write (model, config, step, exposure_norm) plus
"soup": the inputs, their weights and steps, and the options of the training run that made each (its
config.json, where there is one). Export it with vsvitm-export as usual: the manifest lists them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .export import source_checkpoint, training_args


def parse_item(s: str) -> tuple[str, float]:
    """PATH or PATH:WEIGHT -> (path, weight); a path that itself holds a colon stays whole.

    s: the command-line item.
    """
    path, sep, w = s.rpartition(":")
    if sep and path and Path(path).exists():
        try:
            return path, float(w)
        except ValueError:
            pass
    return s, 1.0


def soup(items: list[tuple[str, float]]) -> dict:
    """The weighted mean of the checkpoints' weights, as a checkpoint (model, config, step, exposure_norm,
    soup: the ingredients); ValueError where they are not the same network.

    items: (checkpoint path, weight) pairs.
    """
    if not items:
        raise ValueError("soup: give at least one checkpoint")
    total = sum(w for _, w in items)
    if any(w < 0 for _, w in items) or total <= 0:
        raise ValueError("soup: weights must be >= 0 and not all 0")
    first = None
    acc: dict[str, torch.Tensor] = {}
    sources = []
    for path, w in items:
        if not Path(path).exists():
            raise ValueError(f"soup: no such checkpoint {path}")
        st = torch.load(path, map_location="cpu", weights_only=False)
        sd = st["model"]
        src = {"checkpoint": Path(path).as_posix(), "weight": w, "step": st.get("step")}
        rebuilt_from = source_checkpoint(st, "icam" if "c1" in st["config"] else "fcpm")
        if rebuilt_from:  # rebuilt from shipped graphs: name their checkpoint
            src["rebuilt_from"] = rebuilt_from
        args = training_args(path, st)  # the training run's options, as vsvitm-export records them
        if args is not None:
            src["training_args"] = args
        if st.get("soup"):  # an ingredient that is itself a soup: keep its own ingredients
            src["soup"] = st["soup"]
        sources.append(src)
        if first is None:
            first = st
            acc = {k: (v.double() * (w / total) if v.is_floating_point() else v.clone()) for k, v in sd.items()}
            continue
        clash = {k for k in set(st["config"]) & set(first["config"]) if st["config"][k] != first["config"][k]}
        if clash:  # a key only one has (added by a later version) is fine when the parameters match below
            raise ValueError(f"soup: {path} differs from the first in config {sorted(clash)}")
        if st.get("exposure_norm", True) != first.get("exposure_norm", True):
            raise ValueError(f"soup: {path} differs from the first in exposure_norm")
        if set(sd) != set(acc):
            raise ValueError(f"soup: {path} has other parameters than the first "
                             f"({sorted(set(sd) ^ set(acc))[:4]} ...)")
        for k, v in sd.items():
            if v.shape != acc[k].shape:
                raise ValueError(f"soup: {path}: {k} has shape {tuple(v.shape)}, the first {tuple(acc[k].shape)}")
            if v.is_floating_point():
                acc[k] += v.double() * (w / total)
    model = {k: (v.to(first["model"][k].dtype) if v.is_floating_point() else v) for k, v in acc.items()}
    return {"model": model, "config": first["config"], "step": 0,
            "exposure_norm": first.get("exposure_norm", True),
            "soup": sources}


def main(argv=None):
    """Entry point of vsvitm-soup.

    argv: command-line arguments (None: sys.argv[1:]).
    """
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output checkpoint (.pt)")
    ap.add_argument("checkpoints", nargs="+", help="PATH or PATH:WEIGHT")
    a = ap.parse_args(argv)
    st = soup([parse_item(s) for s in a.checkpoints])
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(st, a.out)
    print(f"{a.out}: mean of " + ", ".join(f"{d['checkpoint']} ×{d['weight']:g}" for d in st["soup"]))


if __name__ == "__main__":
    main()
