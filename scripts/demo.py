#!/usr/bin/env python3
"""Run the main job on the sample clip: an HDR10 HEVC file with measured MaxCLL/MaxFALL, and two PNGs.

    python scripts/demo.py [--src samples/london_pan_320x240.mp4] [--frames 120] [--out out]
OUT/demo_hdr10.hevc: vspipe renders scripts/demo.vpy once (y4m), vsvitm.hdr.measure_light_level reads
MaxCLL and MaxFALL off that render, and x265 (or ffmpeg's libx265) encodes it with them; ffprobe's
reading of the stream is printed and checked against the measurement.
The sample clips almost nothing (samples/README.md), so the pictures use it brightened by a slow
exposure swing and clipped to 8 bits, as a camera whose auto-exposure drifts would record it:
OUT/demo_side_by_side.png shows its most clipped frame as f^-1(L), a single-frame reconstruction
(mode="icam", num_refs=0), the default ITM and the unclipped source, all at one display mapping,
with the error in stops of each where the push clipped; OUT/demo_strip.png shows five frames of
f^-1(L), ITM and the source, before and after, as the exposure swings.
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


def point_panels(clip, code, frames: int, n: int | None = None) -> dict:
    """The demo's first picture, as arrays: the sample pushed until it clips (pushed_clip), at its most
    clipped frame n (of every 5th among the first `frames`, unless n is given), reconstructed by
    f^-1(L) (mode="linear"), a single frame (mode="icam", num_refs=0) and the default ITM, beside the
    unclipped source, all at one display mapping (exposure_view at -push_stops(n)).
    code: the clip as display RGB (colour.to_display_rgb). Returns n, the stops, the linear images,
    the views, the mask of pixels clipped here and not in the source, and the ITM node (to reuse)."""
    import vapoursynth as vs
    import vsvitm
    from vsvitm.vsnp import frame_to_array, frame_to_code
    ldr = pushed_clip(vs.core, code)
    if n is None:
        n = most_clipped(ldr, frames, 5)
    s = push_stops(n)
    itm = vsvitm.ITM(ldr)
    lin = {"f^-1(L)": frame_to_array(vsvitm.ITM(ldr, mode="linear").get_frame(n)),
           "single frame": frame_to_array(vsvitm.ITM(ldr, mode="icam", num_refs=0).get_frame(n)),
           "vsvitm.ITM": frame_to_array(itm.get_frame(n)),
           # the source before the push, in linear light, at the pushed exposure
           "source": frame_to_array(vsvitm.ITM(clip, mode="linear").get_frame(n)) * 2.0 ** s}
    clipped = frame_to_code(ldr.get_frame(n)).max(-1) >= 0.95
    mask = clipped & (frame_to_array(code.get_frame(n)).max(-1) < 0.95)  # the source saw them unclipped
    return {"n": n, "stops": s, "lin": lin, "view": {k: exposure_view(v, -s) for k, v in lin.items()},
            "clipped": clipped, "mask": mask, "ldr": ldr, "itm": itm}


PANEL_LABELS = {"f^-1(L)": "f^-1(L) (mode='linear')", "single frame": "single frame (icam, num_refs=0)",
                "vsvitm.ITM": "vsvitm.ITM (default)", "source": "source, unclipped"}


def differing_share(a: np.ndarray, b: np.ndarray, tol: float = 0.01) -> float:
    """Share of pixels of two 8-bit views whose largest channel difference is above tol (of full scale)."""
    return float((np.abs(a.astype(np.int16) - b.astype(np.int16)).max(-1) > tol * 255).mean())


def point_picture(panels: dict, png: Path) -> str:
    """OUT/demo_side_by_side.png from point_panels, and a line with what it shows in numbers: the mean
    error in stops against the source over the pixels the push clipped and the source did not."""
    n, s, lin, m = panels["n"], panels["stops"], panels["lin"], panels["mask"]
    tiles = [label(v, PANEL_LABELS[k]) for k, v in panels["view"].items()]
    head = label(np.zeros((0, sum(t.shape[1] for t in tiles), 3), np.uint8),
                 f"frame {n} of the sample pushed +{s:.1f} stops (8-bit, clipped), all shown at -{s:.1f} stops")
    cv2.imwrite(str(png), np.vstack([head, np.hstack(tiles)]))
    ref = lin["source"]

    def err(x):  # mean |log2 x - log2 ref| over the pixels clipped here and not in the source
        return float(np.mean(np.abs(np.log2(x[m] + 1e-4) - np.log2(ref[m] + 1e-4)))) if m.any() else float("nan")
    diff = differing_share(panels["view"]["f^-1(L)"], panels["view"]["vsvitm.ITM"])
    return (f"wrote {png} (frame {n}, pushed {s:.2f} stops: {100 * float(panels['clipped'].mean()):.1f}% of pixels "
            f"clipped, {100 * float(m.mean()):.1f}% clipped here but not in the source; mean error there, in stops: "
            f"f^-1(L) {err(lin['f^-1(L)']):.2f}, single frame {err(lin['single frame']):.2f}, "
            f"ITM {err(lin['vsvitm.ITM']):.2f}; {100 * diff:.1f}% of pixels differ by more than 1% "
            f"between the f^-1(L) and ITM panels)")


def strip_picture(panels: dict, clip, png: Path, step: int = 8, count: int = 5, scale: float = 0.5) -> str:
    """OUT/demo_strip.png: `count` frames `step` apart around the picture's frame, as columns; rows:
    f^-1(L) (before), vsvitm.ITM (after) and the unclipped source, each frame at -push_stops of its own
    push, so that what ITM recovers can be followed as the exposure swings; panels at `scale`."""
    import vsvitm
    from vsvitm.vsnp import frame_to_array
    n, ldr, itm = panels["n"], panels["ldr"], panels["itm"]
    first = max(0, min(n - step * (count // 2), ldr.num_frames - 1 - step * (count - 1)))
    cols = []
    lin_ldr, lin_src = vsvitm.ITM(ldr, mode="linear"), vsvitm.ITM(clip, mode="linear")
    for m in range(first, first + step * count, step):
        s = push_stops(m)
        rows = [("before: f^-1(L)", frame_to_array(lin_ldr.get_frame(m))),
                ("after: vsvitm.ITM", frame_to_array(itm.get_frame(m))),
                ("source", frame_to_array(lin_src.get_frame(m)) * 2.0 ** s)]
        small = [label(cv2.resize(exposure_view(x, -s), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA),
                       name) for name, x in rows]
        cols.append(label(np.vstack(small), f"frame {m}, +{s:.1f} stops"))
    strip = np.hstack(cols)
    head = label(np.zeros((0, strip.shape[1], 3), np.uint8),
                 "the pushed sample as the exposure swings; each frame shown at minus its push")
    cv2.imwrite(str(png), np.vstack([head, strip]))
    return f"wrote {png} (frames {first} to {first + step * (count - 1)}, every {step}th)"


def encode(a, out: Path) -> tuple[Path, dict, dict]:
    """vspipe demo.vpy -> y4m (the first pass) -> MaxCLL/MaxFALL measured on it -> x265 (or ffmpeg's
    libx265) with those values -> ffprobe. Returns the stream, its light level and what ffprobe says."""
    import vapoursynth as vs
    from vsvitm.hdr import hdr10_ffmpeg_args, hdr10_x265_args, measure_light_level
    vspipe = shutil.which("vspipe", path=str(Path(sys.executable).parent)) or shutil.which("vspipe")
    x265, ffmpeg = shutil.which("x265"), shutil.which("ffmpeg")
    if not vspipe:
        sys.exit("demo: needs vspipe (run scripts/setup.sh)")
    if not x265 and not ffmpeg:
        sys.exit("demo: needs x265 or ffmpeg with libx265 (scripts/setup.sh says how to install them)")
    hevc, y4m = out / "demo_hdr10.hevc", out / "demo_hdr10.y4m"
    cmd_vs = [vspipe, "-c", "y4m", "-a", f"src={a.src}", str(ROOT / "scripts" / "demo.vpy"), str(y4m)]
    if a.frames:
        cmd_vs[1:1] = ["--end", str(a.frames - 1)]
    t0 = time.time()
    print("$", " ".join(cmd_vs), file=sys.stderr)
    if subprocess.run(cmd_vs).returncode != 0:
        sys.exit("demo: vspipe failed (its message is above)")
    took = time.time() - t0
    # MaxCLL/MaxFALL of exactly what the encoder reads: y4m carries no colour props, so tag them
    pq = vs.core.std.SetFrameProps(vs.core.bs.VideoSource(str(y4m), cachemode=0), _Transfer=16, _Matrix=9, _Primaries=9,
                                   _Range=0, _ChromaLocation=0)
    light = measure_light_level(pq)
    cll, fall = round(light.max_cll), round(light.max_fall)
    if x265:
        cmd_enc = [x265, "--y4m", "--input", str(y4m), "--preset", "fast", "--crf", "18",
                   *hdr10_x265_args(1000, cll, fall), "-o", str(hevc)]
    else:
        cmd_enc = [ffmpeg, "-v", "error", "-y", "-f", "yuv4mpegpipe", "-i", str(y4m), "-crf", "18",
                   *hdr10_ffmpeg_args(1000, cll, fall), "-f", "hevc", str(hevc)]
    print("$", " ".join(cmd_enc), file=sys.stderr)
    p = subprocess.run(cmd_enc, capture_output=True)
    if p.returncode != 0:
        sys.exit(f"demo: encode failed:\n{p.stderr.decode(errors='replace')[-2000:]}")
    y4m.unlink()
    info = {"seconds": round(time.time() - t0, 1), "render_seconds": round(took, 1)}
    if shutil.which("ffprobe"):
        pr = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                             "stream=codec_name,width,height,pix_fmt,color_space,color_transfer,color_primaries",
                             "-show_frames", "-read_intervals", "%+#1", "-of", "json", str(hevc)],
                            capture_output=True, text=True)
        j = json.loads(pr.stdout or "{}")
        info.update(j.get("streams", [{}])[0])
        side = {d.get("side_data_type"): d for f in j.get("frames", [])[:1] for d in f.get("side_data_list", [])}
        c = side.get("Content light level metadata", {})
        info["max_content"], info["max_average"] = c.get("max_content"), c.get("max_average")
    return hevc, light, info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=str(ROOT / "samples" / "london_pan_320x240.mp4"))
    ap.add_argument("--frames", type=int, default=120, help="encode the first N frames (0: all)")
    ap.add_argument("--out", default=str(ROOT / "out"))
    ap.add_argument("--frame", type=int, default=None, help="frame for the pictures (default: the most clipped)")
    ap.add_argument("--no-encode", action="store_true", help="only the pictures")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    import vapoursynth as vs
    from vsvitm.colour import to_display_rgb

    if not a.no_encode:
        hevc, light, info = encode(a, out)
        print(f"wrote {hevc} ({hevc.stat().st_size / 1e6:.2f} MB) in {info.pop('seconds')} s: {info}")
        print(f"measured MaxCLL {light.max_cll:.1f} cd/m², MaxFALL {light.max_fall:.1f} cd/m²; "
              f"the stream says {info.get('max_content')}, {info.get('max_average')}")
        if info.get("max_content") is not None and (abs(info["max_content"] - light.max_cll) > 1
                                                     or abs(info["max_average"] - light.max_fall) > 1):
            sys.exit("demo: the stream's MaxCLL/MaxFALL are not the measured values")

    clip = vs.core.bs.VideoSource(a.src)
    t0 = time.time()
    panels = point_panels(clip, to_display_rgb(clip), a.frames, a.frame)
    print(point_picture(panels, out / "demo_side_by_side.png"))
    print(strip_picture(panels, clip, out / "demo_strip.png"), f"(pictures: {time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
