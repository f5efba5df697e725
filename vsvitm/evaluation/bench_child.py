"""One benchmark configuration, run in a process of its own (vsvitm-benchmark starts it with --child):
the source, the ITM node, the warm-up and the timed window, with calls counted per graph."""
from __future__ import annotations

import os
import resource
import time

from .hooks import GraphCounter
from .machine import gpu_memory_mib, vm_hwm_mib


def synthetic_clip(core, w: int, h: int, length: int):
    """RGB24: a blurred random texture panning right, exposure swinging (highlights clip in some frames).

    core: the VapourSynth core.
    w: width.
    h: height.
    length: frames.
    """
    import cv2
    import numpy as np
    import vapoursynth as vs
    rng = np.random.default_rng(0)
    pan = 256
    small = rng.random((max(8, h // 8), max(8, (w + pan) // 8), 3)).astype(np.float32)
    base = cv2.resize(small, (w + pan, h), interpolation=cv2.INTER_CUBIC)
    base = cv2.GaussianBlur(base, (0, 0), 3) * np.float32([1.0, 0.95, 0.85])
    base[: h // 3] = base[: h // 3] * 2.5 + 0.4          # a bright "sky" band that clips when exposed up
    base = np.clip(base, 0, 4)
    # store log-ish code so one 8-bit LUT per frame applies the exposure
    code = np.clip(base / 4.0 * 255 + 0.5, 0, 255).astype(np.uint8)
    blank = core.std.BlankClip(width=w, height=h, format=vs.RGB24, length=length, fpsnum=24, fpsden=1)

    def fill(n, f):
        out = f.copy()
        s = (3 * n) % pan
        gain = 0.6 + 0.5 * np.sin(n / 5)
        lut = np.clip((np.arange(256, dtype=np.float32) / 255 * 4.0 * gain * 0.5) ** (1 / 2.2), 0, 1)
        lut = (lut * 255 + 0.5).astype(np.uint8)
        view = cv2.LUT(code[:, s: s + w], lut)
        for p in range(3):
            np.copyto(np.asarray(out[p]), view[..., p])
        return out

    return core.std.ModifyFrame(blank, blank, fill)


def source_clip(core, cfg: dict):
    """The configuration's source: the clip at --src resized (repeated to be long enough), or synthetic_clip.

    core: the VapourSynth core.
    cfg: the configuration (size, start, frames, synthetic, src).
    """
    import vapoursynth as vs
    w, h = cfg["size"]
    need = cfg["start"] + cfg["frames"] + 100  # + the references' reach past the window
    if cfg["synthetic"]:
        return synthetic_clip(core, w, h, max(300, need))
    if not hasattr(core, "bs"):
        raise RuntimeError("core.bs is missing: pip install vapoursynth-bestsource (or use --synthetic)")
    clip = core.bs.VideoSource(cfg["src"])
    if clip.num_frames < need:
        clip = clip * (-(-need // clip.num_frames))
    if (clip.width, clip.height) != (w, h):
        clip = core.resize.Bicubic(clip, w, h)
    if clip.format.id != vs.YUV420P8 and clip.format.color_family == vs.YUV:
        clip = core.resize.Bicubic(clip, format=vs.YUV420P8)
    return clip


def seek_steps(out, cfg: dict) -> dict:
    """Cold request of a frame (cfg["seek_at"], or the clip's middle frame), then cfg["frames"] single
    steps forward (a previewer).

    out: the ITM clip.
    cfg: the configuration (frames, size, mode, backend, seek_at).
    """
    mid = out.num_frames // 2 if cfg.get("seek_at") is None else cfg["seek_at"]
    if not 0 <= mid < out.num_frames:
        raise ValueError(f"--seek-at {mid}: the clip has {out.num_frames} frames")
    t0 = time.perf_counter()
    out.get_frame(mid)
    cold = time.perf_counter() - t0
    steps = []
    for i in range(mid + 1, min(out.num_frames, mid + 1 + cfg["frames"])):
        t0 = time.perf_counter()
        out.get_frame(i)
        steps.append(time.perf_counter() - t0)
    import vapoursynth as vs
    return {**{k: cfg[k] for k in ("size", "mode", "backend")}, "seek": True, "seek_at": mid, "frames": len(steps),
            "vs_threads": vs.core.num_threads, "prefetch": 1,
            "cold_seek_s": cold, "step_mean_s": sum(steps) / len(steps), "step_max_s": max(steps),
            "peak_rss_mib": vm_hwm_mib()}


def make_backend(cfg: dict):
    """The configuration's vsvitm Backend, or None for the pass-through chain.

    cfg: the configuration (mode, backend, ort_threads, cuda_options).
    """
    from vsvitm.backends import Backend
    if cfg["mode"] == "linear":
        return None
    if cfg["backend"] in ("cpu", "cpu-int8"):
        return Backend.ORT_CPU(num_threads=cfg["ort_threads"], int8=cfg["backend"] == "cpu-int8")
    return Backend.ORT_CUDA(fp16=cfg["backend"] == "cuda-fp16", provider_options=cfg.get("cuda_options") or {})


def child(cfg: dict) -> dict:
    """Run one configuration and return its measurements (ms/frame, fps, peak RSS, calls per graph, ...).

    cfg: the configuration, as vsvitm-benchmark's parent makes it.
    """
    t_import = time.perf_counter()
    import vapoursynth as vs
    core = vs.core
    if cfg["threads"]:
        core.num_threads = cfg["threads"]
    if cfg["vs_cache_mb"]:
        core.max_cache_size = cfg["vs_cache_mb"]
    counter = GraphCounter()
    counter.install()
    import vsvitm
    src = source_clip(core, cfg)
    backend = make_backend(cfg)
    t0 = time.perf_counter()
    extra = cfg.get("itm") or {}
    mode, extra = cfg["mode"], dict(extra)
    if mode == "single":
        mode, extra["num_refs"] = "icam", 0
    extra["tuning"] = {**extra.get("tuning", {}), "cache_mb": cfg["cache_mb"]}
    out = vsvitm.ITM(src, mode=mode, backend=backend, models=cfg["models"], **extra)
    t_init = time.perf_counter() - t0
    if cfg.get("seek"):
        return seek_steps(out, cfg)
    res = timed_window(out, cfg, counter, core)
    prefetch, t_timed = res.pop("prefetch"), res.pop("t_timed")
    return {**{k: cfg[k] for k in ("size", "mode", "backend", "start", "warmup", "frames")},
            "vs_threads": core.num_threads, "prefetch": prefetch,
            "ort_threads": getattr(backend, "num_threads", None), "init_s": t_init, **res,
            "python_import_s": t_timed - t_import}


def timed_window(out, cfg: dict, counter: GraphCounter, core) -> dict:
    """The warm-up frames in order, untimed, then the timed window with clip.frames(prefetch) (like vspipe).

    out: the ITM clip.
    cfg: the configuration (warmup, frames, start, prefetch, backend).
    counter: the installed call counter (switched on for the timed window).
    core: the VapourSynth core.
    """
    w, n = cfg["warmup"], cfg["frames"]
    a = cfg["start"] - w
    if a + w + n > out.num_frames:
        raise RuntimeError(f"the clip has {out.num_frames} frames; start + frames = {a + w + n}")
    t0 = time.perf_counter()
    first = None
    for i in range(a, a + w):                         # warm-up, in order, not timed
        out.get_frame(i)
        if first is None:
            first = time.perf_counter() - t0
    t_warm = time.perf_counter() - t0
    counter.on = True
    rss_before = vm_hwm_mib()
    window = out[a + w: a + w + n]
    prefetch = cfg["prefetch"] or core.num_threads
    t0, c0 = time.perf_counter(), time.process_time()
    stamps = []
    for _f in window.frames(prefetch=prefetch, backlog=max(prefetch, 1) * 3):
        stamps.append(time.perf_counter() - t0)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    counter.on = False
    gaps = sorted(b - a_ for a_, b in zip([0.0] + stamps[:-1], stamps))
    return {
        "prefetch": prefetch, "t_timed": t0,
        "first_frame_s": first, "warmup_s": t_warm,
        "elapsed_s": elapsed, "ms_per_frame": 1000 * elapsed / n, "fps": n / elapsed,
        "max_gap_ms": 1000 * gaps[-1] if gaps else None,
        # CPU time of all this process's threads over the timed frames: below cores x elapsed, cores sat
        # idle (threads waiting on each other or on frame requests), which no faster network removes
        "cpu_ms_per_frame": 1000 * cpu / n, "cpu_use": cpu / (elapsed * cores), "cores": cores,
        # VmHWM: the high-water mark of this process's own address space. ru_maxrss is kept for the record
        # only: Linux carries the parent's RSS at fork into the child's ru_maxrss across exec.
        "peak_rss_mib": vm_hwm_mib() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_timing_mib": rss_before,
        "gpu_mib": gpu_memory_mib(os.getpid()) if cfg["backend"].startswith("cuda") else None,
        "calls": {k: {"calls": v[0], "per_frame": v[0] / n, "ms_per_frame": 1000 * v[1] / n}
                  for k, v in sorted(counter.stats.items())},
    }
