"""Int8 variants of the CPU graphs whose convolutions dominate (ONNX Runtime static quantization;
vsvitm-quantize).

    vsvitm-quantize [--models vsvitm/models] [--data data/valset] [--frames 48] [--samples 6]
                    [--graphs icam_ref_d,fcpm_merge_mix]

Renders the first --frames frames of every sequence in --data (the validation renders of *training*
sources by default: never the development set) through vsvitm.ITM on the CPU with the fp32 graphs,
records the real inputs of each graph, calibrates (min/max) on up to --samples of them, and writes
`<graph>_int8.onnx` next to the fp32 graph: QDQ form, convolutions only, weights int8 per output
channel, activations uint8 per tensor. ONNX Runtime fuses each QuantizeLinear -> Conv -> Dequantize
into an integer convolution (VNNI/AMX on x86). Then it checks every int8 graph against its fp32
graph on held-out inputs (largest and mean absolute difference, time of one call on one thread).

Why only these graphs (BENCHMARKS.md): the reference step's last part (icam_ref_d: the
deformable fusion's and the U-Net's convolutions) ran 1.6x faster in int8; icam_ref_c predicts the
deformable offsets, and int8 moved them by 0.5 px on average, so it stays fp32; FCPM's recurrent
and fuse graphs are 16-channel full-resolution convolutions, which int8 made slower (the
quantize/dequantize of their inputs costs more than it saves).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ..checkout import MODELS, REPO

DEFAULT_GRAPHS = ("icam_ref_d", "fcpm_merge_mix")


def default_data() -> Path:
    """The calibration data: data/valset, else the shared valset, else samples/."""
    for p in (REPO / "data" / "valset", REPO.parent / "shared" / "data" / "valset"):
        if p.is_dir():
            return p
    return REPO / "samples"


def sequences(data: Path, frames: int):
    """(name, uint8 LDR [T,H,W,3]) for each .npz (vsvitm-make-devset's format) or video in `data`.

    data: the folder.
    frames: the first N frames of each.
    """
    from ..evaluation.sequences import load_sequence, load_video
    files = sorted(p for p in data.iterdir() if p.suffix in (".npz", ".mp4", ".mkv", ".mov", ".y4m"))
    if not files:
        raise SystemExit(f"quantize: no .npz sequences or videos in {data}")
    for p in files:
        ldr = load_sequence(p, frames)["ldr"] if p.suffix == ".npz" else load_video(p, frames)[0]
        yield p.stem, ldr


def capture(models: Path, data: Path, frames: int, graphs: tuple[str, ...], per_seq: int) -> dict[str, list[list[dict]]]:
    """Real inputs of each graph while ITM renders each sequence: {graph: [inputs of one sequence, ...]},
    up to per_seq calls per sequence, spread evenly over the render's calls.

    models: the model folder (fp32 graphs).
    data: the calibration sequences' folder.
    frames: frames rendered per sequence.
    graphs: the graphs whose inputs to capture.
    per_seq: inputs kept per graph and sequence.
    """
    import vapoursynth as vs

    import vsvitm
    from vsvitm.vsnp import clip_from_array

    from ..evaluation.hooks import graph_inputs

    out: dict[str, list[list[dict]]] = {g: [] for g in graphs}
    core = vs.core
    threads = core.num_threads
    core.num_threads = 1  # frames one at a time: the same calls in the same order on every run (reproducible)
    try:
        with graph_inputs(graphs) as got:  # every CPU run of these graphs, with its inputs
            for name, ldr in sequences(data, frames):
                clip = vsvitm.ITM(clip_from_array(ldr), mode="full", models=str(models),
                                  backend=vsvitm.Backend.ORT_CPU(int8=False))
                for n in range(len(ldr)):
                    clip.get_frame(n)
                for g in graphs:  # per_seq of the calls, spread over the render
                    pick = np.unique(np.linspace(0, len(got[g]) - 1, per_seq).round().astype(int)) if got[g] else []
                    out[g].append([got[g][i] for i in pick])
                    got[g] = []
                print(f"  {name}: {', '.join(f'{g} {len(out[g][-1])}' for g in graphs)} inputs", flush=True)
                del clip
    finally:
        core.num_threads = threads
    return out


def quantize(src: Path, dst: Path, samples: list[dict]) -> None:
    """Write the int8 (QDQ, convolutions only) variant of a graph, calibrated (min/max) on these inputs.

    src: the fp32 graph.
    dst: the int8 graph to write.
    samples: calibration inputs (feeds).
    """
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(samples)

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:  # ORT's quantizer writes its helper models into cwd otherwise
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
                            calibrate_method=CalibrationMethod.MinMax)
        finally:
            os.chdir(cwd)
    import onnx
    m = onnx.load(str(dst))  # which fp32 graph this was made from: the engine refuses it for another
    onnx.helper.set_model_props(m, {**{p.key: p.value for p in m.metadata_props}, **int8_source_props(src)})
    onnx.save(m, str(dst))


def int8_source_props(src: Path) -> dict[str, str]:
    """The metadata that ties an int8 graph to the fp32 graph it was made from (the engine checks it).

    src: the fp32 graph.
    """
    from vsvitm.engine import INT8_SOURCE_KEY, file_sha256
    return {INT8_SOURCE_KEY: file_sha256(src)}


def compare(fp32: Path, int8: Path, feeds: list[dict]) -> str:
    """How far the int8 graph's outputs are from the fp32 graph's, and the time of one call of each.

    fp32: the fp32 graph.
    int8: its int8 variant.
    feeds: held-out inputs.
    """
    import onnxruntime as ort

    def sess(p):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads, so.enable_cpu_mem_arena = 1, 1, False
        return ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
    a, b = sess(fp32), sess(int8)
    a.run(None, feeds[0]), b.run(None, feeds[0])  # untimed: first runs allocate
    worst, mean, scale, ta, tb = 0.0, [], [], [], []
    for f in feeds:
        t = time.perf_counter()
        oa = a.run(None, f)
        ta.append(time.perf_counter() - t)
        t = time.perf_counter()
        ob = b.run(None, f)
        tb.append(time.perf_counter() - t)
        for x, y in zip(oa, ob):
            d = np.abs(x.astype(np.float64) - y)
            worst = max(worst, float(d.max()))
            mean.append(float(d.mean()))
            scale.append(float(np.abs(x).mean()))
    return (f"max |diff| {worst:.3g}, mean |diff| {np.mean(mean):.3g} (mean |output| {np.mean(scale):.3g}); "
            f"one call {1000 * np.median(ta):.1f} ms fp32, {1000 * np.median(tb):.1f} ms int8 (one thread)")


def main(argv=None):
    """Entry point of vsvitm-quantize.

    argv: command-line arguments (None: sys.argv[1:]).
    """
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=str(MODELS), help="model folder (fp32 graphs in, int8 out)")
    ap.add_argument("--data", default=None, help="calibration sequences (default: data/valset, else samples/)")
    ap.add_argument("--frames", type=int, default=48, help="frames rendered per sequence (default 48)")
    ap.add_argument("--samples", type=int, default=6, help="calibration inputs per graph and sequence (default 6)")
    ap.add_argument("--graphs", default=",".join(DEFAULT_GRAPHS), help=f"default {','.join(DEFAULT_GRAPHS)}")
    a = ap.parse_args(argv)
    models = Path(a.models)
    graphs = tuple(g for g in a.graphs.split(",") if g)
    missing = [g for g in graphs if not (models / f"{g}.onnx").exists()]
    if missing:
        raise SystemExit(f"quantize: {models} has no {', '.join(missing)} graph(s); export them first")
    data = Path(a.data) if a.data else default_data()
    print(f"capturing graph inputs from {data} ({a.frames} frames a sequence)", flush=True)
    got = capture(models, data, a.frames, graphs, a.samples + 1)
    for g in graphs:
        # the last input of each sequence is held out: checked against fp32, not calibrated on
        held = [seq[-1] for seq in got[g] if len(seq) > 1]
        calib = [f for seq in got[g] for f in (seq[:-1] if len(seq) > 1 else seq)]
        if not calib:
            raise SystemExit(f"quantize: {g} never ran on {data}; nothing to calibrate on")
        dst = models / f"{g}_int8.onnx"
        quantize(models / f"{g}.onnx", dst, calib)
        from vsvitm.engine.models import list_variant
        list_variant(models, g, "int8")  # the manifest lists it: the engine runs it
        print(f"{dst.name}: {dst.stat().st_size / 1e6:.2f} MB, calibrated on {len(calib)} inputs; "
              f"{compare(models / f'{g}.onnx', dst, held or calib[-1:])}", flush=True)


if __name__ == "__main__":
    main()
