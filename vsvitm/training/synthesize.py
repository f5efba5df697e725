"""Write synthetic LDR/HDR training sequences (one .npz each) from real HDR material (vsvitm-synthesize).

    vsvitm-synthesize --data ../shared/data --split train --out data/synth_train \
        --num 50 --frames 96 --size 256 256 --seed 0

Each .npz holds ldr uint8 [T,H,W,3], hdr float16 [T,H,W,3] (exposure-relative linear, 1.0 = clip),
exposure float32 [T], homography [T,3,3], src_index [T], is_video, transfer, source, seed, ...;
read it back with vsvitm.training.saved.load_npz_sequence (same render/flow API as a live sequence).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ..checkout import REPO, SHARED_DATA, shared_data
from .sources import load_sources
from .saved import clipped_share, clue_share
from .synth import synth_sequence


def main(argv=None) -> int:
    """Entry point of vsvitm-synthesize.

    argv: command-line arguments (None: sys.argv[1:]).
    """
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="HDR data root (default ../shared/data)")
    ap.add_argument("--split", default="train", choices=["train", "test"])
    ap.add_argument("--out", type=Path, default=REPO / "data" / "synth_train")
    ap.add_argument("--num", type=int, default=50)
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compress", action="store_true", help="np.savez_compressed (smaller, slower)")
    args = ap.parse_args(argv)
    data = args.data or shared_data()
    if data is None or not Path(data).is_dir():
        ap.error(f"no data folder: pass --data (default {SHARED_DATA} does not exist)")
    srcs = load_sources(data, args.split)
    print(f"{len(srcs)} sources from {data} ({args.split})")
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    save = np.savez_compressed if args.compress else np.savez
    for i in range(args.num):
        src = srcs[int(rng.integers(len(srcs)))]
        seed = int(rng.integers(2**31))
        t0 = time.time()
        seq = synth_sequence(src, args.frames, tuple(args.size), seed=seed)
        d = seq.to_npz_dict()
        path = args.out / f"{i:05d}.npz"
        save(path, **d)
        ts = np.linspace(0, args.frames - 1, 5).round().astype(int)[1:-1]
        cs = [clue_share(seq, int(t)) for t in ts]
        cs = [c for c in cs if np.isfinite(c)]
        print(f"{path.name} {src.name:60s} {seq.transfer:11s} jpeg={seq.jpeg_quality:2d} "
              f"clipped={clipped_share(d['ldr']):.3f} clue_share={np.mean(cs) if cs else float('nan'):.3f} "
              f"({time.time() - t0:.1f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
