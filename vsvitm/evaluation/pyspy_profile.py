"""Where a real render's time goes, sampled by py-spy (vsvitm-pyspy-profile).

    vsvitm-pyspy-profile [--size 512x512] [--mode full] [--frames 48] [--itm JSON] [--rate 50]
                         [--out runs/pyspy_512] [--top 20]
    vsvitm-pyspy-profile --summarise runs/pyspy_512.speedscope.json     # tables of an earlier run

Runs vsvitm-benchmark for one configuration (its subprocess renders through VapourSynth with
clip.frames(prefetch), like vspipe) under `py-spy record --subprocesses --format speedscope`, then
sums the samples of every Python thread while it was running (py-spy leaves idle threads out):
  * by leaf: the innermost Python function of each sample, i.e. the Python line that was running or
    that had called into native code (an ONNX Runtime session's `run`, OpenCV's DIS `calc`, numpy);
  * by part: each sample given to the first engine-level function on its stack (innermost first) named
    in PARTS, so the shares read as "ONNX graph runs", "pre-flows", "OpenCV warps", ...
Samples are wall-clock samples per thread: two threads busy at once give two samples. What py-spy
cannot see: native threads that never run Python (ONNX Runtime's intra-op pool, VapourSynth's own
filters); their work shows up as the Python caller's samples only while that caller waits in them.
The whole child is sampled, so model loading and the untimed warm-up frames are included; the
timed part dominates at 48 frames.

py-spy comes from PyPI (`pip install py-spy`; not a dependency of vsvitm); it needs to be allowed to read the
child's memory (ptrace: the default for a child it starts itself).
Writes <out>.speedscope.json (open in https://www.speedscope.app) and <out>.md (the two tables).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from ..checkout import REPO

# Engine-level functions a sample is charged to (innermost match wins), and the part they make up.
PARTS = [
    ("run_banded", "ONNX graph runs"), ("_run", "ONNX graph runs"), ("run_bound", "ONNX graph runs"),
    ("warp_planes", "OpenCV warps between graphs"), ("_merge_flows_cv", "OpenCV warps between graphs"),
    ("_preflow", "pre-flows (DIS, homography, ratios)"), ("align_small", "pre-flows (DIS, homography, ratios)"),
    ("net_input", "network inputs (f^-1, mask, padding)"), ("_luma", "pre-flow lumas"),
    ("frame_to_code", "VapourSynth frame -> numpy"), ("array_to_frame", "numpy -> VapourSynth frame"),
    ("blend", "eq. 1 and output clean-up"), ("finite", "eq. 1 and output clean-up"),
]


def summarise(speedscope: dict, top: int = 20) -> tuple[float, list[tuple[str, float]], list[tuple[str, float]]]:
    """(total, [(leaf, t)] most first (top of them), [(part, t)] most first) from py-spy's speedscope JSON,
    in its sample weights (seconds of thread time).

    speedscope: the parsed speedscope file.
    top: how many leaves to keep.
    """
    frames = speedscope["shared"]["frames"]

    def label(i: int) -> str:
        f = frames[i]
        file = Path(f.get("file") or "?").name
        return f"{f['name']} ({file}:{f.get('line', '?')})"

    # py-spy names methods by their qualified name ("Engine._run", "Engine.run_banded.<locals>.rows"):
    # match the part's function name as the whole name or its last component
    names = [f["name"].rsplit(".", 1)[-1] for f in frames]
    # with --subprocesses each stack starts with a "process PID:..." frame; a stack of nothing else is not Python
    proc = [f["name"].startswith("process ") for f in frames]
    leaves, parts, total = Counter(), Counter(), 0.0
    for prof in speedscope["profiles"]:
        for stack, w in zip(prof["samples"], prof["weights"]):
            if not stack or proc[stack[-1]]:
                continue
            total += w
            leaves[label(stack[-1])] += w
            part = "other Python"
            for i in reversed(stack):
                hit = next((p for fn, p in PARTS if names[i] == fn), None)
                if hit:
                    part = hit
                    break
            parts[part] += w
    return total, leaves.most_common(top), parts.most_common()


def table(rows: list[tuple[str, float]], total: float, head: str) -> str:
    """A Markdown table of (name, thread seconds) rows with their shares of the total.

    rows: (name, seconds) pairs.
    total: the seconds the shares are of.
    head: the first column's heading.
    """
    out = [f"| {head} | thread s | share |", "|---|---:|---:|"]
    out += [f"| `{k}` | {n:.1f} | {100 * n / max(total, 1e-9):.1f} % |" for k, n in rows]
    return "\n".join(out)


def report(speedscope: dict, top: int) -> str:
    """The two tables of a profile, with its total.

    speedscope: the parsed speedscope file.
    top: how many leaves to list.
    """
    total, leaves, parts = summarise(speedscope, top)
    return "\n".join([f"{total:.1f} s of running Python threads sampled", "",
                      table(parts, total, "part (innermost engine function on the stack)"), "",
                      table(leaves, total, "innermost Python function"), ""])


def main(argv=None) -> int:
    """Entry point of vsvitm-pyspy-profile.

    argv: command-line arguments (None: sys.argv[1:]).
    """
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="512x512")
    ap.add_argument("--mode", default="full", choices=["full", "icam", "linear"])
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--itm", default="{}", help="ITM options as JSON, as vsvitm-benchmark --itm")
    ap.add_argument("--rate", type=int, default=50, help="samples per second per thread")
    ap.add_argument("--out", default=str(REPO / "runs" / "pyspy_512"))
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--summarise", metavar="JSON", help="only summarise this earlier speedscope file (no run)")
    a = ap.parse_args(argv)
    if a.summarise:
        print(f"{a.summarise}: " + report(json.loads(Path(a.summarise).read_text()), a.top))
        return 0
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("pyspy_profile: py-spy not found: pip install py-spy")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ss = out.with_suffix(".speedscope.json")
    bench = [sys.executable, "-m", "vsvitm.evaluation.benchmark", "--sizes", a.size, "--modes", a.mode,
             "--backends", "cpu", "--frames", str(a.frames), "--itm", a.itm]
    cmd = [spy, "record", "--subprocesses", "--rate", str(a.rate), "--format", "speedscope", "-o", str(ss), "--"] + bench
    print("$", " ".join(cmd), flush=True)
    run = subprocess.run(cmd, capture_output=True, text=True)
    bench_rows = [ln for ln in run.stdout.splitlines() if ln.startswith("| ") and " cpu " in ln]
    if run.returncode != 0 or not ss.exists():
        sys.stderr.write(run.stdout[-3000:] + run.stderr[-3000:])
        raise SystemExit(f"pyspy_profile: the profiled run failed (exit {run.returncode})")
    text = "\n".join([
        f"py-spy {a.rate} Hz, {a.size} {a.mode}, {a.frames} timed frames, ITM {a.itm} (model loading and warm-up "
        f"included); benchmark rows (sampled, so slower than an unprofiled run):", *bench_rows, "",
        report(json.loads(ss.read_text()), a.top)])
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
