"""ONNX Runtime backends in the style of vs-mlrt: Backend.ORT_CUDA(...), Backend.ORT_CPU(...).

Sessions are created once per (graph, backend) and reused by every frame and thread (ORT's
`run` is thread-safe). The default backend takes CUDA when its provider really loads, else the CPU,
and says which once, at information level in VapourSynth's log (vspipe writes video to stdout, so
nothing here prints there). A CUDA provider that is installed, with a driver, and still fails to
load is a warning that gives the reason.
"""
from __future__ import annotations

import copy
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger("vsvitm")


class Backend:
    @dataclass
    class ORT_CPU:
        num_threads: int = 0          # intra-op threads per session; 0: cores / VapourSynth threads, at least 1
        fp16: bool = False            # fp16 graphs are slower than fp32 on most CPUs; offered for parity
        # ORT's CPU arena keeps each session's largest activations for good: with 7 graphs that is the
        # sum of their peaks. Off, with the FCPM state changes: peak RSS 3660 -> 2337 MiB for the full
        # pipeline at 512x512 (vsvitm-benchmark, BENCHMARKS.md).
        mem_arena: bool = False
        # int8 variants of the graphs that have one (vsvitm-quantize): 5-8 % faster at 512x512
        # on a VNNI/AMX CPU, up to 0.02 dB lower in over-exposed pixels (BENCHMARKS.md), so not
        # the default. None: on when the CPU has 8-bit dot-product instructions (x86 VNNI/AMX, Arm
        # dotprod); True: also without them, where x86 int8 kernels may saturate.
        int8: bool | None = False

        name = "cpu"

    @dataclass
    class ORT_CUDA:
        device_id: int = 0
        fp16: bool = False
        cudnn_benchmark: bool = True
        fallback_cpu: bool = False    # if the CUDA provider cannot load: fall back to the CPU instead of failing
        provider_options: dict = field(default_factory=dict)

        name = "cuda"


_lock = threading.Lock()
_sessions: dict = {}
_announced: set = set()


def _ort():
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - a dependency
        raise RuntimeError("vsvitm: onnxruntime is not installed: pip install onnxruntime-gpu (or onnxruntime)") from e
    return ort


def cuda_available() -> bool:
    """True when ONNX Runtime lists the CUDA provider and a tiny session on it really runs."""
    return _cuda_probe()[0]


def _cuda_probe() -> tuple[bool, str, bool]:
    """(usable, why not, whether that is a failure). No CUDA provider in this onnxruntime build and
    no NVIDIA driver are the normal CPU case (failure False); a provider that is there, with a
    driver, and does not load is a failure, with ONNX Runtime's reason when it gives one."""
    ort = _ort()
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False, "this onnxruntime build has no CUDA provider", False
    if os.name == "posix":
        import ctypes
        try:  # no driver, no GPU: say nothing (ORT itself would log two red error lines)
            ctypes.CDLL("libcuda.so.1")
        except OSError:
            return False, "no NVIDIA driver (libcuda.so.1) found", False
    try:
        ort.set_default_logger_severity(4)
        if hasattr(ort, "preload_dlls"):
            ort.preload_dlls()
        so = ort.SessionOptions()
        so.log_severity_level = 4  # quiet: a missing CUDA stack logs red errors otherwise
        sess = ort.InferenceSession(_tiny_model(), so, providers=["CUDAExecutionProvider"])
        if sess.get_providers()[0] == "CUDAExecutionProvider":
            return True, "", False
        return False, ("ONNX Runtime fell back to its CPU provider: the CUDA runtime or cuDNN libraries "
                       "it was built for were not found"), True
    except Exception as e:  # noqa: BLE001 - any failure means "no usable CUDA"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return False, f"{type(e).__name__}: {first}", True
    finally:
        ort.set_default_logger_severity(2)


def _tiny_model() -> bytes:
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m.SerializeToString()


def resolve(backend) -> "Backend.ORT_CPU | Backend.ORT_CUDA":
    """A private copy of the user's backend (never mutated), or the default: CUDA if usable, else CPU."""
    if backend is None:
        default = Backend.ORT_CUDA() if _cuda_usable() else Backend.ORT_CPU()  # probes once, outside the lock
        with _lock:
            chosen = _sessions.setdefault("default", default)
        if chosen.name == "cuda":
            _announce(f"vsvitm: using CUDA (GPU {chosen.device_id})")
        else:
            _, why, failed = _cuda_state()
            if failed:
                _announce(f"vsvitm: ONNX Runtime's CUDA provider did not load ({why}); using the CPU. "
                          f"CUDA 12/13 + cuDNN 9 libraries missing? Try pip install 'onnxruntime-gpu[cuda,cudnn]', "
                          f"or pass backend=vsvitm.Backend.ORT_CPU() to choose the CPU", warning=True)
            else:
                _announce(f"vsvitm: using the CPU ({why})")
        return copy.deepcopy(chosen)
    if not isinstance(backend, (Backend.ORT_CPU, Backend.ORT_CUDA)):
        raise ValueError(f"vsvitm: backend must be vsvitm.Backend.ORT_CPU(...) or Backend.ORT_CUDA(...), got {backend!r}")
    return copy.deepcopy(backend)


