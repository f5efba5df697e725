#!/usr/bin/env python3
"""Experiment (stop 25): at a key frame, FCPM starts from the key's own ICAM result instead of the merge's.

    python scripts/key_merge_experiment.py -- <scripts/evaluate.py arguments>

e.g. `... -- --data data/valset --no-cvvdp --method 'full km:{}' --only "full km"`. Runs scripts/evaluate.py with
Engine.merge wrapped: where frame t is itself one of the merged keys, X^_t = log(Y_t + LOG_EPS), t's own key
result (no warp, nothing to misplace); every other frame is merged as before. The recurrence and the fuse run as
before on the merged frames.
Why: stop 12 found that the merge's fallback (f^-1(L) of frame t) takes large clipped regions even at key frames,
where t's own result is one of the candidates with zero flow: inside a clipped region every warped key reads 1.0
as frame t does, so the merge cannot tell the exact candidate (hdr10: full 3 dB below ICAM only).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def own_xhat(engine, y: np.ndarray) -> np.ndarray:
    """A key result Y (HxWx3 linear) as the merge's output would hold it: 1x3xHpxWp, log(Y + LOG_EPS), padded."""
    from vsvitm.engine import LOG_EPS
    planes = engine._pad(np.ascontiguousarray(y.transpose(2, 0, 1), np.float32))
    return np.log(np.maximum(planes, 0.0) + np.float32(LOG_EPS))[None]


def add_args(ap):
    pass


def install(a):
    from vsvitm import engine
    orig = engine.Engine.merge

    def merge(self, t, code_t, keys):
        own = [y_k for k, _, y_k, _ in keys if k == t]
        if own:
            return own_xhat(self, engine._given(own[0]))
        return orig(self, t, code_t, keys)
    engine.Engine.merge = merge


if __name__ == "__main__":
    import evaluate
    evaluate.main_patched(__doc__, add_args, install)
