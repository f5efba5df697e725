"""Render the camera-pan benchmark: pans with a lagging auto-exposure over the held-out panoramas
(vsvitm-make-pans).

    vsvitm-make-pans [--data ../shared/data] [--out data/pans] [--frames 72]

Writes <out>/<split>/<H>x<W>/<panorama>_s<seed>.npz (vsvitm.training.pans.PanSequence.to_npz_dict:
ldr, hdr, exposure, rotations, focal, clue mask) and a README.txt listing each pan's clipped share,
clue share and exposure swing. The validation split is for choosing settings; the test split is
reported. Neither is ever used for training.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..checkout import SHARED_DATA
from .exr import read_exr
from .pans import CLIPPED_CODE, PanSequence

PANORAMAS = "hdr-stills/panoramas-heldout"
# (split, panorama, size (H, W), seeds)
SPLITS = {
    "val": (("courtyard", "moonless_golf"), {(128, 192): (1, 2), (256, 384): (1,)}),
    "test": (("hotel_room", "ninomaru_teien", "portland_landing_pad", "studio_small_01", "venice_sunset"),
             {(128, 192): (1, 2), (256, 384): (1,)}),
}


def main(argv=None) -> int:
    """Entry point of vsvitm-make-pans.

    argv: command-line arguments (None: sys.argv[1:]).
    """
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED_DATA,
                    help="HDR data root holding hdr-stills/panoramas-heldout")
    ap.add_argument("--out", type=Path, default=Path("data/pans"))
    ap.add_argument("--frames", type=int, default=72, help="frames per pan (default 72)")
    ap.add_argument("--split", choices=("val", "test", "all"), default="all")
    args = ap.parse_args(argv)
    folder = args.data / PANORAMAS
    if not folder.is_dir():
        ap.error(f"no panorama folder {folder}: pass --data (the folder holding hdr-stills/)")
    for split, (names, sizes) in SPLITS.items():
        if args.split not in ("all", split):
            continue
        for size, seeds in sizes.items():
            out = args.out / split / f"{size[0]}x{size[1]}"
            out.mkdir(parents=True, exist_ok=True)
            lines = []
            for i, name in enumerate(names):
                pano = read_exr(folder / f"{name}.exr")
                for seed in seeds:
                    seq = PanSequence(pano, args.frames, size, seed=1000 * seed + i, name=name)
                    d = seq.to_npz_dict()
                    np.savez_compressed(out / f"{name}_s{seed}.npz", **d)
                    clipped = float((d["ldr"].max(-1) >= CLIPPED_CODE).mean())
                    line = (f"{name}_s{seed}: clipped {clipped:.3f} clue {float(d['clue'].mean()):.3f} "
                            f"exposure swing {np.log2(seq.exposure.max() / seq.exposure.min()):.2f} stops")
                    print(f"{split} {size[0]}x{size[1]} {line}", file=sys.stderr, flush=True)
                    lines.append(line)
            (out / "README.txt").write_text(
                f"vsvitm camera-pan benchmark, {split} split, {size[0]}x{size[1]}, {args.frames} frames a pan\n"
                f"command: vsvitm-make-pans --frames {args.frames}\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