def _announce(msg: str, warning: bool = False) -> None:
    """Say msg once per process through VapourSynth's log (information level unless warning): vspipe
    prints it on stderr and previewers show it; plain Python shows warnings only. Python's logging
    ("vsvitm" logger) where VapourSynth cannot be imported."""
    with _lock:
        if msg in _announced:
            return
        _announced.add(msg)
    try:
        import vapoursynth as vs
        vs.core.log_message(vs.MESSAGE_TYPE_WARNING if warning else vs.MESSAGE_TYPE_INFORMATION, msg)
    except Exception:  # noqa: BLE001 - no VapourSynth (training tools): Python's logging
        (log.warning if warning else log.info)(msg)


_INT8_DOT_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"}


def cpu_has_int8_dot() -> bool:
    """True when the CPU has 8-bit dot-product instructions (Linux: /proc/cpuinfo flags). There
    ONNX Runtime's integer convolutions are exact sums; on plain AVX2 its u8 x s8 kernel adds pairs in
    16 bits, which can saturate."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return bool(_INT8_DOT_FLAGS & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return False


def use_int8(backend) -> bool:
    """Whether this backend runs the int8 graph variants."""
    if getattr(backend, "name", "") != "cpu" or getattr(backend, "fp16", False):
        return False
    want = getattr(backend, "int8", None)
    return cpu_has_int8_dot() if want is None else bool(want)


def default_cpu_threads() -> int:
    import vapoursynth as vs
    cores = os.cpu_count() or 1
    return max(1, cores // max(1, min(vs.core.num_threads, cores)))


def _cached(key):
    with _lock:
        return _sessions.get(key)


def _options(optimize: bool):
    """Session options: all of ONNX Runtime's graph optimisations, or none; warnings and errors only."""
    ort = _ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.log_severity_level = 3
    return so


def _cuda_providers(backend) -> list:
    """ONNX Runtime's provider list for a Backend.ORT_CUDA: its device, cuDNN search and provider_options."""
    opts = {"device_id": backend.device_id,
            "cudnn_conv_algo_search": "EXHAUSTIVE" if backend.cudnn_benchmark else "DEFAULT",
            **backend.provider_options}
    return [("CUDAExecutionProvider", opts), "CPUExecutionProvider"]


def session(path: Path, backend) -> "onnxruntime.InferenceSession":  # noqa: F821
    """One shared InferenceSession per (model file, backend settings). The file's size and mtime are
    part of the key: a model re-exported into the same folder (a script reloaded in vspreview after
    training) gets a new session, not the old file's."""
    st = Path(path).stat()
    key = (str(path), st.st_size, st.st_mtime_ns, repr(backend))
    s = _cached(key)
    if s is not None:
        return s
    ort = _ort()
    so = _options(optimize=True)
    on_cpu = backend.name == "cpu"
    if not on_cpu and not _cuda_usable():
        # decided before ORT tries: a session asked for CUDA without it logs a burst of red errors
        _cuda_missing(backend)
        on_cpu = True
    if on_cpu:
        so.intra_op_num_threads = getattr(backend, "num_threads", 0) or default_cpu_threads()
        so.inter_op_num_threads = 1
        so.enable_cpu_mem_arena = bool(getattr(backend, "mem_arena", False))
        providers = ["CPUExecutionProvider"]
    else:
        providers = _cuda_providers(backend)
        if hasattr(ort, "preload_dlls"):
            try:
                ort.preload_dlls()
            except Exception:  # noqa: BLE001
                pass
    try:
        s = ort.InferenceSession(str(path), so, providers=providers)
    except Exception as e:
        raise RuntimeError(f"vsvitm: ONNX Runtime could not load {path}: {e}") from e
    if not on_cpu and s.get_providers()[0] != "CUDAExecutionProvider":
        _cuda_missing(backend)
    with _lock:
        for stale in [k for k in _sessions if k[0] == key[0] and k[3] == key[3] and k != key]:
            del _sessions[stale]  # that file's earlier contents
        s = _sessions.setdefault(key, s)
    return s


