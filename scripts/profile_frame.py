#!/usr/bin/env python3
"""Where the time of one output frame goes: each part of the engine timed alone at one frame size.

    python scripts/profile_frame.py [--size 512x512] [--models DIR | --random-models] [--backend cpu]
                                    [--repeat 3] [--ort-profile] [--synthetic]

Times (median of --repeat runs after one untimed run, one call at a time, no VapourSynth parallelism):
  VapourSynth source decode+resize and the conversion to RGBS code values (to_display_rgb),
  frame <-> numpy copies, the network input (f^-1, mask, padding), the DIS pre-flow (exposure ratio,
  DIS, warp), every ONNX graph (icam_init, icam_ref, icam_decode, fcpm_merge, fcpm_back, fcpm_fwd,
  fcpm_fuse) on real inputs chained as the engine chains them, the output clean-up and the blend (eq. 1).
Then multiplies each by how often the schedule calls it per output frame in steady state (a key frame
every --key-stride frames with up to 2 x --num-refs references; FCPM chunks of --chunk frames run
over --margin extra frames each side) and prints the breakdown for mode="full" and mode="icam".
--ort-profile adds ONNX Runtime's per-operator profile of every graph (share of kernel time by op type).
The call counts are a model: scripts/benchmark.py measures the real ones inside VapourSynth.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark as bm  # noqa: E402  (scripts/benchmark.py: sources, model resolution)

ROOT = bm.ROOT
sys.path.insert(0, str(ROOT))


def timed(fn, repeat: int) -> tuple[float, object]:
    """(median ms, last result) of fn() over `repeat` runs after one untimed run."""
    out = fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return 1000 * statistics.median(ts), out


def schedule_factors(a) -> dict:
    """Calls per output frame in steady state (a long shot, far from its ends), from vsvitm.schedule."""
    from vsvitm.schedule import Schedule
    n = 100_000
    s = Schedule(n, a.key_stride, a.ref_stride, a.num_refs, fcpm_keys=a.fcpm_keys, chunk=a.chunk, margin=a.margin)
    mid = n // 2
    k = next(t for t in range(mid, mid + a.key_stride) if s.is_key(t, []))
    refs = len(s.references(k, []))
    c0, c1, r0, r1 = s.chunk_of(mid, [])
    core, run = c1 - c0, r1 - r0
    keys_per = 1 / a.key_stride
    span = range(mid, mid + a.key_stride * a.chunk)
    self_key = sum(t in s.nearest_keys(t, []) for t in span) / len(span)  # merge uses a zero flow for t itself
    m = a.merge_per_frame
    return {
        "refs": refs, "run_over_core": run / core, "keys_per_frame": keys_per, "merges": m,
        "full": {
            "vs_convert": 1.0,
            "to_numpy": keys_per * (1 + refs) + m * (1 + 2 * a.fcpm_keys) + 2 * run / core + 1,
            "net_input": keys_per * (1 + refs) + m * (1 + a.fcpm_keys) + run / core,
            "preflow": keys_per * refs + m * (a.fcpm_keys - self_key) + 2 * (run - 1) / core,
            "luma": 1.0,
            "icam_init": keys_per, "icam_ref": keys_per * refs, "icam_decode": keys_per,
            "fcpm_merge": m, "fcpm_back": run / core, "fcpm_fwd": run / core, "fcpm_fuse": 1.0,
            "state_warp": 2 * (run - 1) / core,
            "finite": keys_per + 1.0, "blend": 1.0, "from_numpy": keys_per + m + 1.0,
        },
        "icam": {
            "vs_convert": 1.0, "to_numpy": 1 + refs + 2, "net_input": 1 + refs, "preflow": refs, "luma": 1.0,
            "icam_init": 1.0, "icam_ref": refs, "icam_decode": 1.0, "finite": 1.0, "blend": 1.0, "from_numpy": 2.0,
        },
    }


LABELS = {
    "vs_convert": "VapourSynth: source -> RGBS code values (to_display_rgb)",
    "to_numpy": "frame -> numpy copy (frame_to_array)",
    "net_input": "network input: f^-1, mask, pad (engine.input)",
    "preflow": "pre-flow of a pair from reduced luma: exposure ratio + DIS + flow upsampling (align_reduced)",
    "luma": "a frame's f^-1 + luma at DIS size (once per frame: Engine._luma)",
    "icam_init": "ONNX icam_init", "icam_decode": "ONNX icam_decode",
    "icam_ref": "reference step (ONNX icam_ref, or on the CPU icam_ref_a..d + OpenCV warps)",
    "fcpm_merge": "merge (ONNX fcpm_merge, or on the CPU OpenCV pooling/warps + fcpm_merge_correct + OpenCV warps + fcpm_merge_mix)",
    "fcpm_back": "ONNX fcpm_back", "fcpm_fwd": "ONNX fcpm_fwd",
    "fcpm_fuse": "ONNX fcpm_fuse", "state_warp": "FCPM state warp, OpenCV (flow.warp_planes; CPU step graphs)",
    "finite": "output clean-up: crop, NaN/Inf, clip (engine.finite)", "blend": "blend, eq. 1 (engine.blend)",
    "from_numpy": "numpy -> frame copy (array_to_frame)",
}


def ort_profile(path: Path, backend, feeds: dict, repeat: int) -> dict[str, float]:
    """Per-op-type share (%) of kernel time of one graph, from ONNX Runtime's profiler."""
    import onnxruntime as ort
    from vsvitm import backends
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.enable_profiling = True
    tmp = tempfile.mkdtemp(prefix="vsvitm_ortprof_")
    so.profile_file_prefix = os.path.join(tmp, path.stem)
    if backend.name == "cpu":
        so.intra_op_num_threads = backend.num_threads or backends.default_cpu_threads()
        so.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
    else:
        providers = [("CUDAExecutionProvider", {"device_id": backend.device_id}), "CPUExecutionProvider"]
    s = ort.InferenceSession(str(path), so, providers=providers)
    for _ in range(repeat + 1):
        s.run(None, feeds)
    events = json.loads(Path(s.end_profiling()).read_text())
    by_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + float(e.get("dur", 0))
    total = sum(by_op.values()) or 1.0
    return {k: 100 * v / total for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="512x512", help="WIDTHxHEIGHT (default 512x512)")
    ap.add_argument("--models", help="model folder (default vsvitm/models); with --random-models: where to export them")
    ap.add_argument("--arch", help='with --random-models: other widths, JSON {"icam": {ICAMConfig fields}, '
                                    '"fcpm": {FCPMConfig fields}}, e.g. \'{"icam": {"c1": 16}}\' (timings of untrained sizes)')
    ap.add_argument("--random-models", action="store_true", help="random-weight graphs of the default architecture (or of --arch)")
    ap.add_argument("--backend", default="cpu", choices=["cpu", "cuda", "cuda-fp16"])
    ap.add_argument("--ort-threads", type=int, default=0,
                    help="ORT intra-op threads on the CPU (default: all cores, as one frame is timed at a time; "
                         "note the plugin gives each session cores / VapourSynth threads)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per part, median reported (default 3)")
    ap.add_argument("--frame", type=int, default=120, help="the (key) frame profiled (default 120)")
    ap.add_argument("--src", default=str(bm.SAMPLE))
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--ort-profile", action="store_true", help="also print ONNX Runtime's per-operator profile")
    ap.add_argument("--key-stride", type=int, default=6)
    ap.add_argument("--ref-stride", type=int, default=15)
    ap.add_argument("--num-refs", type=int, help="references each way (default: ITM's, itm.NUM_REFS)")
    ap.add_argument("--fcpm-keys", type=int, default=None, help="default: the FCPM model's (5)")
    ap.add_argument("--chunk", type=int, help="default: ITM's at --size (24 below 1 MP, 12 from 1 MP on)")
    ap.add_argument("--margin", type=int, help="default: ITM's at --size (3 below 1 MP, 6 from 1 MP on)")
    ap.add_argument("--merge-per-frame", type=float, default=1.0,
                    help="fcpm_merge calls per output frame (default 1: VapourSynth's cache keeps merged frames "
                         "that two chunks share; 'run/core' = 2 if it does not)")
    ap.add_argument("--json", metavar="FILE", help="write the numbers as JSON")
    a = ap.parse_args(argv)
    (w, h), = bm.parse_sizes(a.size)
    from vsvitm.itm import NUM_REFS, chunk_and_margin
    a.chunk, a.margin = chunk_and_margin(w, h, a.chunk, a.margin)
    a.num_refs = NUM_REFS["full"] if a.num_refs is None else a.num_refs

    import numpy as np
    import vapoursynth as vs
    from vsvitm import backends
    from vsvitm.backends import Backend
    from vsvitm.colour import to_display_rgb
    from vsvitm.curves import to_linear
    from vsvitm.engine import Engine
    from vsvitm.flow import align_reduced, luma, warp_planes
    from vsvitm.vsnp import array_to_frame, frame_to_array

    a.frames, a.start, a.warmup, a.modes = 1, a.frame, 0, None
    models, model_desc, tmp = bm.resolve_models(a, need_fcpm=False, need_fp16=a.backend == "cuda-fp16")
    has_fcpm = (models / "fcpm.json").exists()
    if a.backend == "cpu":
        backend = Backend.ORT_CPU(num_threads=a.ort_threads or os.cpu_count() or 1)
    else:
        if not backends.cuda_available():
            sys.exit("profile_frame: no usable CUDA provider; use --backend cpu")
        backend = Backend.ORT_CUDA(fp16=a.backend == "cuda-fp16")
    core = vs.core
    eng = Engine(models, backend, need_fcpm=has_fcpm, transfer="gamma2.2", threshold=0.95, exposure_norm=True,
                 cache_bytes=1 << 30)
    if a.fcpm_keys is None:
        a.fcpm_keys = eng.fcpm_keys if has_fcpm else 5
    fac = schedule_factors(a)
    R = a.repeat
    ms: dict[str, float] = {}

    # --- VapourSynth side: distinct frames each time (no cache hits) ---
    k = a.frame
    src = bm.source_clip(core, {"size": [w, h], "synthetic": a.synthetic, "src": a.src,
                                "start": k + 2 * a.num_refs * a.ref_stride, "frames": 4 * R + 8})
    rgb = to_display_rgb(src)
    base = k + 20

    def vs_time(clip, first):
        ts = []
        for i in range(R + 1):
            t = time.perf_counter()
            clip.get_frame(first + i)
            ts.append(time.perf_counter() - t)
        return 1000 * statistics.median(ts[1:])
    ms_src = vs_time(src, base)
    ms_rgb = vs_time(rgb, base + R + 2)
    ms["vs_convert"] = max(0.0, ms_rgb - ms_src)
    fr = rgb.get_frame(k)
    ms["to_numpy"], code_k = timed(lambda: frame_to_array(fr), R)
    refs = [r for i in range(1, a.num_refs + 1) for r in (k - a.ref_stride * i, k + a.ref_stride * i) if r >= 0]
    code = {n: frame_to_array(rgb.get_frame(n)) for n in sorted({k, k + 1, refs[0]} | set(refs[: a.fcpm_keys]))}
    ms["net_input"], key_in = timed(lambda: eng.input(code_k), R)
    flow_fn = eng.flow_fn
    lin_k, lin_r = to_linear(code_k, "gamma2.2"), to_linear(code[refs[0]], "gamma2.2")
    ms["luma"], sk = timed(lambda: flow_fn.reduce(luma(to_linear(code_k, "gamma2.2"))), R)
    sr = flow_fn.reduce(luma(lin_r))
    ms["preflow"], (flow, e) = timed(lambda: align_reduced(sk, sr, code_k.shape[:2], flow_fn, True), R)
    yk, yr = luma(lin_k) ** (1 / 2.2), luma(lin_r) ** (1 / 2.2)
    ms_dis, _ = timed(lambda: flow_fn(np.clip(yk, 0, 1), np.clip(yr, 0, 1)), R)

    # --- ONNX graphs, chained like the engine chains them ---
    feeds: dict[str, dict] = {}

    def graph(name, f, key=None):
        feeds[name] = (f, key or name)
        t, out = timed(lambda: eng._run(name, f), R)
        ms[key or name] = t
        return out
    fl, g = graph("icam_init", {"key": key_in})
    ref_in = eng.input(code[refs[0]], e)
    rf = {"fl": fl, "g": g, "ref": ref_in, "preflow": eng._pad_flow(flow)}
    if eng.splits_ref(key_in):
        # the engine's CPU path: icam_ref_a..d with OpenCV warps between (--ort-profile shows the parts)
        ms["icam_ref"], (fl2, g2) = timed(lambda: eng._ref_split(rf), R)
        run = eng._run
        eng._run = lambda name, f: feeds.__setitem__(name, (f, name)) or run(name, f)  # each part's real inputs
        eng._ref_split(rf)
        eng._run = run
    else:
        fl2, g2, _ = graph("icam_ref", rf)
    y, *ev = graph("icam_decode", {"key": key_in, "fl": fl2, "g": g2})
    ms["finite"], y_k = timed(lambda: eng.finite(y[0, :, :h, :w].transpose(1, 2, 0)), R)
    if has_fcpm:
        kn = eng.fcpm_keys
        ins = np.concatenate([eng.input(code[refs[j % len(refs)]], e) for j in range(kn)], 1)
        ys = np.concatenate([eng._pad(y_k.transpose(2, 0, 1))[None]] * kn, 1)
        pfs = np.concatenate([eng._pad_flow(flow)] * kn, 1)
        mf = {"cur": key_in, "keys": ins, "ys": ys, "preflows": pfs, "valid": np.ones((1, kn, 1, 1), np.float32)}
        if eng.merge_evidence:  # a merge with the evidence gate (the ICAM result's evidence, or none)
            mf["evidence"] = np.concatenate([ev[0] if ev else np.zeros_like(ys[:, :1])] * kn, 1)
        if eng.split_merge:  # the engine's CPU path: corrected flows, OpenCV warps, masks and mix
            # (a copy of the pre-flows each time: the corrected flows are written into that array)
            def held():
                return [mf["keys"], mf["ys"], mf["preflows"].copy(), mf.get("evidence")]
            ms["fcpm_merge"], x = timed(lambda: eng._merge_split(key_in, mf["valid"], held()), R)
            run = eng._run
            eng._run = lambda name, f: feeds.__setitem__(name, (f, name)) or run(name, f)  # the parts' real inputs
            eng._merge_split(key_in, mf["valid"], held())
            eng._run = run
        else:
            x = graph("fcpm_merge", mf)[0]
        hp, wp = x.shape[-2:]
        h0 = np.zeros((1, eng.hidden, hp, wp), np.float32)
        pf = eng._pad_flow(flow)
        if eng.prewarp:  # the engine's CPU path: the state warped by OpenCV, the step graphs without the warp
            hb = graph("fcpm_back_cpu", {"x": x, "cur": key_in, "xn": x, "hw": h0}, "fcpm_back")[0]
            ms["state_warp"], hw = timed(lambda: warp_planes(hb, pf, np.float32), R)
            hf = graph("fcpm_fwd_cpu", {"x": x, "cur": key_in, "xn": x, "hw": hw}, "fcpm_fwd")[0]
        else:
            hb = graph("fcpm_back", {"x": x, "cur": key_in, "xn": x, "h": h0, "flow": pf})[0]
            hf = graph("fcpm_fwd", {"x": x, "cur": key_in, "xn": x, "h": hb, "flow": pf})[0]
        graph("fcpm_fuse", {"hf": hf, "hb": hb, "x": x, "cur": key_in})
    ms["blend"], out = timed(lambda: eng.blend(code_k, y_k), R)
    dst = fr.copy()
    ms["from_numpy"], _ = timed(lambda: array_to_frame(out, dst), R)

    # --- report ---
    print(f"# vsvitm per-frame profile, {w}x{h}, backend {a.backend}"
          + (f" ({backend.num_threads} ORT threads)" if a.backend == "cpu" else ""))
    print(f"models: {model_desc}")
    print(f"source: {'synthetic' if a.synthetic else Path(a.src).name} resized to {w}x{h} "
          f"(VapourSynth source decode+resize alone: {ms_src:.1f} ms/frame, not counted below); "
          f"median of {R} runs; DIS alone (inside the pre-flow): {ms_dis:.1f} ms")
    print(f"schedule: key frame every {a.key_stride} frames with {fac['refs']} references; FCPM chunk {a.chunk} "
          f"+ margin {a.margin} each side = {fac['run_over_core']:.2f}x frames through fcpm_back/fwd; "
          f"fcpm_merge {fac['merges']:.2f}x per frame; {a.fcpm_keys} keys merged into each frame")
    print("(pre-flows: assumes no reuse between chunks or between ICAM and FCPM: an upper bound)\n")
    result = {"size": [w, h], "backend": a.backend, "ms_per_call": ms, "factors": fac, "modes": {}}
    for mode in (["full"] if has_fcpm else []) + ["icam"]:
        f = fac[mode]
        rows = [(p, ms[p], f[p], ms[p] * f[p]) for p in LABELS if p in f and p in ms]
        total = sum(r[3] for r in rows)
        result["modes"][mode] = {"total_ms": total, "rows": {p: {"calls": c, "ms": t} for p, _, c, t in rows}}
        print(f"## mode={mode!r}: {total:.0f} ms per output frame (estimate, one call at a time)")
        print(f"| part | ms per call | calls per output frame | ms per output frame | share |")
        print("|---|---:|---:|---:|---:|")
        for p, m1, c, t in sorted(rows, key=lambda r: -r[3]):
            print(f"| {LABELS[p]} | {m1:.1f} | {c:.2f} | {t:.1f} | {100 * t / total:.1f} % |")
        groups = {"ONNX ICAM": [p for p in f if p.startswith("icam")], "ONNX FCPM": [p for p in f if p.startswith("fcpm")],
                  "pre-flow": ["preflow", "luma"]}
        other = total - sum(ms[p] * f[p] for ps in groups.values() for p in ps if p in ms)
        print("| **groups** | | | " + ", ".join(
            f"{g_}: {sum(ms[p] * f[p] for p in ps if p in ms):.0f} ms" for g_, ps in groups.items() if ps)
              + f", other numpy/VapourSynth: {other:.0f} ms | |\n")
    print(f"{bm.PAPER_ANCHOR}")
    if not has_fcpm:
        print(f"(no fcpm.json in {models}: FCPM graphs not profiled)")

    if a.ort_profile:
        result["ort_profile"] = {}
        print("\n## ONNX Runtime per-operator profile (share of kernel time)")
        for name, (f, key) in feeds.items():
            path = models / f"{name}{'_fp16' if getattr(backend, 'fp16', False) else ''}.onnx"
            prof = ort_profile(path, backend, f, R)
            result["ort_profile"][name] = prof
            top = ", ".join(f"{op} {pct:.0f} %" for op, pct in list(prof.items())[:6] if pct >= 0.5)
            part = "the merge" if name.startswith("fcpm_merge") else "the reference step"
            print(f"- {name} ({f'{ms[key]:.1f} ms' if key in ms else 'part of ' + part}): {top}")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
