#!/usr/bin/env python3
"""Peak memory of each ONNX graph run once at a frame size, each in its own process (ORT CPU).

    python scripts/graph_memory.py --size 1920x1080 [--models vsvitm/models] [--graphs fcpm_merge,fcpm_back]

Prints, per graph: the process RSS with inputs allocated, the peak during the run, and the run's
own share in bytes per (padded) pixel. This is what one call adds on top of the plugin's frames
and caches; scripts/memory_trace.py measures a whole render.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRAPHS = ["icam_init", "icam_ref", "icam_decode", "fcpm_merge", "fcpm_back", "fcpm_fwd", "fcpm_fuse",
          # the CPU path's graphs (engine.PREWARP_GRAPHS, engine.SPLIT_MERGE), where the folder has them
          "fcpm_merge_correct", "fcpm_merge_mix", "fcpm_back_cpu", "fcpm_fwd_cpu"]


# inputs not fed one frame at full resolution: name -> (batch, scale); by graph where the name is shared
SHAPES = {"fl": (1, 2), "g": (1, 16)}  # ICAM's state, at 1/2 and 1/16 resolution
GRAPH_SHAPES = {
    # every merged key at once (fcpm_keys, 5 by default), at 1/2 resolution (Engine._merge_flows_cv)
    "fcpm_merge_correct": {"x": (5, 2)},
}


def random_feeds(sess, h: int, w: int, seed: int = 0, graph: str | None = None) -> dict:
    """Random inputs for any of the graphs at an h x w frame (multiples of 64), shaped as the engine
    feeds them: channel counts come from the graph (only N, H, W are dynamic), batch and resolution
    from SHAPES / GRAPH_SHAPES[graph]. Kept free of torch, so the measuring process holds only ONNX
    Runtime (tests use it too)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    shapes = {**SHAPES, **GRAPH_SHAPES.get(graph, {})}
    out = {}
    for i in sess.get_inputs():
        c = i.shape[1]
        if i.name == "valid":
            out[i.name] = np.ones((1, c, 1, 1), np.float32)
        elif i.name in ("preflows", "flow", "preflow"):
            out[i.name] = rng.standard_normal((1, c, h, w), dtype=np.float32)
            out[i.name] *= 3  # in place: a float64 temporary would raise the high-water mark the script measures from
        else:
            n, f = shapes.get(i.name, (1, 1))
            out[i.name] = rng.random((n, c, h // f, w // f), np.float32)
    return out


def one(graph: str, models: Path, h: int, w: int) -> dict:
    import onnxruntime as ort
    so = ort.SessionOptions()  # as the plugin's CPU backend: full optimisation, arena off, one thread
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = 1
    so.enable_cpu_mem_arena = False
    sess = ort.InferenceSession(str(models / f"{graph}.onnx"), so, providers=["CPUExecutionProvider"])
    feeds = random_feeds(sess, h, w, graph=graph)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    sess.run(None, feeds)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"graph": graph, "base_mib": base, "peak_mib": peak, "run_mib": peak - base,
            "bytes_per_px": (peak - base) * 2**20 / (h * w), "seconds": dt}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1920x1080", help="WxH; padded up to a multiple of 64 like the plugin")
    ap.add_argument("--models", type=Path, default=ROOT / "vsvitm" / "models")
    ap.add_argument("--graphs", default=",".join(GRAPHS))
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    w, h = (int(v) for v in a.size.lower().split("x"))
    hp, wp = -(-h // 64) * 64, -(-w // 64) * 64
    if a.one:
        print(json.dumps(one(a.one, a.models, hp, wp)))
        return 0
    print(f"| graph | RSS with inputs (MiB) | peak (MiB) | the run adds (MiB) | bytes/px | s |\n|---|---:|---:|---:|---:|---:|")
    for g in a.graphs.split(","):
        if not (a.models / f"{g}.onnx").exists():
            continue
        r = subprocess.run([sys.executable, __file__, "--size", a.size, "--models", str(a.models), "--one", g],
                           capture_output=True, text=True)
        if r.returncode:
            print(f"| {g} | failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode} |||||")
            continue
        d = json.loads(r.stdout)
        print(f"| {g} ({wp}×{hp}) | {d['base_mib']:.0f} | {d['peak_mib']:.0f} | {d['run_mib']:.0f} | "
              f"{d['bytes_per_px']:.0f} | {d['seconds']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
