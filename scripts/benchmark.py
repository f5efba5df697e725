#!/usr/bin/env python3
"""Speed and memory of vsvitm.ITM through VapourSynth.

    python scripts/benchmark.py [--sizes 512x512,960x540,1920x1080] [--modes temporal,single,linear]
                                [--frames 24] [--models DIR | --random-models] [--synthetic]
                                [--threads N] [--append BENCHMARKS.md]

Renders a real clip (samples/london_pan_320x240.mp4 via core.bs.VideoSource, resized to each size;
or a synthetic panning clip with --synthetic) through the VapourSynth API, for every configuration
  size x mode (temporal: the default pipeline; single: single-frame ICAM on every frame, mode="icam",
  num_refs=0; full: ICAM on key frames + FCPM; icam: ICAM with references on every frame; linear: the
  pass-through chain source -> f^-1 -> output) x backend (ORT CPU; CUDA fp32 and fp16 when a CUDA provider works)
each in its own subprocess, so that the peak RSS (ru_maxrss / VmHWM) belongs to that configuration.
Frames `start .. start+warmup-1` are rendered first and not timed (the first output frame of the full
pipeline pays for key frames and a whole FCPM chunk); then `--frames` consecutive frames are timed
with VapourSynth's own prefetching (clip.frames(prefetch=...), like vspipe). With the defaults
(--start 120, warm-up 6, 24 frames) the timed window is exactly whole FCPM chunks (frames 120..143: one of
24 frames below 1 MP, two of 12 from 1 MP on; ITM's default chunk), and
every key frame it uses has all its references (at most 6 x 15 = 90 frames back): steady state.

--seek: what a previewer sees instead: a cold request of the middle frame in a fresh process
(VapourSynth Editor or vspreview opening a script at a frame), then `--frames` single steps forward,
one get_frame at a time; the table gives the cold seek, the mean and the largest step.

Prints a Markdown table (ms/frame, fps, ratio to the pass-through chain at the same size, peak RSS,
GPU memory) headed by a description of the machine; --append FILE appends the same text to FILE.
Paper anchor: 521 ms per 512x512 frame on a Tesla V100 (ICAM on every frame: 1236 ms).
Exit status: 0 ok, 1 a configuration failed, 2 no models (see --random-models).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "london_pan_320x240.mp4"
PAPER_ANCHOR = ("Paper anchor (Tesla V100): 521 ms per 512×512 frame for the full method; "
                "1236 ms with ICAM on every frame.")
RESULT_TAG = "VSVITM_BENCH_RESULT "
MODES = ("temporal", "single", "full", "icam", "linear")


# ----------------------------------------------------------------------------------------- helpers
def parse_sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        item = item.strip().lower()
        if not item:
            continue
        try:
            w, h = (int(v) for v in item.split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"size {item!r} is not WIDTHxHEIGHT (e.g. 960x540)") from None
        if w < 16 or h < 16:
            raise argparse.ArgumentTypeError(f"size {item!r} is too small (16x16 at least)")
        out.append((w, h))
    if not out:
        raise argparse.ArgumentTypeError("no sizes given")
    return out


def default_model_dir() -> Path:
    return ROOT / "vsvitm" / "models"


def random_arch(spec: str | None) -> dict:
    """--arch JSON -> {"icam": {...}, "fcpm": {...}}: ICAMConfig / FCPMConfig fields that differ from the
    defaults (other network widths, to time networks that have not been trained). Exits on bad input."""
    if not spec:
        return {}
    try:
        arch = json.loads(spec)
    except ValueError as e:
        sys.exit(f"--arch: not JSON ({e}); e.g. '{{\"icam\": {{\"c1\": 16}}, \"fcpm\": {{\"hidden\": 8}}}}'")
    if not isinstance(arch, dict) or set(arch) - {"icam", "fcpm"} or not all(isinstance(v, dict) for v in arch.values()):
        sys.exit('--arch: expected {"icam": {ICAMConfig fields}, "fcpm": {FCPMConfig fields}}')
    sys.path.insert(0, str(ROOT))
    from vsvitm.training.fcpm_net import FCPMConfig
    from vsvitm.training.icam_net import ICAMConfig
    for name, cls in (("icam", ICAMConfig), ("fcpm", FCPMConfig)):
        try:
            cls(**arch.get(name, {}))
        except TypeError as e:
            sys.exit(f"--arch {name}: {e} (fields: {', '.join(cls.__dataclass_fields__)})")
    return arch


def export_random_models(out: Path, fp16: bool, arch: dict | None = None) -> float:
    """Random-weight ICAM and FCPM graphs of the default architecture, or of the widths in `arch`
    (random_arch) (plumbing checks and timings only)."""
    t0 = time.perf_counter()
    import torch
    sys.path.insert(0, str(ROOT))
    from vsvitm.training.export import export_fcpm, export_icam
    from vsvitm.training.fcpm_net import FCPM, FCPMConfig
    from vsvitm.training.icam_net import ICAM, ICAMConfig
    torch.manual_seed(0)
    arch = arch or {}
    meta = {"random_weights": True, "random_arch": arch}
    export_icam(ICAM(ICAMConfig(**arch.get("icam", {}))), out, fp16=fp16, meta=meta)
    export_fcpm(FCPM(FCPMConfig(**arch.get("fcpm", {}))), out, fp16=fp16, meta=meta)
    return time.perf_counter() - t0


def resolve_models(a, need_fcpm: bool, need_fp16: bool) -> tuple[Path | None, str, tempfile.TemporaryDirectory | None]:
    """(model folder, description, temp dir to clean up). Exits 2 when trained models are missing."""
    arch = random_arch(getattr(a, "arch", None))
    if arch and not a.random_models:
        sys.exit("--arch needs --random-models (it sets the widths of random-weight graphs)")
    if a.random_models:
        desc = ("random-weight graphs of the default architecture (--random-models)" if not arch else
                f"random-weight graphs, widths {json.dumps(arch)} (--random-models --arch)")
        tmp = None
        if a.models:  # export there once and reuse on later runs
            folder = Path(a.models)
            try:
                meta = json.loads((folder / "icam.json").read_text())
            except (OSError, ValueError):
                meta = {}
            if meta:
                if not meta.get("random_weights"):
                    sys.exit(f"--random-models --models {folder}: that folder holds real models; pick an empty one")
                same = meta.get("random_arch", {}) == arch and (folder / "fcpm.json").exists()
                if same and (not need_fp16 or (folder / "icam_init_fp16.onnx").exists()):
                    print(f"{Path(sys.argv[0]).stem}: reusing the random-weight graphs in {folder}", file=sys.stderr)
                    return folder, desc, None
        else:
            tmp = tempfile.TemporaryDirectory(prefix="vsvitm_rand_models_")
            folder = Path(tmp.name)
        print(f"{Path(sys.argv[0]).stem}: exporting random-weight ICAM/FCPM graphs ({json.dumps(arch) if arch else 'default widths'}) to {folder} "
              f"(timings only: the output is meaningless) ...", file=sys.stderr, flush=True)
        dt = export_random_models(folder, fp16=need_fp16, arch=arch)
        print(f"{Path(sys.argv[0]).stem}: exported in {dt:.1f} s", file=sys.stderr, flush=True)
        return folder, desc, tmp
    folder = Path(a.models) if a.models else default_model_dir()
    missing = [n for n in (["icam"] + (["fcpm"] if need_fcpm else [])) if not (folder / f"{n}.json").exists()]
    if missing:
        print(f"{Path(sys.argv[0]).stem}: no trained model in {folder}: missing {', '.join(m + '.json' for m in missing)}.\n"
              f"  Train and export them (scripts/train_icam.py, scripts/train_fcpm.py, scripts/export_models.py),\n"
              f"  point --models at a folder that has them, or pass --random-models to time random-weight graphs\n"
              f"  of the default architecture (plumbing and speed only).", file=sys.stderr)
        sys.exit(2)
    desc = str(folder)
    try:
        meta = json.loads((folder / "icam.json").read_text())
        if meta.get("random_weights"):
            desc += " (random weights)"
        elif meta.get("soup"):
            desc += f" (ICAM: {soup_description(meta['soup'])})"
        elif "trained_steps" in meta:
            desc += f" (ICAM trained {meta['trained_steps']} steps)"
        desc += f", ICAM config {json.dumps(meta.get('config', {}), sort_keys=True)}"
    except (OSError, ValueError):
        pass
    return folder, desc, None


def cuda_ok() -> bool:
    sys.path.insert(0, str(ROOT))
    from vsvitm.backends import cuda_available
    return cuda_available()


VECTOR_FLAGS = (("avx512f", "AVX-512"), ("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"))


def soup_description(soup) -> str:
    """How a souped ICAM was made, from its manifest's "soup" list (scripts/soup.py): the mean of N checkpoints
    and their weights when they differ. A soup may hold soups, so N counts the top level only."""
    ws = [float(e.get("weight", 1.0)) for e in soup]   # soup.py writes one dict per ingredient
    if len(set(ws)) <= 1:
        return f"mean weights of {len(ws)} checkpoints"
    return f"weighted mean of {len(ws)} checkpoints (weights {' : '.join(f'{w:g}' for w in ws)})"


def cpu_description(cpuinfo: str) -> str:
    """The first processor's name, family/model and vector extensions from /proc/cpuinfo's text. Hosts that
    print the same name ("AMD EPYC") differ: one without AVX-512 ran one graph 1.4x (fp32) to 2x (int8) slower."""
    info: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if info:
                break  # end of the first processor's block
            continue
        k, sep, v = line.partition(":")
        if sep:
            info.setdefault(k.strip(), v.strip())
    if "model name" not in info:
        return ""
    flags = set(info.get("flags", "").split())
    ext = ["AVX2" if "avx2" in flags else "no AVX2"]
    ext += [name for flag, name in VECTOR_FLAGS if flag in flags] or ["no AVX-512"]
    fam = f"family {info['cpu family']}, model {info['model']}; " if "cpu family" in info and "model" in info else ""
    return f"{info['model name']} ({fam}{', '.join(ext)})"


def machine_lines() -> list[str]:
    cpu = "unknown CPU"
    try:
        cpu = cpu_description(Path("/proc/cpuinfo").read_text()) or cpu
    except OSError:
        cpu = platform.processor() or cpu
    ram = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    gpu = "none (nvidia-smi not found)"
    if shutil.which("nvidia-smi"):
        r = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True)
        gpu = "; ".join(s.strip() for s in r.stdout.splitlines() if s.strip()) or f"nvidia-smi failed: {r.stderr.strip()}"
    import onnxruntime as ort
    import vapoursynth as vs
    try:
        load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        load = "?"
    return [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores ({affinity} usable), RAM {ram}",
        f"- GPU: {gpu}",
        f"- software: Python {platform.python_version()}, VapourSynth {vs.__version__}, "
        f"onnxruntime {ort.__version__} (providers: {', '.join(ort.get_available_providers())}), {platform.platform()}",
        f"- load average at start (1/5/15 min): {load}",
    ]


# ------------------------------------------------------------------------------------------- child
def synthetic_clip(core, w: int, h: int, length: int):
    """RGB24: a blurred random texture panning right, exposure swinging (highlights clip in some frames)."""
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


class _Counter:
    """Calls and summed wall time of every ONNX graph and of DIS flow (over all threads) in the child."""

    def __init__(self):
        self.lock = threading.Lock()
        self.names: dict[int, str] = {}
        self.stats: dict[str, list] = {}
        self.on = False

    def add(self, name: str, dt: float, calls: int = 1):
        if self.on:
            with self.lock:
                s = self.stats.setdefault(name, [0, 0.0])
                s[0] += calls
                s[1] += dt

    def install(self):
        from vsvitm import backends, flow
        orig_session, orig_run, orig_flow = backends.session, backends.run, flow.DISFlow.calc
        # ICAM's pre-flows when its manifest asks for them: HomographyDIS inherits calc, so it gets its own
        orig_hflow = flow.HomographyDIS.calc
        orig_bound, orig_aux = backends.run_bound, backends.aux_session
        counter = self

        def aux_session(name, make, backend):  # the engine's own small graphs: round_half, merge_prep_K_E
            s = orig_aux(name, make, backend)
            counter.names[id(s)] = name.rstrip("_0123456789")
            return s

        def session(path, backend):
            s = orig_session(path, backend)
            counter.names[id(s)] = Path(path).stem.replace("_fp16", "").replace("_int8", "")
            return s

        inside = threading.local()  # a graph run band by band: one call, the bands' run times summed

        def run(sess, feeds):
            t = time.perf_counter()
            try:
                return orig_run(sess, feeds)
            finally:
                counter.add(counter.names.get(id(sess), "?"), time.perf_counter() - t,
                            0 if getattr(inside, "banded", False) else 1)

        def run_bound(sess, feeds, device, device_id=0):  # IO binding (CUDA): ICAM's and FCPM's steps
            t = time.perf_counter()
            try:
                return orig_bound(sess, feeds, device, device_id)
            finally:
                counter.add(counter.names.get(id(sess), "?"), time.perf_counter() - t)

        def timed_calc(orig, name):   # a pre-flow's calc, timed under `name`
            def calc(self_, a, b):
                t = time.perf_counter()
                try:
                    return orig(self_, a, b)
                finally:
                    counter.add(name, time.perf_counter() - t)
            return calc
        dis = timed_calc(orig_flow, "dis_flow")
        dis_homography = timed_calc(orig_hflow, "dis_flow_homography")   # feature homography + DIS from it

        from vsvitm import engine
        orig_warp = engine.warp_planes

        def cpu_warp(*args, **kw):  # OpenCV warps of the CPU path (FCPM state, merge inputs)
            t = time.perf_counter()
            try:
                return orig_warp(*args, **kw)
            finally:
                counter.add("cpu_warp", time.perf_counter() - t)

        orig_banded = engine.Engine._run_banded

        def banded(self_, graph, *args, **kw):
            inside.banded = True
            try:
                return orig_banded(self_, graph, *args, **kw)
            finally:
                inside.banded = False
                counter.add(graph, 0.0)

        backends.session, backends.run, backends.run_bound, flow.DISFlow.calc = session, run, run_bound, dis
        flow.HomographyDIS.calc = dis_homography
        backends.aux_session = aux_session
        engine.Engine._run_banded = banded
        engine.warp_planes = cpu_warp


def gpu_memory_mib(pid: int) -> float | None:
    if not shutil.which("nvidia-smi"):
        return None
    r = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                       capture_output=True, text=True)
    for line in r.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid):
            try:
                return float(parts[1])
            except ValueError:
                return None
    return None


def vm_hwm_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def seek_steps(out, cfg: dict) -> dict:
    """Cold request of the clip's middle frame, then cfg["frames"] single steps forward (a previewer)."""
    mid = out.num_frames // 2
    t0 = time.perf_counter()
    out.get_frame(mid)
    cold = time.perf_counter() - t0
    steps = []
    for i in range(mid + 1, min(out.num_frames, mid + 1 + cfg["frames"])):
        t0 = time.perf_counter()
        out.get_frame(i)
        steps.append(time.perf_counter() - t0)
    import vapoursynth as vs
    return {**{k: cfg[k] for k in ("size", "mode", "backend")}, "seek": True, "frames": len(steps),
            "vs_threads": vs.core.num_threads, "prefetch": 1,
            "cold_seek_s": cold, "step_mean_s": sum(steps) / len(steps), "step_max_s": max(steps),
            "peak_rss_mib": vm_hwm_mib()}


