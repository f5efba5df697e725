"""CUDA execution provider (skipped without a usable CUDA GPU; CI runs `-m "not gpu"`).

Run on a GPU machine: python -m pytest -q -m gpu tests/test_gpu.py
"""
import numpy as np
import pytest

import vsvitm
from vsvitm import backends
from vsvitm.vsnp import clip_from_array, clip_to_array

from conftest import moving_clip

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not backends.cuda_available(), reason="no usable CUDA execution provider")]


@pytest.mark.parametrize("fp16", [False, True])
def test_cuda_matches_cpu(fp16):
    """The shipped models through the plugin on CUDA (ICAM's state kept on the GPU by IO binding)
    give the CPU's result: within 1e-3 relative in fp32, 2 % in fp16 (log domain, where it matters)."""
    from vsvitm.engine import Engine
    be = vsvitm.Backend.ORT_CUDA(fp16=fp16)
    eng = Engine(None, be, need_fcpm=True, transfer="gamma2.2", threshold=0.95, exposure_norm=True,
                 cache_bytes=1 << 26)
    assert eng.bind_device == "cuda" and eng.runner.device == "cuda"  # IO binding: engine.runner.DeviceRunner
    assert eng.band_pixels > 1 << 40  # no bands on a GPU: each band height would be a new cuDNN search
    # the CPU's OpenCV-warp forms (state warps, split merge, split reference step) stay off on CUDA
    assert not (eng.prewarp or eng.split_merge or eng.split_ref)
    src = clip_from_array(moving_clip(30, h=96, w=128))
    cpu = clip_to_array(vsvitm.ITM(src, backend=vsvitm.Backend.ORT_CPU()), 0, 12)
    gpu = clip_to_array(vsvitm.ITM(src, backend=be), 0, 12)
    assert np.isfinite(gpu).all()
    tol = 0.02 if fp16 else 1e-3
    np.testing.assert_allclose(np.log(gpu + 1e-3), np.log(cpu + 1e-3), atol=tol)
