#!/usr/bin/env python3
"""How much holding ICAM's references as RGB24 (8-bit sources, vsvitm.itm) changes the output,
against references held as RGB48 like every other frame.

    python scripts/ref_depth_check.py [--size 512x288] [--frames 114:126] [--src samples/london_pan_320x240.mp4]

Renders the sample clip (YUV 4:2:0, 8 bit) resized to --size with ITM(mode="icam") both ways and
prints, over the given frames: the largest difference in linear light, relative to the larger
value, and PU21-PSNR of one result against the other (all pixels, and where the frame is clipped).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def render(src, start: int, end: int, rgb48_refs: bool) -> np.ndarray:
    import vapoursynth as vs
    import vsvitm
    from vsvitm import itm
    from vsvitm.vsnp import frame_to_array
    real = itm.to_display_rgb
    if rgb48_refs:  # the ITM graph asks for RGB24 references; give it its RGB48 frames instead
        itm.to_display_rgb = lambda clip, format=vs.RGBS, **kw: real(clip, format=vs.RGB48 if format == vs.RGB24 else format, **kw)
    try:
        out = vsvitm.ITM(src, mode="icam")
    finally:
        itm.to_display_rgb = real
    return np.stack([frame_to_array(out.get_frame(n)) for n in range(start, end)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="512x288")
    ap.add_argument("--frames", default="114:126", help="start:end")
    ap.add_argument("--src", default=str(ROOT / "samples" / "london_pan_320x240.mp4"))
    a = ap.parse_args(argv)
    import vapoursynth as vs
    from vsvitm.training.metrics import pu21_psnr
    from vsvitm.vsnp import frame_to_array
    w, h = (int(v) for v in a.size.lower().split("x"))
    s, e = (int(v) for v in a.frames.split(":"))
    src = vs.core.resize.Bicubic(vs.core.bs.VideoSource(a.src), w, h)
    print(f"source {src.format.name} {w}x{h}, frames {s}..{e - 1}")
    y8 = render(src, s, e, rgb48_refs=False)
    y16 = render(src, s, e, rgb48_refs=True)
    rgb = vs.core.resize.Bicubic(src, format=vs.RGBS, matrix_in=vs.MATRIX_BT709)
    clipped = np.stack([frame_to_array(rgb.get_frame(n)).max(-1) >= 0.95 for n in range(s, e)])
    rel = np.abs(y8 - y16) / np.maximum(np.maximum(y8, y16), 1e-3)
    print(f"largest relative difference {rel.max():.2e}, mean {rel.mean():.2e}; clipped pixels {clipped.mean():.1%}")
    print(f"PU21-PSNR, RGB24 refs against RGB48 refs: all {pu21_psnr(y8, y16):.2f} dB, "
          f"clipped {pu21_psnr(y8, y16, mask=clipped):.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