def child(cfg: dict) -> dict:
    sys.path.insert(0, str(ROOT))
    t_import = time.perf_counter()
    import vapoursynth as vs
    core = vs.core
    if cfg["threads"]:
        core.num_threads = cfg["threads"]
    if cfg["vs_cache_mb"]:
        core.max_cache_size = cfg["vs_cache_mb"]
    counter = _Counter()
    counter.install()
    import vsvitm
    from vsvitm.backends import Backend
    src = source_clip(core, cfg)
    backend = None
    if cfg["mode"] != "linear":
        if cfg["backend"] in ("cpu", "cpu-int8"):
            backend = Backend.ORT_CPU(num_threads=cfg["ort_threads"], int8=cfg["backend"] == "cpu-int8")
        else:
            backend = Backend.ORT_CUDA(fp16=cfg["backend"] == "cuda-fp16", provider_options=cfg.get("cuda_options") or {})
    t0 = time.perf_counter()
    extra = cfg.get("itm") or {}
    mode, extra = cfg["mode"], dict(extra)
    if mode == "single":
        mode, extra["num_refs"] = "icam", 0
    out = vsvitm.ITM(src, mode=mode, backend=backend, models=cfg["models"], cache_mb=cfg["cache_mb"], **extra)
    t_init = time.perf_counter() - t0
    if cfg.get("seek"):
        return seek_steps(out, cfg)
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
        **{k: cfg[k] for k in ("size", "mode", "backend", "start", "warmup", "frames")},
        "vs_threads": core.num_threads, "prefetch": prefetch,
        "ort_threads": getattr(backend, "num_threads", None),
        "init_s": t_init, "first_frame_s": first, "warmup_s": t_warm,
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
        "python_import_s": t0 - t_import,
    }


