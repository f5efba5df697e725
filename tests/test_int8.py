"""Int8 CPU graphs: scripts/quantize_models.py, Backend.ORT_CPU(int8=...), the shipped int8 graphs."""
import shutil
import sys

import numpy as np
import pytest

import vsvitm
from vsvitm import backends
from vsvitm.engine import MODEL_DIR, Engine
from vsvitm.vsnp import clip_from_array, frame_to_array

from conftest import ROOT, moving_clip

INT8_GRAPHS = ["icam_ref_d", "fcpm_merge_mix"]


def _engine(models, int8):
    return Engine(models, vsvitm.Backend.ORT_CPU(int8=int8), need_fcpm=True, transfer="srgb", threshold=0.95,
                  exposure_norm=True, cache_bytes=64 << 20)


def _render(models, int8, frames, n=None):
    out = vsvitm.ITM(clip_from_array(frames), models=str(models), backend=vsvitm.Backend.ORT_CPU(int8=int8))
    return np.stack([frame_to_array(out.get_frame(i)) for i in range(n or len(frames))])


def test_use_int8_follows_the_backend(monkeypatch):
    B = vsvitm.Backend
    monkeypatch.setattr(backends, "cpu_has_int8_dot", lambda: True)
    assert backends.use_int8(B.ORT_CPU(int8=True)) and not backends.use_int8(B.ORT_CPU())  # default off
    assert backends.use_int8(B.ORT_CPU(int8=None))
    assert not backends.use_int8(B.ORT_CPU(int8=True, fp16=True))  # fp16 graphs have no int8 variant
    assert not backends.use_int8(B.ORT_CUDA())
    monkeypatch.setattr(backends, "cpu_has_int8_dot", lambda: False)
    assert not backends.use_int8(B.ORT_CPU(int8=None)) and backends.use_int8(B.ORT_CPU(int8=True))


def test_quantize_models_script(tiny_models, tmp_path):
    """The script calibrates on real graph inputs and writes int8 graphs the engine then runs; the
    render stays close to the fp32 one (random tiny weights, so only loosely)."""
    pytest.importorskip("onnxruntime.quantization")
    sys.path.insert(0, str(ROOT / "scripts"))
    import quantize_models
    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    data = tmp_path / "data"
    data.mkdir()
    ldr = moving_clip(24, seed=3)
    np.savez(data / "calib.npz", ldr=ldr, hdr=np.zeros(ldr.shape, np.float16))
    quantize_models.main(["--models", str(models), "--data", str(data), "--frames", "24", "--samples", "3"])
    import onnx
    for g in INT8_GRAPHS:
        m = onnx.load(str(models / f"{g}_int8.onnx"))
        ops = {n.op_type for n in m.graph.node}
        assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops, (g, ops)
        assert any(t.data_type == onnx.TensorProto.INT8 for t in m.graph.initializer), g  # int8 weights
    assert sorted(_engine(models, True).int8_graphs) == sorted(INT8_GRAPHS)
    assert _engine(models, False).int8_graphs == []
    frames = moving_clip(12, seed=5)
    a, b = _render(models, False, frames), _render(models, True, frames)
    assert np.isfinite(b).all()
    assert np.abs(a - b).mean() < 0.05 * np.abs(a).mean()
    # the fp32 graph changes (re-exported): its old int8 variant is refused, not run with other weights
    m = onnx.load(str(models / "fcpm_merge_mix.onnx"))
    m.doc_string = "re-exported"
    onnx.save(m, str(models / "fcpm_merge_mix.onnx"))
    with pytest.raises(ValueError, match="fcpm_merge_mix_int8.onnx was not made from this"):
        _engine(models, True)
    assert _engine(models, False).int8_graphs == []


def test_shipped_int8_graphs_match_fp32():
    """The shipped int8 graphs load with int8=True, and a render with them stays within 1 % of the fp32
    render in mean (2 % in the clipped region's mean); the devset numbers are in BENCHMARKS.md."""
    assert sorted(_engine(MODEL_DIR, True).int8_graphs) == sorted(INT8_GRAPHS)
    frames = moving_clip(14, h=64, w=96, seed=1)
    a, b = _render(MODEL_DIR, False, frames, 8), _render(MODEL_DIR, True, frames, 8)
    assert np.isfinite(b).all()
    assert np.abs(a - b).mean() < 0.01 * np.abs(a).mean()
    clipped = frames[:8].max(-1) >= 250
    assert clipped.any()
    assert abs(a[clipped].mean() - b[clipped].mean()) < 0.02 * a[clipped].mean()
