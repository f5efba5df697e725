"""vsvitm-farm against plain `vspipe | x265` on one machine, and the overhead of a segment
(vsvitm-farm-benchmark).

    vsvitm-farm-benchmark [--frames 480] [--size 512x512] [--segment 240] [--timed-lengths 24,48,96]
                          [--lengths 48,96,240,480] [--mode temporal]

1. Wall time of the same synthetic clip (a pan with a swinging exposure, so highlights clip in some
   frames, and a cut) rendered by `vspipe -c y4m SCRIPT - | x265 --y4m --input - <HDR10 flags>` and
   by `vsvitm-farm SCRIPT -o OUT.hevc --segment S` (a local Ray instance: its start is in the time),
   one after the other, same x265 preset; the farm's sum of segment times over the plain time.
2. The measured overhead per segment length: segments of each length rendered alone by a fresh
   vspipe (as the farm's tasks do), timed; a least-squares line T(L) = a + b L gives the time a
   segment costs beyond its frames (a: the script's start, the key frames and margins beyond its
   edges) and overhead(L) = T(L) / (b L) - 1.
3. The extra work of rendering a segment alone, counted in the engine (key frames through ICAM,
   merged frames, recurrence steps) for each segment length against the whole clip rendered in one
   process, beside what `vsvitm.farm.segment_extra` plans. Counted at 96x96 with the benchmark
   size's FCPM chunk and margin (the counts depend on them, not on the pixels), on a clip whose one
   cut lies away from the segments' edges.
Prints markdown tables, the CPU model and the date.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .hooks import watch_engine
from .machine import cpu_model

SCRIPT = """
import vsvitm
from vsvitm.evaluation.farm_benchmark import synthetic_clip
clip = synthetic_clip({w}, {h}, {n}, {cut})
{tail}
"""


def synthetic_clip(w: int, h: int, length: int, cut: int):
    """YUV420P8: a pan over a smooth random texture with a swinging exposure (highlights clip in some
    frames) and one cut, made on demand.

    w: frame width.
    h: frame height.
    length: frames.
    cut: the first frame of the second shot.
    """
    import cv2
    import vapoursynth as vs
    core = vs.core
    rng = np.random.default_rng(0)
    base = rng.random((h // 8 + 1, (w + length) // 8 + 1)).astype(np.float32)
    base = cv2.resize(base, ((w + length) // 8 * 8 + 8, h), interpolation=cv2.INTER_CUBIC)
    blank = core.std.BlankClip(width=w, height=h, format=vs.RGB24, length=length, fpsnum=24, fpsden=1)

    def make(n, f):
        out = f.copy()
        view = base[:, n:n + w] if n < cut else base[::-1, ::-1][:, n:n + w] * 0.6   # a pan, one cut
        e = 0.6 + 0.6 * np.sin(n / 9)
        for p, g in enumerate((1.0, 0.9, 0.8)):
            np.asarray(out[p])[:] = (np.clip(view * e * g * 1.6, 0, 1) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)
        return out

    return core.resize.Bicubic(core.std.ModifyFrame(blank, blank, make), format=vs.YUV420P8, matrix_s="709")


def write_script(path: Path, w: int, h: int, n: int) -> None:
    """The benchmark's .vpy: the synthetic clip through vsvitm.ITM and to_hdr10.

    path: where to write it.
    w: frame width.
    h: frame height.
    n: frames (one cut, in the middle).
    """
    path.write_text(SCRIPT.format(w=w, h=h, n=n, cut=n // 2 + 7, tail="vsvitm.to_hdr10(vsvitm.ITM(clip)).set_output()"))


def timed(cmd, shell=False, **kw) -> float:
    """Seconds a command takes; exits with its stderr when it fails.

    cmd: the command (a list, or a string with shell=True).
    shell: run it through the shell (for a pipe).
    kw: more subprocess.run arguments.
    """
    t0 = time.perf_counter()
    r = subprocess.run(cmd, shell=shell, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"farm-benchmark: {cmd if shell else shlex.join(map(str, cmd))} failed:\n{r.stderr[-3000:]}")
    return time.perf_counter() - t0


def count_work(w: int, h: int, n: int, ranges: list[tuple[int, int]], chunk: int, margin: int,
               mode: str = "temporal") -> list[dict]:
    """Engine calls of rendering each range alone, each in a fresh process (as a segment's vspipe):
    key frames through ICAM, merged frames, and (length, core start, core end) of each recurrence run.

    w: frame width of the synthetic clip.
    h: frame height.
    n: its frames (one cut, 30 frames before the end).
    ranges: the [start, end) ranges to render, each alone.
    chunk: ITM's FCPM chunk.
    margin: ITM's FCPM margin.
    mode: ITM's mode.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    out = []
    for r in ranges:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            out.append(pool.submit(_count_one, w, h, n, r, chunk, margin, mode).result())
    return out


def _count_one(w: int, h: int, n: int, rng: tuple[int, int], chunk: int, margin: int, mode: str) -> dict:
    """count_work for one range, in this process."""
    import vapoursynth as vs
    calls = {"keys": [], "merged": [], "steps": []}
    lock = threading.Lock()
    what = {"icam": lambda a: ("keys", a[0]), "merge": lambda a: ("merged", a[0]),
            "propagate": lambda a: ("steps", (len(a[0]), a[3].start, a[3].stop))}

    def enter(name, args):
        key, value = what[name](args)
        with lock:
            calls[key].append(value)

    with watch_engine(tuple(what), enter):
        env = {}
        exec(SCRIPT.format(w=w, h=h, n=n, cut=n - 30, tail=f"res = vsvitm.ITM(clip, tuning=dict(chunk={chunk}, margin={margin}), mode={mode!r})"), env)
        res = env["res"]
        for t in range(*rng):
            res.get_frame(t)
        out = {k: list(v) for k, v in calls.items()}
        del env, res
        vs.core.clear_cache() if hasattr(vs.core, "clear_cache") else None
    return out


def build_parser() -> argparse.ArgumentParser:
    """vsvitm-farm-benchmark's command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=480)
    ap.add_argument("--size", default="512x512")
    ap.add_argument("--segment", type=int, default=240, help="the farm run's --segment")
    ap.add_argument("--timed-lengths", default="24,48,96", help="segment lengths rendered alone and timed")
    ap.add_argument("--lengths", default="48,96,240,480", help="segment lengths whose extra work is counted")
    ap.add_argument("--mode", default="temporal", help="the ITM mode of the counted renders (the clip's is the default)")
    ap.add_argument("--preset", default="fast", help="x265 preset of both runs")
    ap.add_argument("--skip-render", action="store_true", help="skip the farm / plain comparison")
    ap.add_argument("--skip-timed", action="store_true", help="skip the timed segments")
    ap.add_argument("--json", help="also write the numbers here")
    return ap


def compare_runs(a, w: int, h: int, tmp: Path, vspipe: str) -> dict:
    """Part 1: the same clip through `vspipe | x265` and through vsvitm-farm; prints a table.

    a: the parsed command line.
    w: frame width.
    h: frame height.
    tmp: a scratch folder.
    vspipe: the vspipe executable.
    """
    from vsvitm.hdr import hdr10_x265_args
    script = tmp / "clip.vpy"
    write_script(script, w, h, a.frames)
    flags = hdr10_x265_args() + ["--preset", a.preset]
    plain = timed(f"{shlex.quote(vspipe)} -c y4m {shlex.quote(str(script))} - | x265 --y4m --input - "
                  f"{shlex.join(flags)} --output {shlex.quote(str(tmp / 'plain.hevc'))}", shell=True)
    work = tmp / "work"
    farm_s = timed([sys.executable, "-m", "vsvitm.farm", str(script), "-o", str(tmp / "farm.hevc"), "--segment",
                    str(a.segment), "--x265", f"--preset {a.preset}", "--work-dir", str(work), "--keep"])
    segs = json.loads((work / "manifest.json").read_text())["segments"]
    seg_sum = sum(s["seconds"] for s in segs.values())
    print("| run | wall time (s) | fps |\n|---|---:|---:|")
    print(f"| `vspipe -c y4m clip.vpy - \\| x265 --preset {a.preset}` + HDR10 flags | {plain:.1f} | "
          f"{a.frames / plain:.2f} |")
    print(f"| `vsvitm-farm clip.vpy -o farm.hevc --segment {a.segment}` ({len(segs)} segments, local Ray) | "
          f"{farm_s:.1f} | {a.frames / farm_s:.2f} |")
    print(f"\nfarm / plain: {farm_s / plain:.3f}; sum of the segments' own times / plain: {seg_sum / plain:.3f}\n")
    return {"plain_s": plain, "farm_s": farm_s, "farm_segments": len(segs), "farm_segment_sum_s": seg_sum}


def timed_segments(a, w: int, h: int, chunk: int, tmp: Path, vspipe: str) -> dict:
    """Part 2: each length rendered alone by a fresh vspipe from an aligned frame, as a segment is;
    T(L) = a + b L by least squares; prints a table.

    a: the parsed command line.
    w: frame width.
    h: frame height.
    chunk: ITM's FCPM chunk at this size.
    tmp: a scratch folder.
    vspipe: the vspipe executable.
    """
    lengths = [int(x) for x in a.timed_lengths.split(",")]
    start = (240 // chunk) * chunk
    script = tmp / "long.vpy"
    write_script(script, w, h, start + max(lengths) + 240)
    info = [timed([vspipe, "--info", str(script), "-"]) for _ in range(3)]
    times = [timed([vspipe, "-s", str(start), "-e", str(start + n - 1), str(script), "--"]) for n in lengths]
    mx, my = sum(lengths) / len(lengths), sum(times) / len(times)
    b = sum((x - mx) * (y - my) for x, y in zip(lengths, times)) / sum((x - mx) ** 2 for x in lengths)
    a0 = my - b * mx
    print(f"Segments rendered alone from frame {start} (fresh vspipe each, no encoder): T(L) = {a0:.1f} s + "
          f"{b:.3f} s x L (least squares); the script's start (`vspipe --info`) {min(info):.1f} s.\n")
    print("| segment L | wall time (s) | overhead T(L) / (b L) - 1 |\n|---:|---:|---:|")
    for n, t in zip(lengths, times):
        print(f"| {n} | {t:.1f} | {100 * (t / (b * n) - 1):.1f} % |")
    for n in (240, 1920):
        print(f"| {n} (from the fit) | {a0 + b * n:.1f} | {100 * a0 / (b * n):.1f} % |")
    print()
    return {"lengths": lengths, "seconds": times, "per_frame_s": b, "intercept_s": a0, "script_start_s": min(info)}


def counted_segments(a, chunk: int, margin: int) -> list[dict]:
    """Part 3: the extra work of each segment length rendered alone, counted in the engine, beside what
    vsvitm.farm plans; prints a table.

    a: the parsed command line.
    chunk: ITM's FCPM chunk at the benchmark's size.
    margin: ITM's FCPM margin at that size.
    """
    from vsvitm import farm
    from vsvitm.itm import KEY_STRIDE, NUM_REFS
    from vsvitm.schedule import Schedule
    lengths = [int(x) for x in a.lengths.split(",")]
    n_count = max(lengths) + 2 * 240
    start = (240 // chunk) * chunk
    ranges = [(0, n_count)] + [(start, start + L) for L in lengths]
    t0 = time.perf_counter()
    counted = count_work(96, 96, n_count, ranges, chunk, margin, a.mode)
    whole = counted[0]
    sched = Schedule(n_count, key_stride=KEY_STRIDE.get(a.mode, 6), num_refs=NUM_REFS.get(a.mode, 4),
                     chunk=chunk, margin=margin)
    rows = []
    print(f"Extra work of a segment rendered alone, mode {a.mode} (from frame {start}; counted in the engine on a "
          f"{n_count}-frame clip, chunk {chunk}, margin {margin}; {time.perf_counter() - t0:.0f} s):\n")
    print("| segment | planned extra merges / keys / steps | counted extra merges / keys / steps | planned overhead | "
          "\n|---:|---|---|---:|")
    for (s, e), got in zip(ranges[1:], counted[1:]):
        plan = farm.segment_extra(sched, s, e, a.mode)
        # the whole render's recurrence steps for the chunks whose core lies in the segment
        own_steps = sum(n for n, cs, ce in whole["steps"] if s <= cs and ce <= e)
        extra = {"merged": len({t for t in got["merged"] if not s <= t < e}),
                 "keys": len({k for k in got["keys"] if not s <= k < e}),
                 "steps": sum(n for n, _, _ in got["steps"]) - own_steps}
        planned = farm.planned_overhead(sched, s, e, a.mode)
        rows.append({"length": e - s, "planned": plan, "counted": extra, "planned_overhead": planned})
        print(f"| {e - s} | {plan['merged']} / {plan['keys']} / {plan['steps']} | {extra['merged']} / {extra['keys']} / "
              f"{extra['steps']} | {100 * planned:.1f} % |")
    return rows


def main(argv=None) -> int:
    """Entry point of vsvitm-farm-benchmark.

    argv: command-line arguments (None: sys.argv[1:]).
    """
    a = build_parser().parse_args(argv)
    w, h = map(int, a.size.lower().split("x"))
    from vsvitm import farm
    from vsvitm.itm import chunk_and_margin
    chunk, margin = chunk_and_margin(w, h)
    result = {"cpu": cpu_model(), "cores": os.cpu_count(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "frames": a.frames, "size": [w, h], "segment": a.segment, "preset": a.preset}
    print(f"# vsvitm-farm benchmark: {a.frames} frames at {w}x{h}, {result['cpu']}, {result['cores']} cores, "
          f"{result['date']}\n")
    tmp = Path(tempfile.mkdtemp(prefix="farm_bench_"))
    vspipe = farm.vspipe_exe()
    if not a.skip_render:
        result.update(compare_runs(a, w, h, tmp, vspipe))
    if not a.skip_timed:
        result["timed"] = timed_segments(a, w, h, chunk, tmp, vspipe)
    result["counted"] = counted_segments(a, chunk, margin)
    shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