# ------------------------------------------------------------------------------------------ parent
def run_child(cfg: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(cfg)]
    env = dict(os.environ)
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**cfg, "error": f"timed out after {timeout:.0f} s"}
    for line in p.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    return {**cfg, "error": f"exit status {p.returncode}" + (f": {p.stdout.strip()[-300:]}" if p.stdout.strip() else "")}


def fmt(v, spec: str, none: str = "–") -> str:
    return none if v is None else format(v, spec)


def table(results: list[dict]) -> list[str]:
    base = {tuple(r["size"]): r.get("ms_per_frame") for r in results if r["mode"] == "linear" and "error" not in r}
    lines = ["| size | mode | backend | frames | ms/frame | fps | × pass-through | first frame (s) | peak RSS (MiB) | GPU mem (MiB) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        size = f"{r['size'][0]}×{r['size'][1]}"
        backend = "–" if r["mode"] == "linear" else r["backend"]
        if "error" in r:
            lines.append(f"| {size} | {r['mode']} | {backend} | {r['frames']} | failed: {r['error']} | | | | | |")
            continue
        b = base.get(tuple(r["size"]))
        ratio = r["ms_per_frame"] / b if b else None
        lines.append(f"| {size} | {r['mode']} | {backend} | {r['frames']} | {r['ms_per_frame']:.1f} | {r['fps']:.2f} | "
                     f"{fmt(ratio, '.1f')} | {fmt(r['first_frame_s'], '.2f')} | {r['peak_rss_mib']:.0f} | "
                     f"{fmt(r.get('gpu_mib'), '.0f')} |")
    return lines


def calls_table(results: list[dict]) -> list[str]:
    """Where the time went inside the pipeline: per output frame, calls and summed time of each part."""
    names = sorted({k for r in results for k in r.get("calls", {})},
                   key=lambda k: ("dis_flow dis_flow_homography icam_init icam_ref icam_decode fcpm_merge fcpm_merge_correct fcpm_merge_mix fcpm_back "
                                "fcpm_fwd fcpm_back_cpu fcpm_fwd_cpu cpu_warp fcpm_fuse".split() + [k]).index(k))
    rows = [r for r in results if r.get("calls")]
    if not rows or not names:
        return []
    lines = ["Per output frame in the timed window: calls × summed ms over all threads (so it can exceed "
             "ms/frame when VapourSynth runs frames in parallel):", "",
             "| size | mode | backend | " + " | ".join(names) + " | process CPU ms (busy) |",
             "|---|---|---|" + "---:|" * (len(names) + 1)]
    for r in rows:
        cells = []
        for k in names:
            c = r["calls"].get(k)
            cells.append("–" if c is None else f"{c['per_frame']:.2f} × → {c['ms_per_frame']:.0f} ms")
        busy = (f"{r['cpu_ms_per_frame']:.0f} ({100 * r['cpu_use']:.0f} % of {r['cores']} cores)"
                if "cpu_use" in r else "–")  # (older JSON files have no CPU time)
        lines.append(f"| {r['size'][0]}×{r['size'][1]} | {r['mode']} | {r['backend']} | " + " | ".join(cells)
                     + f" | {busy} |")
    for r in rows:  # each output frame should need exactly one fcpm_fuse (one chunk computation per chunk)
        fuse = r["calls"].get("fcpm_fuse", {}).get("per_frame")
        if r["mode"] == "full" and fuse and fuse > 1.05:
            lines += ["", f"Note: {r['size'][0]}×{r['size'][1]} {r['backend']}: fcpm_fuse ran {fuse:.2f}× per output "
                          "frame (1 expected): FCPM chunks were computed more than once (concurrent requests for "
                          "frames of the same chunk)."]
    return lines


def seek_table(results: list[dict]) -> list[str]:
    lines = ["| size | mode | backend | cold seek (s) | steps | step mean (s) | largest step (s) | largest / mean |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        size = f"{r['size'][0]}×{r['size'][1]}"
        if "error" in r:
            lines.append(f"| {size} | {r['mode']} | {r['backend']} | failed: {r['error']} | | | | |")
            continue
        lines.append(f"| {size} | {r['mode']} | {r['backend']} | {r['cold_seek_s']:.2f} | {r['frames']} | "
                     f"{r['step_mean_s']:.3f} | {r['step_max_s']:.3f} | {r['step_max_s'] / r['step_mean_s']:.1f} |")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=parse_sizes, default=parse_sizes("512x512,960x540,1920x1080"),
                    help="comma-separated WIDTHxHEIGHT list (default 512x512,960x540,1920x1080)")
    ap.add_argument("--modes", default="temporal,single,linear",
                    help="comma-separated subset of " + ",".join(MODES) + " (default temporal,single,linear)")
    ap.add_argument("--seek", action="store_true", help="time a cold seek to the middle frame and single steps "
                    "forward (a previewer) instead of a sequential render")
    ap.add_argument("--backends", default="auto",
                    help="comma-separated subset of cpu,cpu-int8,cuda,cuda-fp16; auto: cpu, plus both CUDA ones "
                         "when usable (cpu-int8: Backend.ORT_CPU(int8=True))")
    ap.add_argument("--frames", type=int, default=24, help="timed frames per CPU configuration (default 24: whole FCPM chunks)")
    ap.add_argument("--frames-cuda", type=int, default=96, help="timed frames per CUDA configuration (default 96)")
    ap.add_argument("--start", type=int, default=120,
                    help="first timed frame (default 120: a chunk boundary, and key frames there have all their references)")
    ap.add_argument("--warmup", type=int, default=6, help="frames start-warmup..start-1 rendered, not timed (default 6)")
    ap.add_argument("--models", help="model folder (default: the package's vsvitm/models); with --random-models: "
                    "where to export them (reused on later runs)")
    ap.add_argument("--arch", help='with --random-models: other widths, JSON {"icam": {ICAMConfig fields}, '
                                    '"fcpm": {FCPMConfig fields}}, e.g. \'{"icam": {"c1": 16}}\' (timings of untrained sizes)')
    ap.add_argument("--random-models", action="store_true",
                    help="export random-weight graphs of the default architecture (or of --arch) with torch "
                         "(speed/plumbing only)")
    ap.add_argument("--src", default=str(SAMPLE), help=f"source clip (default {SAMPLE.relative_to(ROOT)})")
    ap.add_argument("--synthetic", action="store_true", help="a synthetic panning clip instead of --src")
    ap.add_argument("--threads", type=int, default=0, help="VapourSynth core.num_threads (default: VapourSynth's, = cores)")
    ap.add_argument("--ort-threads", type=int, default=0,
                    help="ONNX Runtime intra-op threads per session on the CPU (default 0: the plugin's choice)")
    ap.add_argument("--prefetch", type=int, default=0, help="frames in flight while timing (default: core.num_threads)")
    ap.add_argument("--cache-mb", type=int, default=1024, help="ITM(cache_mb=...) (default 1024)")
    ap.add_argument("--itm", type=json.loads, default={}, metavar="JSON",
                    help="more ITM keyword arguments, e.g. '{\"chunk\": 24, \"margin\": 4}'")
    ap.add_argument("--cuda-options", type=json.loads, default={}, metavar="JSON",
                    help='Backend.ORT_CUDA(provider_options=...), e.g. \'{"arena_extend_strategy": "kSameAsRequested"}\'')
    ap.add_argument("--vs-cache-mb", type=int, default=0, help="core.max_cache_size in MiB (default: VapourSynth's)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per configuration (default 3600)")
    ap.add_argument("--append", metavar="FILE", help="append the Markdown report to FILE (e.g. BENCHMARKS.md)")
    ap.add_argument("--json", metavar="FILE", help="also write all raw results as JSON")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.child:
        res = child(json.loads(a.child))
        print(RESULT_TAG + json.dumps(res), flush=True)
        return 0

    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        ap.error(f"--modes: unknown {bad}; choose from {','.join(MODES)}")
    if a.frames < 1 or a.frames_cuda < 1 or a.warmup < 0 or a.start < a.warmup:
        ap.error("--frames/--frames-cuda must be >= 1, --warmup >= 0 and --start >= --warmup")
    if not a.synthetic and not Path(a.src).exists():
        ap.error(f"--src {a.src} does not exist (or use --synthetic)")

    has_cuda = None
    if a.backends == "auto":
        has_cuda = cuda_ok()
        backends = ["cpu"] + (["cuda", "cuda-fp16"] if has_cuda else [])
    else:
        backends = [b.strip() for b in a.backends.split(",") if b.strip()]
        if any(b not in ("cpu", "cpu-int8", "cuda", "cuda-fp16") for b in backends):
            ap.error("--backends: choose from cpu,cpu-int8,cuda,cuda-fp16")
        if any(b.startswith("cuda") for b in backends):
            has_cuda = cuda_ok()
            if not has_cuda:
                print("benchmark: no usable CUDA provider: skipping the CUDA configurations", file=sys.stderr)
                backends = [b for b in backends if not b.startswith("cuda")]
    net_modes = [m for m in modes if m != "linear"]
    tmp = None
    models, model_desc = None, "none needed (pass-through only)"
    if net_modes:
        models, model_desc, tmp = resolve_models(a, "full" in net_modes, any(b == "cuda-fp16" for b in backends))
    try:
        configs = []
        for (w, h) in a.sizes:
            for mode in modes:
                for b in (["cpu"] if mode == "linear" else backends):
                    configs.append({"size": [w, h], "mode": mode, "backend": b,
                                    "frames": a.frames_cuda if b.startswith("cuda") else a.frames,
                                    "start": a.start, "warmup": a.warmup, "models": str(models) if models else None,
                                    "src": str(a.src), "synthetic": a.synthetic, "threads": a.threads,
                                    "ort_threads": a.ort_threads, "prefetch": a.prefetch, "cache_mb": a.cache_mb,
                                    "vs_cache_mb": a.vs_cache_mb, "itm": a.itm, "cuda_options": a.cuda_options,
                                    "seek": a.seek})
        header = ["", f"## vsvitm benchmark, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}", ""]
        header += machine_lines()
        header += [f"- command: `{shlex.join([Path(sys.executable).name, *sys.argv])}`",
                   f"- source: {'synthetic panning clip (RGB24)' if a.synthetic else Path(a.src).name + ' via core.bs.VideoSource, resized (Bicubic)'}; "
                   f"warm-up frames {a.start - a.warmup}..{a.start - 1} rendered in order, not timed; then frames "
                   f"{a.start}.. timed, consecutive, with clip.frames(prefetch) (like vspipe); peak RSS = VmHWM of "
                   f"the configuration's own process",
                   f"- models: {model_desc}",
                   f"- {PAPER_ANCHOR}", ""]
        results = []
        for i, cfg in enumerate(configs, 1):
            label = f"{cfg['size'][0]}x{cfg['size'][1]} {cfg['mode']} {cfg['backend'] if cfg['mode'] != 'linear' else ''}"
            print(f"benchmark: [{i}/{len(configs)}] {label.strip()} ({cfg['frames']} frames) ...", file=sys.stderr, flush=True)
            r = run_child(cfg, a.timeout)
            results.append(r)
            if "error" in r:
                print(f"benchmark:   FAILED: {r['error']}", file=sys.stderr, flush=True)
            elif r.get("seek"):
                print(f"benchmark:   cold seek {r['cold_seek_s']:.2f} s, steps mean {r['step_mean_s']:.3f} s, "
                      f"max {r['step_max_s']:.3f} s", file=sys.stderr, flush=True)
            else:
                print(f"benchmark:   {r['ms_per_frame']:.1f} ms/frame, {r['fps']:.2f} fps, peak RSS {r['peak_rss_mib']:.0f} MiB "
                      f"(init {r['init_s']:.1f} s, first frame {r['first_frame_s']:.2f} s, CPU busy {100 * r['cpu_use']:.0f} % "
                      f"of {r['cores']} cores)", file=sys.stderr, flush=True)
        r0 = next((r for r in results if "error" not in r), None)
        if r0:
            header.insert(-2, f"- VapourSynth threads {r0['vs_threads']}, prefetch {r0['prefetch']}, "
                              f"ORT CPU intra-op threads {a.ort_threads or 'plugin default'}, ITM cache_mb {a.cache_mb}"
                              + (f", ITM kwargs {json.dumps(a.itm)}" if a.itm else ""))
        if a.seek:
            report = header + seek_table(results) + [""]
            extra = None
        else:
            report = header + table(results) + [""]
            extra = calls_table(results)
        if extra:
            report += extra + [""]
        text = "\n".join(report)
        print(text)
        if a.append:
            with open(a.append, "a", encoding="utf-8") as fh:
                fh.write(text + "\n")
            print(f"benchmark: appended to {a.append}", file=sys.stderr)
        if a.json:
            Path(a.json).write_text(json.dumps({"header": header, "results": results}, indent=1))
        return 1 if any("error" in r for r in results) else 0
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