_cuda_ok: tuple[bool, str, bool] | None = None


def _cuda_state() -> tuple[bool, str, bool]:
    """_cuda_probe(), probed once per process."""
    global _cuda_ok
    with _lock:
        known = _cuda_ok
    if known is None:
        known = _cuda_probe()
        with _lock:
            _cuda_ok = known
    return known


def _cuda_usable() -> bool:
    """cuda_available(), probed once per process."""
    return _cuda_state()[0]


def _cuda_missing(backend) -> None:
    why = _cuda_state()[1] or "the session fell back to ONNX Runtime's CPU provider"
    if not backend.fallback_cpu:
        raise RuntimeError(f"vsvitm: Backend.ORT_CUDA was requested but ONNX Runtime's CUDA provider did not load "
                           f"({why}; CUDA 12/13 + cuDNN 9 libraries missing? try pip install 'onnxruntime-gpu[cuda,cudnn]'). "
                           "Use Backend.ORT_CPU(), or Backend.ORT_CUDA(fallback_cpu=True) to fall back.")
    _announce(f"vsvitm: ONNX Runtime's CUDA provider did not load ({why}); falling back to the CPU as "
              f"allowed by fallback_cpu=True", warning=True)


def run_bound(sess, feeds: dict, device: str, device_id: int = 0) -> list:
    """Run with ONNX Runtime's IO binding: inputs are numpy arrays (copied to `device`) or OrtValues
    already there, and every output stays on `device` as an OrtValue (`.numpy()` copies it back).
    Why: ICAM's state (fl, g) goes from one reference step to the next; on CUDA a plain run copies it
    to the host and back for every reference (12 per key frame)."""
    ort = _ort()
    io = sess.io_binding()
    for name, v in feeds.items():
        io.bind_ortvalue_input(name, v if isinstance(v, ort.OrtValue) else _upload(v, device, device_id))
    for o in sess.get_outputs():
        io.bind_output(o.name, device, device_id)
    try:
        sess.run_with_iobinding(io)
    except Exception as e:
        _raise_oom(e)
        raise
    return io.get_outputs()


def to_device(a: np.ndarray, device: str, device_id: int = 0):
    """An OrtValue holding a copy of `a` on `device`, for run_bound feeds used more than once."""
    return _upload(a, device, device_id)


def _upload(a: np.ndarray, device: str, device_id: int):
    try:
        return _ort().OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a), device, device_id)
    except Exception as e:
        _raise_oom(e)  # the device's memory is full: say so as a graph run would
        raise


def _round_half_model() -> bytes:
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    g = helper.make_graph([helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16),
                           helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT)], "round_half", [x], [y])
    return model_bytes(g)


def model_bytes(graph) -> bytes:
    """An ONNX model (opset 13, IR 8, as the exported graphs) of an onnx.GraphProto, serialized."""
    from onnx import helper
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m.SerializeToString()


def aux_session(name: str, make, backend) -> "onnxruntime.InferenceSession":  # noqa: F821
    """A session for a small graph the engine builds itself (make() gives its bytes), one per (name,
    backend), on the backend's device, run without graph optimisation (it must do exactly what it says)."""
    key = ("aux", name, repr(backend))
    sess = _cached(key)
    if sess is not None:
        return sess
    so = _options(optimize=False)  # e.g. keep round_half's Cast pair
    if backend.name == "cuda" and _cuda_usable():
        providers = _cuda_providers(backend)  # the user's provider_options (memory limits, ...) hold here too
    else:
        so.intra_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
    sess = _ort().InferenceSession(make(), so, providers=providers)
    with _lock:
        return _sessions.setdefault(key, sess)


def round_half(v, backend):
    """A float32 OrtValue rounded to the nearest half float (as numpy's astype(float16) rounds), kept
    where it is: the recurrent states on the device, held as the CPU path holds them (engine.propagate)."""
    sess = aux_session("round_half", _round_half_model, backend)
    device = "cuda" if v.device_name().lower().startswith("cuda") else "cpu"
    return run_bound(sess, {"x": v}, device, getattr(backend, "device_id", 0))[0]


def _raise_oom(e: Exception) -> None:
    msg = str(e)
    if "out of memory" in msg.lower() or "Failed to allocate" in msg:
        raise RuntimeError(f"vsvitm: the GPU ran out of memory ({msg.splitlines()[0]}); lower the resolution, "
                           "free GPU memory, or use Backend.ORT_CPU()") from e


def run(sess, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    try:
        return sess.run(None, feeds)
    except Exception as e:
        _raise_oom(e)
        raise
