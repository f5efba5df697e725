#!/usr/bin/env python3
"""Experiment (stop 24): pre-flows to far references chained through the nearer ones.

    python scripts/chain_flow_experiment.py [--stride 15] -- <scripts/evaluate.py arguments>

e.g. `... -- --data data/valset --no-cvvdp --only "ICAM only,full"`. Runs scripts/evaluate.py with
Engine._preflow wrapped: the pre-flow from key a to a reference b more than --stride frames away is
made as flow(a -> m) followed by flow(m -> b), m = the reference one stride nearer to a (whose pair
with a the plugin made just before: references are added nearest first), composed at DIS's working
size: F(p) = F1(p) + F2(p + F1(p)). The exposure ratio is estimated again through the composed flow
(the product of the two ratios where too few pixels are well exposed in both). Why: DIS finds small
motions better than large ones, and a reference 60 frames away under forward motion (`roadtrip`)
has moved far; each link of the chain spans one stride. Pairs within one stride (the nearest
references, FCPM's merge and recurrence) are made as before. Where m's luma is no longer cached,
the direct pre-flow is used.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def add_args(ap):
    ap.add_argument("--stride", type=int, default=15, help="longest pair made directly (frames; default 15)")


def compose(f1: np.ndarray, f2: np.ndarray) -> np.ndarray:
    """Flow a->b from a->m (f1) and m->b (f2), HxWx2 in pixels: f1(p) + f2(p + f1(p))."""
    from vsvitm.flow import warp_np
    return f1 + warp_np(f2, f1)


def install(a):
    from vsvitm import engine
    from vsvitm.flow import exposure_ratio, warp_np
    orig = engine.Engine._preflow

    def num(x):
        return x[0] if isinstance(x, tuple) else x

    def chained(self, fa, code_a, fb, code_b, full_res=True, icam=False):
        d = num(fb) - num(fa)
        if abs(d) <= a.stride or (icam and self.icam_flow_fn is not self.flow_fn):   # (no chains of homography pairs)
            return orig(self, fa, code_a, fb, code_b, full_res, icam)
        m = num(fb) - int(np.sign(d)) * a.stride
        fm = (m,) + tuple(fb[1:]) if isinstance(fb, tuple) else m
        en = self.exposure_norm
        key = (fa, fb, en)
        hit = self.flows.get(key)
        first = self.flows.get((fa, fm, en))
        if hit is None and (first is None or self.lumas.get(fm) is None):
            return orig(self, fa, code_a, fb, code_b, full_res)   # the nearer pair is gone: direct
        if hit is None:
            (sa, _, full), (sb, _, _) = self._luma(fa, code_a), self._luma(fb, code_b)
            orig(self, fm, None, fb, code_b, full_res=False)   # the link m -> b, made and cached as any pair
            second = self.flows.get((fm, fb, en))
            f = compose(first[0], second[0])
            e = np.float32(first[1] * second[1])
            if en:
                e2 = exposure_ratio(sa, warp_np(sb, f), default=None)
                e = e if e2 is None else np.float32(e2)
            hit = (f, e, 1.0, full)
            self.flows.put(key, hit)
        flow, e, clue, full = hit
        return (self.flow_fn.upsample(flow, *full) if full_res else None), e, clue
    engine.Engine._preflow = chained


if __name__ == "__main__":
    import evaluate
    evaluate.main_patched(__doc__, add_args, install)
