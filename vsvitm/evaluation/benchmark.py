"""Speed and memory of vsvitm.ITM through VapourSynth (vsvitm-benchmark).

    vsvitm-benchmark [--sizes 512x512,960x540,1920x1080] [--modes temporal,single,linear]
                     [--frames 24] [--models DIR | --random-models] [--synthetic]
                     [--threads N] [--append BENCHMARKS.md]

Renders a real clip (samples/london_pan_320x240.mp4 via core.bs.VideoSource, resized to each size;
or a synthetic panning clip with --synthetic) through the VapourSynth API, for every configuration
  size x mode (temporal: the default pipeline; single: single-frame ICAM on every frame, mode="icam",
  num_refs=0; full: ICAM on key frames + FCPM; icam: ICAM with references on every frame; linear: the
  pass-through chain source -> f^-1 -> output) x backend (ORT CPU; CUDA fp32 and fp16 when a CUDA provider works)
each in its own subprocess (bench_child.py), so that the peak RSS (ru_maxrss / VmHWM) belongs to that configuration.
Frames `start .. start+warmup-1` are rendered first and not timed (the first output frame of the full
pipeline pays for key frames and a whole FCPM chunk); then `--frames` consecutive frames are timed
with VapourSynth's own prefetching (clip.frames(prefetch=...), like vspipe). With the defaults
(--start 120, warm-up 6, 24 frames) the timed window is exactly whole FCPM chunks (frames 120..143: one of
24 frames below 1 MP, two of 12 from 1 MP on; ITM's default chunk), and
every key frame it uses has all its references (at most 6 x 15 = 90 frames back): steady state.

--seek: what a previewer sees instead: a cold request of the middle frame (--seek-at: another) in a fresh process
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
import shlex
import subprocess
import sys
from pathlib import Path

from ..checkout import REPO, SAMPLE
from .bench_child import child
from .bench_models import cuda_ok, parse_sizes, resolve_models
from .machine import machine_lines

PAPER_ANCHOR = ("Paper anchor (Tesla V100): 521 ms per 512×512 frame for the full method; "
                "1236 ms with ICAM on every frame.")
RESULT_TAG = "VSVITM_BENCH_RESULT "
MODES = ("temporal", "single", "full", "icam", "linear")


def run_child(cfg: dict, timeout: float) -> dict:
    """One configuration in a fresh process (bench_child.child); its result, or {**cfg, "error": ...}.

    cfg: the configuration.
    timeout: seconds it may take.
    """
    cmd = [sys.executable, "-m", "vsvitm.evaluation.benchmark", "--child", json.dumps(cfg)]
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
    """v formatted by spec, or `none` when v is None.

    v: the value.
    spec: a format spec.
    none: the text for None.
    """
    return none if v is None else format(v, spec)


def table(results: list[dict]) -> list[str]:
    """Markdown lines: ms/frame, fps, ratio to the pass-through chain, first frame, peak RSS, GPU memory.

    results: the configurations' results.
    """
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
    """Where the time went inside the pipeline: per output frame, calls and summed time of each part.

    results: the configurations' results.
    """
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
    """Markdown lines of --seek results: cold seek, steps, mean and largest step.

    results: the configurations' results.
    """
    lines = ["| size | mode | backend | frame | cold seek (s) | steps | step mean (s) | largest step (s) | largest / mean |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        size = f"{r['size'][0]}×{r['size'][1]}"
        if "error" in r:
            lines.append(f"| {size} | {r['mode']} | {r['backend']} | | failed: {r['error']} | | | | |")
            continue
        lines.append(f"| {size} | {r['mode']} | {r['backend']} | {r['seek_at']} | {r['cold_seek_s']:.2f} | {r['frames']} | "
                     f"{r['step_mean_s']:.3f} | {r['step_max_s']:.3f} | {r['step_max_s'] / r['step_mean_s']:.1f} |")
    return lines


def build_parser() -> argparse.ArgumentParser:
    """vsvitm-benchmark's command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=parse_sizes, default=parse_sizes("512x512,960x540,1920x1080"),
                    help="comma-separated WIDTHxHEIGHT list (default 512x512,960x540,1920x1080)")
    ap.add_argument("--modes", default="temporal,single,linear",
                    help="comma-separated subset of " + ",".join(MODES) + " (default temporal,single,linear)")
    ap.add_argument("--seek", action="store_true", help="time a cold seek to the middle frame and single steps "
                    "forward (a previewer) instead of a sequential render")
    ap.add_argument("--seek-at", type=int, default=None, metavar="FRAME",
                    help="with --seek: the frame to seek to (default: the middle frame)")
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
    ap.add_argument("--src", default=str(SAMPLE), help=f"source clip (default {SAMPLE.relative_to(REPO)})")
    ap.add_argument("--synthetic", action="store_true", help="a synthetic panning clip instead of --src")
    ap.add_argument("--threads", type=int, default=0, help="VapourSynth core.num_threads (default: VapourSynth's, = cores)")
    ap.add_argument("--ort-threads", type=int, default=0,
                    help="ONNX Runtime intra-op threads per session on the CPU (default 0: the plugin's choice)")
    ap.add_argument("--prefetch", type=int, default=0, help="frames in flight while timing (default: core.num_threads)")
    ap.add_argument("--cache-mb", type=int, default=1024, help="ITM's Tuning(cache_mb=...) (default 1024)")
    ap.add_argument("--itm", type=json.loads, default={}, metavar="JSON",
                    help="more ITM keyword arguments, e.g. '{\"chunk\": 24, \"margin\": 4}'")
    ap.add_argument("--cuda-options", type=json.loads, default={}, metavar="JSON",
                    help='Backend.ORT_CUDA(provider_options=...), e.g. \'{"arena_extend_strategy": "kSameAsRequested"}\'')
    ap.add_argument("--vs-cache-mb", type=int, default=0, help="core.max_cache_size in MiB (default: VapourSynth's)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per configuration (default 3600)")
    ap.add_argument("--append", metavar="FILE", help="append the Markdown report to FILE (e.g. BENCHMARKS.md)")
    ap.add_argument("--json", metavar="FILE", help="also write all raw results as JSON")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    return ap


