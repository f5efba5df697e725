"""Soak test (vsvitm-soak): render many frames of a small synthetic clip through vsvitm.ITM, in order,
and check that memory does not grow.

    vsvitm-soak                       # 5000 frames, 64x48, mode full, shipped models
    vsvitm-soak --frames 1000 --models path/to/models --cache-mb 32

RSS (VmRSS of this process) is sampled every --every frames; the least-squares slope of RSS against the
frame number over the second half of the run (after caches have filled: keep --cache-mb small) must stay
under --max-slope-kb KB per 1000 frames, else the exit status is 1. Not part of the test suite.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .bench_models import export_tiny_models
from .machine import proc_status_kib


def rss_kb() -> int:
    """This process's resident memory (VmRSS), KiB; raises off Linux."""
    kib = proc_status_kib("VmRSS")
    if kib is None:
        raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")
    return kib


def slope_per_1000(xs, ys) -> float:
    """Least-squares slope of ys against xs, times 1000.

    xs: frame numbers.
    ys: the samples.
    """
    x, y = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    if len(x) < 2:
        return 0.0
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / max((x * x).sum(), 1e-12) * 1000)


def synthetic_clip(core, vs, n: int, w: int, h: int, shot: int):
    """RGB24, frames made on demand: a blurred texture panning right with exposure swinging (highlights
    clip in some frames only), a new texture every `shot` frames (a scene cut).

    core: the VapourSynth core.
    vs: the vapoursynth module.
    n: frames.
    w: width.
    h: height.
    shot: frames per shot.
    """
    import cv2
    rng = np.random.default_rng(0)
    textures = []
    for _ in range(4):
        base = cv2.GaussianBlur(rng.random((h, w * 3)).astype(np.float32), (0, 0), 2) * 2.5
        base[: h // 3, w: 2 * w] *= 3.0
        textures.append(base)
    tint = np.float32([1.0, 0.9, 0.8])
    blank = core.std.BlankClip(width=w, height=h, format=vs.RGB24, length=n, fpsnum=24, fpsden=1)

    def make(n, f):
        i = n
        base = textures[(i // shot) % len(textures)]
        x0 = (i * 2) % (2 * w)
        e = 0.6 + 0.5 * np.sin(i / 5)
        lin = np.clip(base[:, x0: x0 + w, None] * e * tint, 0, 1)
        code = (lin ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)
        out = f.copy()
        for p in range(3):
            np.copyto(np.asarray(out[p]), code[..., p])
        return out

    return core.std.ModifyFrame(blank, blank, make)


def main(argv=None) -> int:
    """Entry point of vsvitm-soak: exit status 1 when memory grows or an output is not finite.

    argv: command-line arguments (None: sys.argv[1:]).
    """
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=5000)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--height", type=int, default=48)
    ap.add_argument("--mode", default="full", choices=["full", "icam", "linear"])
    ap.add_argument("--models", type=Path, default=None,
                    help="model folder (default: the package's shipped models, else tiny random ones)")
    ap.add_argument("--cache-mb", type=int, default=16,
                    help="ITM's cache_mb (default the minimum, 16: full after ~300 frames at 64x48)")
    ap.add_argument("--threads", type=int, default=0, help="VapourSynth threads (0: its default)")
    ap.add_argument("--every", type=int, default=100, help="sample RSS every this many frames")
    ap.add_argument("--shot", type=int, default=250, help="frames per synthetic shot (a cut between shots)")
    ap.add_argument("--max-slope-kb", type=float, default=2048.0,
                    help="fail when RSS grows faster than this many KB per 1000 frames (second half)")
    args = ap.parse_args(argv)

    import vapoursynth as vs
    import vsvitm
    from vsvitm.engine import MODEL_DIR

    core = vs.core
    if args.threads:
        core.num_threads = args.threads
    tmp = None
    models = args.models
    if models is None and not (MODEL_DIR / "icam.json").exists():
        tmp = tempfile.TemporaryDirectory(prefix="vsvitm_soak_")
        print(f"soak: no shipped models in {MODEL_DIR}; exporting tiny random-weight ones to {tmp.name} "
              "(plumbing only: the numbers say nothing about quality)", flush=True)
        models = export_tiny_models(Path(tmp.name))
    src = synthetic_clip(core, vs, args.frames, args.width, args.height, args.shot)
    out = vsvitm.ITM(src, mode=args.mode, models=models, tuning={"cache_mb": args.cache_mb})

    print(f"soak: {args.frames} frames {args.width}x{args.height} mode={args.mode} cache_mb={args.cache_mb} "
          f"threads={core.num_threads}", flush=True)
    samples = [(0, rss_kb())]
    print(f"{'frame':>7} {'RSS MB':>8} {'fps':>7}", flush=True)
    t0 = t_last = time.perf_counter()
    bad = 0
    for n, f in enumerate(out.frames(close=True), 1):
        if n % 50 == 0 or n == 1:  # spot-check the output: finite and >= 0
            a = np.asarray(f[0])
            bad += int(not (np.isfinite(a).all() and a.min() >= 0))
        del f
        if n % args.every == 0 or n == args.frames:
            now = time.perf_counter()
            samples.append((n, rss_kb()))
            fps = (n - samples[-2][0]) / max(now - t_last, 1e-9)
            t_last = now
            print(f"{n:7d} {samples[-1][1] / 1024:8.1f} {fps:7.1f}", flush=True)
    elapsed = time.perf_counter() - t0

    half = [(x, y) for x, y in samples if x >= args.frames / 2]
    slope = slope_per_1000(*zip(*half)) if len(half) >= 2 else 0.0
    first, peak = samples[1][1] if len(samples) > 1 else samples[0][1], max(y for _, y in samples)
    print(f"soak: {args.frames} frames in {elapsed:.1f} s ({args.frames / elapsed:.1f} fps); RSS start "
          f"{samples[0][1] / 1024:.1f} MB, after {samples[1][0] if len(samples) > 1 else 0} frames "
          f"{first / 1024:.1f} MB, end {samples[-1][1] / 1024:.1f} MB, peak {peak / 1024:.1f} MB")
    print(f"soak: RSS slope over the second half: {slope:+.1f} KB per 1000 frames "
          f"(limit {args.max_slope_kb:.0f}); non-finite/negative spot checks: {bad}")
    if tmp is not None:
        tmp.cleanup()
    if bad:
        print("soak: FAIL (non-finite or negative output)")
        return 1
    if slope > args.max_slope_kb:
        print("soak: FAIL (memory grows)")
        return 1
    print("soak: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
