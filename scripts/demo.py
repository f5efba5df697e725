#!/usr/bin/env python3
"""Run the main job on the sample clip: an HDR10 HEVC file and a side-by-side PNG.

    python scripts/demo.py [--src samples/london_pan_320x240.mp4] [--frames 120] [--out out]
Writes OUT/demo_hdr10.hevc (vspipe | x265) and OUT/demo_side_by_side.png, and prints what ffprobe
says of the stream. The sample clip clips almost nothing (samples/README.md), so the demo also writes
OUT/demo_recovery.png: the same clip brightened by a slow exposure swing and clipped to 8 bits, as a
camera whose auto-exposure drifts would record it, and what ITM recovers of the highlights it clipped
with and without references (num_refs=0), against the unclipped clip at the same exposure (with the
error in stops of f^-1(L), the single frame and ITM).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def exposure_view(lin: np.ndarray, stops: float) -> np.ndarray:
    """Linear RGB -> 8-bit BGR at `stops` of exposure change, gamma 2.2, clipped (to see highlights)."""
    v = np.clip(lin * 2.0 ** stops, 0, 1) ** (1 / 2.2)
    return cv2.cvtColor((v * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)


def code_view(code: np.ndarray) -> np.ndarray:
    """Display code values (HxWx3 in [0, 1]) -> 8-bit BGR, as they are."""
    return cv2.cvtColor((code * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)


def most_clipped(code_clip, frames: int, step: int) -> int:
    """The frame (of every `step`-th among the first `frames`, 0: all) of a display-RGB clip with the largest
    share of pixels whose brightest channel is at or above 0.95, the clip level the evaluation uses."""
    from vsvitm.vsnp import frame_to_code
    cand = range(0, min(code_clip.num_frames, frames or code_clip.num_frames), step)
    return max(cand, key=lambda i: float((frame_to_code(code_clip.get_frame(i)).max(-1) >= 0.95).mean()))


def label(img: np.ndarray, text: str) -> np.ndarray:
    bar = np.zeros((22, img.shape[1], 3), np.uint8)
    cv2.putText(bar, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([bar, img])


def push_stops(n: int, base: float = 1.5, swing: float = 1.0, period: int = 60) -> float:
    """The demo's exposure push of frame n in stops: base +- swing, a sine of `period` frames (at the
    sample's 60 fps, one second), so a highlight clipped at the swing's top is unclipped half a period away."""
    return base + swing * math.sin(2 * math.pi * n / period)


def pushed_clip(core, code_clip):
    """code_clip (RGBS display code values) brightened by push_stops(n) in linear light (gamma 2.2),
    clipped at 1.0 and rounded to 8 bits: an LDR clip whose highlights clip in some frames only."""
    def push(n):
        return core.std.Expr(code_clip, f"x {2.0 ** (push_stops(n) / 2.2)} * 1 min")
    return core.resize.Point(core.std.FrameEval(code_clip, push), format=code_clip.format.replace(
        sample_type=0, bits_per_sample=8).id)


def recovery_sheet(clip, code, frames: int, png: Path) -> str:
    """demo_recovery.png and a line saying how far f^-1(L) and ITM are from the unclipped clip, in stops,
    over the pixels the pushed frame clipped; code: the clip as display RGB (colour.to_display_rgb)."""
    import vapoursynth as vs
    import vsvitm
    from vsvitm.vsnp import frame_to_array, frame_to_code
    ldr = pushed_clip(vs.core, code)
    n = most_clipped(ldr, frames, 5)
    s = push_stops(n)
    ref = frame_to_array(vsvitm.ITM(clip, mode="linear").get_frame(n)) * 2.0 ** s   # unclipped, same exposure
    lin = frame_to_array(vsvitm.ITM(ldr, mode="linear").get_frame(n))
    hdr = frame_to_array(vsvitm.ITM(ldr).get_frame(n))
    one = frame_to_array(vsvitm.ITM(ldr, num_refs=0).get_frame(n))                # no temporal clues
    ldr_n = frame_to_code(ldr.get_frame(n))
    clipped = ldr_n.max(-1) >= 0.95
    src_ok = frame_to_array(code.get_frame(n)).max(-1) < 0.95                # the original saw them unclipped
    m = clipped & src_ok

    def err(x):  # mean |log2 x - log2 ref| over the pixels clipped here and not in the original
        return float(np.mean(np.abs(np.log2(x[m] + 1e-4) - np.log2(ref[m] + 1e-4)))) if m.any() else float("nan")
    tiles = [label(code_view(ldr_n), f"LDR, +{s:.1f} stops (frame {n})"),
             label(exposure_view(lin, -s), f"f^-1(L), -{s:.1f} stops"),
             label(exposure_view(one, -s), "ITM(num_refs=0), same view"),
             label(exposure_view(hdr, -s), f"vsvitm.ITM, -{s:.1f} stops"),
             label(exposure_view(ref, -s), "unclipped source, same view")]
    cv2.imwrite(str(png), np.hstack(tiles))
    return (f"wrote {png} (frame {n}, pushed {s:.2f} stops: {100 * float(clipped.mean()):.1f}% of pixels clipped, "
            f"{100 * float(m.mean()):.1f}% clipped here but not in the source; mean error there, in stops: "
            f"f^-1(L) {err(lin):.2f}, ITM without references {err(one):.2f}, ITM {err(hdr):.2f})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=str(ROOT / "samples" / "london_pan_320x240.mp4"))
    ap.add_argument("--frames", type=int, default=120, help="encode the first N frames (0: all)")
    ap.add_argument("--out", default=str(ROOT / "out"))
    ap.add_argument("--frame", type=int, default=None, help="frame for the PNG (default: the most clipped)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    vspipe = shutil.which("vspipe", path=str(Path(sys.executable).parent)) or shutil.which("vspipe")
    x265 = shutil.which("x265")
    if not vspipe or not x265:
        sys.exit("demo: needs vspipe (run scripts/setup.sh) and x265 (apt-get install x265)")
    sys.path.insert(0, str(ROOT))
    from vsvitm.hdr import hdr10_x265_args

    hevc = out / "demo_hdr10.hevc"
    cmd_vs = [vspipe, "-c", "y4m", "-a", f"src={a.src}", str(ROOT / "scripts" / "demo.vpy"), "-"]
    if a.frames:
        cmd_vs[1:1] = ["--end", str(a.frames - 1)]
    cmd_enc = [x265, "--y4m", "--input", "-", "--preset", "fast", "--crf", "18", *hdr10_x265_args(), "-o", str(hevc)]
    print("$", " ".join(cmd_vs), "|", " ".join(cmd_enc), file=sys.stderr)
    t0 = time.time()
    p1 = subprocess.Popen(cmd_vs, stdout=subprocess.PIPE)
    p2 = subprocess.run(cmd_enc, stdin=p1.stdout, capture_output=True)
    p1.stdout.close()
    if p1.wait() != 0 or p2.returncode != 0:
        sys.exit(f"demo: encode failed:\n{p2.stderr.decode(errors='replace')[-2000:]}")
    took = time.time() - t0
    info = {}
    if shutil.which("ffprobe"):
        pr = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                             "stream=codec_name,width,height,pix_fmt,color_space,color_transfer,color_primaries,nb_frames",
                             "-of", "json", str(hevc)], capture_output=True, text=True)
        info = json.loads(pr.stdout or "{}").get("streams", [{}])[0]
    print(f"wrote {hevc} ({hevc.stat().st_size / 1e6:.2f} MB) in {took:.1f} s: {info}")

    # side-by-side picture through the API
    import vapoursynth as vs
    import vsvitm
    from vsvitm.colour import to_display_rgb
    from vsvitm.vsnp import frame_to_array
    core = vs.core
    clip = core.bs.VideoSource(a.src)
    rgb = to_display_rgb(clip)
    n = most_clipped(rgb, a.frames, 10) if a.frame is None else a.frame
    code = frame_to_array(rgb.get_frame(n))
    lin = frame_to_array(vsvitm.ITM(clip, mode="linear").get_frame(n))
    hdr = frame_to_array(vsvitm.ITM(clip).get_frame(n))
    tiles = [label(code_view(code), f"input (frame {n})"),
             label(exposure_view(lin, -2), "f^-1(L), -2 stops"),
             label(exposure_view(hdr, -2), "vsvitm.ITM, -2 stops")]
    png = out / "demo_side_by_side.png"
    cv2.imwrite(str(png), np.hstack(tiles))
    print(f"wrote {png} (frame {n}; peak {hdr.max():.2f}x SDR white, {100 * float((hdr > 1).mean()):.2f}% of values above 1.0)")
    print(recovery_sheet(clip, rgb, a.frames, out / "demo_recovery.png"))


if __name__ == "__main__":
    main()
