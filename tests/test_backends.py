"""vsvitm.backends: Backend choice, shared sessions, IO binding helpers, device errors (CPU)."""
import numpy as np
import pytest

import vsvitm
from vsvitm import backends
from vsvitm.vsnp import clip_from_array, frame_to_array

from conftest import moving_clip


@pytest.fixture(scope="module")
def rgb8():
    return clip_from_array(moving_clip(8))


def test_cuda_backend_without_gpu(rgb8, tiny_models, capfd):
    if backends.cuda_available():
        pytest.skip("a usable CUDA provider is present")
    capfd.readouterr()
    with pytest.raises(RuntimeError, match="CUDA provider"):
        vsvitm.ITM(rgb8, models=tiny_models, backend=vsvitm.Backend.ORT_CUDA())
    out = vsvitm.ITM(rgb8, models=tiny_models, backend=vsvitm.Backend.ORT_CUDA(fallback_cpu=True))
    # the fallback is decided before ONNX Runtime tries CUDA: no burst of its red error lines
    assert "onnxruntime" not in capfd.readouterr().err
    ref = vsvitm.ITM(rgb8, models=tiny_models, backend=vsvitm.Backend.ORT_CPU())
    for n in (0, 5):
        got = frame_to_array(out.get_frame(n))
        assert np.isfinite(got).all() and got.shape == (rgb8.height, rgb8.width, 3)
        np.testing.assert_allclose(got, frame_to_array(ref.get_frame(n)), rtol=1e-5, atol=1e-5)


def test_session_follows_a_reexported_file(tmp_path, tiny_models):
    """A model file replaced in place (re-exported, script reloaded in the same process) gets a new
    session instead of the cached one of its old contents."""
    import shutil
    import onnx
    from vsvitm import backends
    p = tmp_path / "icam_decode.onnx"
    shutil.copy(tiny_models / "icam_decode.onnx", p)
    be = backends.resolve(None)
    first = backends.session(p, be)
    assert backends.session(p, be) is first
    m = onnx.load(str(p))
    del m.graph.output[1:]
    onnx.save(m, str(p))
    second = backends.session(p, be)
    assert second is not first and len(second.get_outputs()) == 1
    assert sum(k[0] == str(p) for k in backends._sessions) == 1


def test_round_half_matches_numpy():
    """backends.round_half rounds as numpy's astype(float16) does (the CPU path's held states)."""
    from vsvitm import backends
    x = np.random.default_rng(0).normal(0, 30, (1, 4, 9, 11)).astype(np.float32)
    x[0, 0, 0, :3] = [70000.0, 1e-8, -65519.0]
    got = backends.round_half(backends.to_device(x, "cpu"), vsvitm.Backend.ORT_CPU()).numpy()
    with np.errstate(over="ignore"):  # 70000 is past the largest half: inf, in both
        np.testing.assert_array_equal(got, x.astype(np.float16).astype(np.float32))


def test_device_out_of_memory_is_said(monkeypatch):
    """Sending a frame to a full GPU (backends.to_device, run_bound's inputs) says so, as a graph run does,
    instead of ONNX Runtime's bare allocation error; other errors pass through."""
    from vsvitm import backends

    class FakeOrt:
        class OrtValue:
            @staticmethod
            def ortvalue_from_numpy(a, device, device_id):
                raise RuntimeError(FakeOrt.msg)
    monkeypatch.setattr(backends, "_ort", lambda: FakeOrt)
    FakeOrt.msg = "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer of size 133"
    with pytest.raises(RuntimeError, match="the GPU ran out of memory.*Backend.ORT_CPU"):
        backends.to_device(np.zeros(3, np.float32), "cuda")
    FakeOrt.msg = "something else"
    with pytest.raises(RuntimeError, match="^something else$"):
        backends.to_device(np.zeros(3, np.float32), "cuda")


def test_backend_objects_and_resolve():
    """Backend.ORT_CPU / ORT_CUDA carry their settings; resolve() gives a private copy of a given backend
    (the user's is never changed), picks one for None and refuses anything else with the fix."""
    cpu = vsvitm.Backend.ORT_CPU(num_threads=3)
    got = backends.resolve(cpu)
    assert got == cpu and got is not cpu and got.name == "cpu" and got.num_threads == 3
    cuda = vsvitm.Backend.ORT_CUDA(device_id=1, fp16=True)
    assert cuda.name == "cuda" and cuda.device_id == 1 and cuda.fp16
    assert backends.resolve(None).name in ("cpu", "cuda")
    with pytest.raises(ValueError, match="Backend.ORT_CPU"):
        backends.resolve("cuda")
