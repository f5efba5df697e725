#!/usr/bin/env python3
"""Experiment (stop 19, not shipped): fall back to ICAM's single-frame result where its references
gathered little evidence.

    python scripts/evidence_blend_experiment.py --power 1 -- <scripts/evaluate.py arguments>

e.g. `... --power 1 -- --data data/devset --no-cvvdp --only "ICAM only"`. Runs scripts/evaluate.py with
Engine.icam wrapped: for a key with references it also runs ICAM without them (Y0) and returns
exp(log Y0 + ev^power * (log Yr - log Y0)), ev being the per-pixel reference evidence the decode graph
outputs (wsum / (wsum + 0.5) of the clue path, in [0, 1)). The question it answers: are the frames where
references hurt (roadtrip's later frames: references exposed like the key) the frames where the
network gathered little evidence?
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def add_args(ap):
    ap.add_argument("--power", type=float, required=True, help="weight of the references' result = evidence ** power")
    ap.add_argument("--dump", help="append 'key refs mean-evidence-where-clipped' lines to this file")


def install(a):
    from vsvitm import engine
    orig = engine.Engine.icam

    def icam(self, k, code_k, refs):
        yr, ev = orig(self, k, code_k, refs)
        if not refs:
            return yr, ev
        y0, _ = orig(self, k, code_k, [])
        w = np.power(ev, a.power, dtype=np.float32)[..., None]
        log0 = np.log(np.maximum(y0, 1e-6))
        y = np.exp(log0 + w * (np.log(np.maximum(yr, 1e-6)) - log0))
        if a.dump:
            clipped = code_k.max(-1) >= 0.95
            with open(a.dump, "a") as f:
                f.write(f"{k} {len(refs)} {float(ev[clipped].mean()) if clipped.any() else float('nan'):.4f}\n")
        return y.astype(np.float32), ev  # between y0 and yr, so never below f^-1(L)
    engine.Engine.icam = icam


if __name__ == "__main__":
    import evaluate
    evaluate.main_patched(__doc__, add_args, install)
