"""Int8 CPU graphs: Backend.ORT_CPU(int8=...), the shipped int8 graphs (vsvitm-quantize makes them:
test_quantize.py)."""
import numpy as np

import vsvitm
from vsvitm import backends
from vsvitm.engine import MODEL_DIR, Engine
from vsvitm.vsnp import clip_from_array, frame_to_array

from conftest import moving_clip

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
