#!/usr/bin/env python3
"""Seconds per ICAM training batch spent in data synthesis, on one core: how many data workers a
GPU run needs to keep its steps fed (train_icam.py --workers).

    python scripts/synth_speed.py [--data ../shared/data] [--batch 16] [--size 256] [--batches 8]

Same options as the training script's data (--max-refs, --bad-flow, --bad-ratio, --knee,
--parallax, --video-weight); OpenCV on one thread, as in a data worker.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = ROOT.parent / "shared" / "data"
    ap.add_argument("--data", default=str(default) if default.exists() else None)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--max-refs", type=int, default=4)
    ap.add_argument("--bad-flow", type=float, default=0.3)
    ap.add_argument("--bad-ratio", type=float, default=0.2)
    ap.add_argument("--knee", type=float, default=0.5)
    ap.add_argument("--parallax", type=float, default=0.5)
    ap.add_argument("--video-weight", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args(argv)
    if not a.data or not Path(a.data).exists():
        ap.error("no data folder: pass --data DIR")
    import cv2
    cv2.setNumThreads(1)
    from vsvitm.training.icam_data import ICAMBatches
    from vsvitm.training.synth import load_sources
    sources = load_sources(a.data, split="train")
    ds = ICAMBatches(sources, a.batch, a.size, a.max_refs, a.seed, p_bad_flow=a.bad_flow, p_bad_ratio=a.bad_ratio,
                     video_weight=a.video_weight, knee=a.knee, p_parallax=a.parallax)
    t0 = time.perf_counter()
    for i in range(a.batches):
        ds.batch_at(i)
    dt = (time.perf_counter() - t0) / a.batches
    print(f"{dt:.3f} s per batch of {a.batch} at {a.size}x{a.size} on one core ({a.batches} batches); "
          f"a GPU step of S seconds needs about {dt:.2f}/S data workers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
