#!/usr/bin/env python3
"""Experiment (stop 18, not shipped): drop ICAM references whose pre-flow alignment residual is high.

    python scripts/align_gate_experiment.py --tau 0.04 [--dump scores.txt] -- <scripts/evaluate.py arguments>

e.g. `... --tau 0.04 -- --data data/valset --no-cvvdp --only "ICAM only"`. Runs scripts/evaluate.py with
Engine.useful_refs wrapped: a reference passes only when the mean absolute difference between the key
and the reference aligned by its pre-flow and brought to the key's exposure, in gamma-2.2 code values
over pixels well exposed in both (linear luma 0.02-0.7, at DIS's working size), is at most --tau.
A pair with fewer than 64 such pixels scores 0 (passes). The residual predicted the references that
hurt on the validation set but not on the development set (BENCHMARKS.md, stop 18), so the plugin
does not do this.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def residual(eng, k, code_k, r, code_r) -> float:
    from vsvitm.flow import _encode, warp_np
    eng._preflow(k, code_k, r, code_r, full_res=False, icam=True)
    flow, e = eng.flows.get(eng.flow_key(k, r, icam=True))[:2]
    sk, sr = eng._luma(k, code_k)[0], eng._luma(r, code_r)[0]
    w = warp_np(sr, flow) * float(e)
    ok = (sk > 0.02) & (sk < 0.7) & (w > 0.02) & (w < 0.7)
    if np.count_nonzero(ok) < 64:
        return 0.0
    return float(np.mean(np.abs(_encode(sk) - _encode(w))[ok]))


def add_args(ap):
    ap.add_argument("--tau", type=float, required=True, help="largest residual a reference may have")
    ap.add_argument("--dump", help="append 'key ref residual' lines to this file")


def install(a):
    from vsvitm import engine
    orig = engine.Engine.useful_refs

    def useful(self, k, code_k, refs):
        out = []
        for r, c in orig(self, k, code_k, refs):
            s = residual(self, k, code_k, r, c)
            if a.dump:
                with open(a.dump, "a") as f:
                    f.write(f"{k} {r!r} {s:.5f}\n")
            if s <= a.tau:
                out.append((r, c))
        return out
    engine.Engine.useful_refs = useful


if __name__ == "__main__":
    import evaluate
    evaluate.main_patched(__doc__, add_args, install)
