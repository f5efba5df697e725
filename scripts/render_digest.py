#!/usr/bin/env python3
"""One SHA-256 per mode over the output frames of vsvitm.ITM on the sample clip: a refactor that keeps
every digest renders bit-identical frames.

    python scripts/render_digest.py [--frames 36] [--scale 1] [--modes temporal,full,...] [--src samples/london_pan_320x240.mp4]

The sample is pushed by a swinging exposure and rounded to 8 bits (as scripts/demo.py pushes it), so
its highlights clip in some frames and the reference, merge and temporal paths all have work to do.
Modes: "temporal" (default), "full", "icam", "icam" with num_refs=0, "linear" and "icam" with a reference
gate; each digest covers
the bytes of every plane of the first --frames output frames, in order. Runs on the CPU. --scale 2 renders
the sample at 640x480, where FCPM's steps run in bands (engine.core.BAND_PIXELS).
"""
from __future__ import annotations

import argparse
import hashlib
import math
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = {"temporal": {}, "full": {"mode": "full"}, "icam": {"mode": "icam"},
         "icam_single": {"mode": "icam", "num_refs": 0}, "linear": {"mode": "linear"},
         "icam_gated": {"mode": "icam", "tuning": {"ref_gate": 0.002, "ref_keep": 1}}}


def pushed(core, clip, frames: int, scale: int = 1):
    """The first `frames` frames as display RGB (`scale` times the size, bicubic), brightened by 1.5 +- 1
    stops (a sine of 60 frames) in linear light (gamma 2.2), clipped and rounded to RGB24."""
    import vapoursynth as vs
    from vsvitm.colour import to_display_rgb
    code = to_display_rgb(clip[:frames], format=vs.RGBS)
    if scale != 1:
        code = core.resize.Bicubic(code, code.width * scale, code.height * scale)

    def push(n):
        stops = 1.5 + math.sin(2 * math.pi * n / 60)
        return core.std.Expr(code, f"x {2.0 ** (stops / 2.2)} * 1 min")
    return core.resize.Point(core.std.FrameEval(code, push), format=vs.RGB24)


def digest(clip) -> str:
    h = hashlib.sha256()
    for n in range(clip.num_frames):
        f = clip.get_frame(n)
        for p in range(f.format.num_planes):
            h.update(bytes(f[p]))
    return h.hexdigest()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(ROOT / "samples" / "london_pan_320x240.mp4"))
    ap.add_argument("--frames", type=int, default=36)
    ap.add_argument("--scale", type=int, default=1, help="render the sample this many times its size")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    a = ap.parse_args(argv)
    import vapoursynth as vs
    import vsvitm
    core = vs.core
    src = pushed(core, core.bs.VideoSource(a.src), a.frames, a.scale)
    for name in a.modes.split(","):
        kw = MODES[name]
        t0 = time.perf_counter()
        d = digest(vsvitm.ITM(src, backend=vsvitm.Backend.ORT_CPU(), **kw))
        print(f"{name:12s} {d}  ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