def pick_backends(ap, a) -> list[str]:
    """The backends to time: --backends, or cpu plus both CUDA ones when a CUDA provider works.

    ap: the parser (for its errors).
    a: the parsed command line.
    """
    if a.backends == "auto":
        return ["cpu"] + (["cuda", "cuda-fp16"] if cuda_ok() else [])
    backends = [b.strip() for b in a.backends.split(",") if b.strip()]
    if any(b not in ("cpu", "cpu-int8", "cuda", "cuda-fp16") for b in backends):
        ap.error("--backends: choose from cpu,cpu-int8,cuda,cuda-fp16")
    if any(b.startswith("cuda") for b in backends) and not cuda_ok():
        print("benchmark: no usable CUDA provider: skipping the CUDA configurations", file=sys.stderr)
        backends = [b for b in backends if not b.startswith("cuda")]
    return backends


def make_configs(a, modes: list[str], backends: list[str], models) -> list[dict]:
    """One configuration per size, mode and backend (the pass-through chain: the CPU only).

    a: the parsed command line.
    modes: the modes to time.
    backends: the backends to time.
    models: the model folder, or None (pass-through only).
    """
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
                                "seek": a.seek, "seek_at": a.seek_at})
    return configs


def header_lines(a, model_desc: str) -> list[str]:
    """The report's heading: date, machine, command, source and models.

    a: the parsed command line.
    model_desc: how the models are described (bench_models.resolve_models).
    """
    header = ["", f"## vsvitm benchmark, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}", ""]
    header += machine_lines()
    header += [f"- command: `{shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])}`",
               f"- source: {'synthetic panning clip (RGB24)' if a.synthetic else Path(a.src).name + ' via core.bs.VideoSource, resized (Bicubic)'}; "
               f"warm-up frames {a.start - a.warmup}..{a.start - 1} rendered in order, not timed; then frames "
               f"{a.start}.. timed, consecutive, with clip.frames(prefetch) (like vspipe); peak RSS = VmHWM of "
               f"the configuration's own process",
               f"- models: {model_desc}",
               f"- {PAPER_ANCHOR}", ""]
    return header


def run_all(configs: list[dict], timeout: float) -> list[dict]:
    """Every configuration in its own process, in order, with progress on stderr; their results.

    configs: the configurations (make_configs).
    timeout: seconds each may take.
    """
    results = []
    for i, cfg in enumerate(configs, 1):
        label = f"{cfg['size'][0]}x{cfg['size'][1]} {cfg['mode']} {cfg['backend'] if cfg['mode'] != 'linear' else ''}"
        print(f"benchmark: [{i}/{len(configs)}] {label.strip()} ({cfg['frames']} frames) ...", file=sys.stderr, flush=True)
        r = run_child(cfg, timeout)
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
    return results


def report(a, header: list[str], results: list[dict]) -> str:
    """The Markdown report: heading (with the threads the runs used), then the table(s).

    a: the parsed command line.
    header: header_lines.
    results: the configurations' results.
    """
    r0 = next((r for r in results if "error" not in r), None)
    if r0:
        header.insert(-2, f"- VapourSynth threads {r0['vs_threads']}, prefetch {r0['prefetch']}, "
                          f"ORT CPU intra-op threads {a.ort_threads or 'plugin default'}, ITM cache_mb {a.cache_mb}"
                          + (f", ITM kwargs {json.dumps(a.itm)}" if a.itm else ""))
    if a.seek:
        lines = header + seek_table(results) + [""]
    else:
        lines = header + table(results) + [""]
        extra = calls_table(results)
        if extra:
            lines += extra + [""]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Entry point of vsvitm-benchmark; exit status 0 ok, 1 a configuration failed, 2 no models.

    argv: command-line arguments (None: sys.argv[1:]).
    """
    ap = build_parser()
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
    backends = pick_backends(ap, a)
    net_modes = [m for m in modes if m != "linear"]
    tmp = None
    models, model_desc = None, "none needed (pass-through only)"
    if net_modes:
        models, model_desc, tmp = resolve_models(a, "full" in net_modes, any(b == "cuda-fp16" for b in backends))
    try:
        header = header_lines(a, model_desc)
        results = run_all(make_configs(a, modes, backends, models), a.timeout)
        text = report(a, header, results)
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
