#!/usr/bin/env python3
"""Experiment (stop 31): ICAM's key -> reference pre-flows started from a global homography.

    python scripts/global_flow_experiment.py [--all-pairs] [--features 1000] -- <scripts/evaluate.py arguments>

e.g. `... -- --data data/valset --no-cvvdp --method 'ICAM gh:{"mode":"icam"}' --method 'full gh:{}' --only "ICAM gh,full gh"`.
Runs scripts/evaluate.py with the pre-flow of ICAM's pairs (key frame -> reference, 15 to 60 frames apart) made by
OpenCV DIS from an initial flow: the homography of ORB feature matches (RANSAC) between the two exposure-normalised
luma images at DIS's working size. Where too few matches agree, plain DIS as before. --all-pairs also does it for
FCPM's pairs (merge and recurrence). Why: scripts/ratio_check.py found the plugin's DIS pre-flows missing by 12-57 px
on far references of two stills with a moving camera (MtTamNorth_RGB, ultraHDR), and DIS alone, coarse to fine,
does not find motions that large.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from vsvitm import flow  # noqa: E402


def homography_flow(a: np.ndarray, b: np.ndarray, features: int = 1000, min_inliers: int = 12) -> np.ndarray | None:
    """Flow a -> b (HxWx2 float32, a's pixels) of the homography fitted to ORB matches of two uint8 images, or None."""
    orb = cv2.ORB_create(features, fastThreshold=5, edgeThreshold=15, patchSize=15)
    ka, da = orb.detectAndCompute(a, None)
    kb, db = orb.detectAndCompute(b, None)
    if da is None or db is None or len(ka) < min_inliers or len(kb) < min_inliers:
        return None
    m = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(da, db)
    if len(m) < min_inliers:
        return None
    pa = np.float32([ka[x.queryIdx].pt for x in m])
    pb = np.float32([kb[x.trainIdx].pt for x in m])
    H, inl = cv2.findHomography(pa, pb, cv2.RANSAC, 3.0)
    if H is None or inl is None or int(inl.sum()) < min_inliers:
        return None
    h, w = a.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    P = np.stack([xs, ys, np.ones_like(xs)], -1) @ H.T
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.stack([P[..., 0] / P[..., 2] - xs, P[..., 1] / P[..., 2] - ys], -1)
    if not np.isfinite(f).all():
        return None
    return np.ascontiguousarray(f, dtype=np.float32)


class GlobalDIS(flow.DISFlow):
    """A flow.DISFlow whose DIS starts from homography_flow() of its two inputs (plain DIS where that is None).
    At module level so that train_icam.py's data workers can take it (--homography-preflow)."""

    def __init__(self, preset, max_side: int = 320, features: int = 1000):
        super().__init__(preset, max_side)
        self.features = features

    def calc(self, y_key, y_ref):
        ka, kb = ((y * 255 + 0.5).astype(np.uint8) for y in (y_key, y_ref))
        return self.create().calc(ka, kb, homography_flow(ka, kb, self.features))   # DIS refines a given flow


def global_dis(preset, max_side: int = 320, features: int = 1000) -> GlobalDIS:
    """GlobalDIS with DIS's preset given by id or name (flow.PRESETS)."""
    return GlobalDIS(preset, max_side, features)


def add_args(ap):
    ap.add_argument("--all-pairs", action="store_true", help="also FCPM's pairs (merge, recurrence), not only ICAM's")
    ap.add_argument("--features", type=int, default=1000, help="ORB features per image")


def install(a):
    from preflow_experiment import flows_by_stage

    from vsvitm import engine, flow

    if a.all_pairs:
        engine.DISFlow = lambda preset=flow.RUNTIME_PRESET: global_dis(preset, features=a.features)
        return
    made = {}

    def choose(flow_fn, in_icam):
        if not in_icam:
            return flow_fn
        key = (flow_fn.preset, flow_fn.max_side)
        if key not in made:
            made[key] = global_dis(*key, features=a.features)
        return made[key]
    flows_by_stage(choose)


if __name__ == "__main__":
    import evaluate
    evaluate.main_patched(__doc__, add_args, install)
