"""vsvitm-quantize (vsvitm.training.quantize): int8 variants calibrated on the graphs' real inputs."""
import shutil

import numpy as np
import pytest

from conftest import moving_clip
from test_int8 import INT8_GRAPHS, _engine, _render
from vsvitm.training import quantize


def test_quantize_writes_int8_graphs_the_engine_runs(tiny_models, tmp_path):
    """vsvitm-quantize calibrates on real graph inputs and writes int8 graphs the engine then runs; the
    render stays close to the fp32 one (random tiny weights, so only loosely)."""
    pytest.importorskip("onnxruntime.quantization")
    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    data = tmp_path / "data"
    data.mkdir()
    ldr = moving_clip(24, seed=3)
    np.savez(data / "calib.npz", ldr=ldr, hdr=np.zeros(ldr.shape, np.float16))
    quantize.main(["--models", str(models), "--data", str(data), "--frames", "24", "--samples", "3"])
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
