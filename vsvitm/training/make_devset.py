"""Generate the development test set (fixed seed) from the held-out 'test' split only (vsvitm-make-devset).

    vsvitm-make-devset [--data ../shared/data] [--out data/devset] [--max-side 480] [--still-size 256x384]

One sequence per test source: video sources run twice their length (ping-pong) at the source size
(longer side <= 480, even dimensions) with a mild camera path on top; stills run 96 frames at
256x384. Exposure events of at most 1 stop. Camera curve gamma 2.2 only (so f^-1 = gamma 2.2 is exact), sensor noise on, no JPEG.
Never train on this material.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..checkout import REPO, SHARED_DATA
from .sources import load_sources
from .saved import clipped_share, clue_share
from .synth import synth_sequence

SEED = 20240601
STILL_FRAMES, STILL_SIZE = 96, (256, 384)
VIDEO_MAX_SIDE = 480


def video_size(h: int, w: int, max_side: int = VIDEO_MAX_SIDE) -> tuple[int, int]:
    """A video sequence's (h, w): the source's, scaled so its longer side is at most max_side, even.

    h: the source's height.
    w: the source's width.
    max_side: the longer side's limit.
    """
    f = min(1.0, max_side / max(h, w))
    return max(2, int(h * f) // 2 * 2), max(2, int(w * f) // 2 * 2)


def build_parser() -> argparse.ArgumentParser:
    """vsvitm-make-devset's command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="HDR data root (default ../shared/data)")
    ap.add_argument("--out", type=Path, default=REPO / "data" / "devset")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--split", choices=("test", "train"), default="test",
                    help="train: a validation set from the training sources (other renders than training "
                         "sees), for choosing settings that are not learned without looking at the test set")
    ap.add_argument("--limit", type=int, help="at most this many sources (videos first, then stills by seed)")
    ap.add_argument("--max-side", type=int, default=VIDEO_MAX_SIDE,
                    help=f"longer side of video sequences, at most (default {VIDEO_MAX_SIDE})")
    ap.add_argument("--still-size", default="%dx%d" % STILL_SIZE, help="HxW of still sequences (default %(default)s)")
    return ap


def readme(args, still: tuple[int, int], lines: list[str]) -> str:
    """The set's README.txt: what it is, the command that makes it, the file format and one line per sequence.

    args: the parsed command line.
    still: the stills' (h, w).
    lines: one line per sequence.
    """
    return ((f"vsvitm development test set (never train on it): synthesised from the 'test' split of the shared data.\n"
             if args.split == "test" else
             "vsvitm validation set: other renders of the training sources (for settings that are not learned).\n")
            + f"command: vsvitm-make-devset --seed {args.seed} --split {args.split}"
            + (f" --limit {args.limit}" if args.limit is not None else "")
            + (f" --max-side {args.max_side}" if args.max_side != VIDEO_MAX_SIDE else "")
            + (f" --still-size {args.still_size}" if still != STILL_SIZE else "")
            + f"  (from the repository root; default seed {SEED})\n"
            "camera curve gamma 2.2, noise on, no JPEG, exposure events <= 1 stop,\n"
            "metering on the 90-98th percentile. Files: <source>.npz with ldr uint8 [T,H,W,3], hdr float16\n"
            "[T,H,W,3] (exposure-relative linear, 1.0 = clip level), exposure [T], homography [T,3,3], src_index [T];\n"
            "load with vsvitm.training.saved.load_npz_sequence.\n\n" + "\n".join(lines) + "\n")


def main(argv=None) -> int:
    """Entry point of vsvitm-make-devset.

    argv: command-line arguments (None: sys.argv[1:]).
    """
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        still = tuple(int(v) for v in args.still_size.lower().split("x"))
        assert len(still) == 2 and min(still) >= 32
    except (ValueError, AssertionError):
        ap.error(f"--still-size must be HxW with both at least 32, e.g. 256x384; got {args.still_size!r}")
    data = args.data or SHARED_DATA
    if not Path(data).is_dir():
        ap.error(f"no data folder {data}: pass --data")
    srcs = load_sources(data, args.split, max_side=None)
    if args.limit is not None and len(srcs) > args.limit:
        order = np.random.default_rng(args.seed).permutation(len(srcs))
        srcs = sorted((srcs[i] for i in order), key=lambda s: not s.is_video)[: args.limit]
    args.out.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, src in enumerate(srcs):
        opts = dict(transfer="gamma2.2", jpeg=False, max_bias_stops=1.0, event_stops=(0.5, 1.0),
                    mean_weight=(0.0, 0.0), clip_percentile=(90.0, 98.0))
        if src.is_video:
            n = 2 * len(src.frames)
            size = video_size(*src.shape, max_side=args.max_side)
            opts.update(start_frame=0, zoom=(0.8, 0.95), motion=0.5)
        else:
            n, size = STILL_FRAMES, still
        seq = synth_sequence(src, n, size, seed=args.seed + i, **opts)
        d = seq.to_npz_dict()
        name = Path(src.name).name
        np.savez(args.out / f"{name}.npz", **d)
        cs = [clue_share(seq, t) for t in range(0, n, max(1, n // 12))] if n > 15 else []
        cs = [c for c in cs if np.isfinite(c)]  # n/a: clip shorter than the +-15 reference stride
        line = (f"{name:40s} frames={n:3d} size={size[0]}x{size[1]} clipped={clipped_share(d['ldr']):.3f} "
                f"clue_share={np.mean(cs) if cs else float('nan'):.3f} exposure={seq.exposure.min():.3g}..{seq.exposure.max():.3g}")
        print(line, flush=True)
        lines.append(line)
    (args.out / "README.txt").write_text(readme(args, still, lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
