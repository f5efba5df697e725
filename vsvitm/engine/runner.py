"""How the engine's stages run their graphs: one interface, two implementations.

HostRunner: plain ONNX Runtime runs on host arrays (the CPU provider, and CUDA without IO binding):
inputs are made when a step needs them and not kept, FCPM's steps run in bands with OpenCV warps where
the model folder has the CPU graphs. DeviceRunner (CUDA, IO binding): inputs are made ahead by
PREP_THREADS host workers and sent to the device once, recurrent states and key results stay there.
The ICAM and FCPM loops (icam.py, fcpm.py) are written once against this interface:
  run(graph, feeds)        outputs (host arrays, or device values)
  fetch(v)                 a run's output as a host array
  send(a, dtype)           an input for run(), where run() reads it
  ahead(make, keys)        a getter: get(key) = make(*key), made ahead and kept (device) or made then (host)
  zero_state(shape)        FCPM's state at a run's end
  step(graph, feeds, zero) one recurrent step, its state as held between steps (half floats' values)
  fuse(feeds)              FCPM's fuse, as a host array
  merge_batch(kn, size)    the inputs of one merge (merge.HostMerge / merge.DeviceMerge)
  cpu_forms                whether graphs run as their CPU forms (models.SPLIT_REF, ...)
"""
from __future__ import annotations

import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import backends
from .. import flow as flowmod
from .merge import DeviceMerge, HostMerge
from . import models
from .models import PREWARP_GRAPHS

# Host threads that make a chunk's (or a key frame's references') device inputs ahead of its graph runs
# on CUDA. Why: made inline, a 1080p step spent ~60 ms on the host (f^-1, mask, conversions, DIS,
# upsampling) per new frame, one step after another, while the GPU's part is ~8 ms.
PREP_THREADS = 4


class _Lazy:
    """HostRunner.ahead's getter: each value made when asked for, not kept."""

    def __init__(self, make):
        self.make = make

    def __call__(self, *key, take: bool = False):
        return self.make(*key)

    def close(self) -> None:
        pass


class _Ahead:
    """DeviceRunner.ahead's getter: values made by PREP_THREADS workers in the order given, kept until
    taken (take=True) or closed."""

    def __init__(self, make, keys):
        self.pool = ThreadPoolExecutor(PREP_THREADS)
        self.futures = {}
        for key in keys:
            if key not in self.futures:
                self.futures[key] = self.pool.submit(make, *key)

    def __call__(self, *key, take: bool = False):
        return (self.futures.pop(key) if take else self.futures[key]).result()

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)
        self.futures.clear()


class HostRunner:
    device = None
    state_dtype = np.float16
    cpu_forms = True  # runs the CPU forms of graphs (OpenCV warps between) where the model folder has them

    def __init__(self, eng):
        self.eng = weakref.proxy(eng)  # the engine holds its runner: no reference cycle keeps it alive

    def run(self, graph: str, feeds: dict) -> list:
        return self.eng._run(graph, feeds)

    def fetch(self, v) -> np.ndarray:
        return v

    def send(self, a: np.ndarray, dtype=None):
        return a

    def ahead(self, make, keys) -> _Lazy:
        return _Lazy(make)

    def zero_state(self, shape: tuple) -> np.ndarray:
        return np.zeros(shape, self.state_dtype)

    def step(self, graph: str, feeds: dict, zero: bool) -> np.ndarray:
        """A recurrent step band by band (Engine.run_banded); where the folder has the CPU graphs
        (PREWARP_GRAPHS), the state is warped here (OpenCV), band by band: no full-frame copy of it
        (67 MB at 1080p); a zero state needs no warp."""
        eng = self.eng
        h, flow = feeds.pop("h"), feeds.pop("flow")
        hp, wp = feeds["x"].shape[-2:]
        if eng.prewarp and hp * wp <= models.CPU_WARPS_MAX_PIXELS:
            feeds["hw"] = h if zero else (lambda lo, hi: flowmod.warp_planes(h, flow, np.float32, (lo, hi)))
            return eng.run_banded(PREWARP_GRAPHS[graph], feeds, None, np.float16)
        return eng.run_banded(graph, {**feeds, "h": h, "flow": flow}, flow, np.float16)

    def fuse(self, feeds: dict) -> np.ndarray:
        return self.eng.run_banded("fcpm_fuse", feeds)

    def merge_batch(self, kn: int, size: tuple[int, int]) -> HostMerge:
        return HostMerge(self.eng, kn, size)


class DeviceRunner:
    """IO binding on CUDA: each frame's X^ and network input go to the device once per chunk, the
    recurrent states never leave it, key results stay there for the next merges (DeviceMerge). Why: a
    plain run copied every state (16 channels, 133 MB at 1080p) to the host and back at each step, and
    made each frame's input three times (back, forward, fuse; ~40 ms each at 1080p). States are rounded
    to half floats on the device after each step (backends.round_half), as the host holds them, so
    both runners give the same result."""
    state_dtype = np.float32
    cpu_forms = False

    def __init__(self, eng, device: str = "cuda"):
        self.eng, self.device = weakref.proxy(eng), device  # "cpu": the same path on the host (tests)
        self.device_id = getattr(eng.backend, "device_id", 0)

    def run(self, graph: str, feeds: dict) -> list:
        return backends.run_bound(self.eng.sess[graph], feeds, self.device, self.device_id)

    def fetch(self, v) -> np.ndarray:
        return v.numpy()

    def send(self, a: np.ndarray, dtype=None):
        return backends.to_device(np.ascontiguousarray(a, dtype), self.device, self.device_id)

    def ahead(self, make, keys) -> _Ahead:
        return _Ahead(make, keys)

    def zero_state(self, shape: tuple) -> np.ndarray:
        return np.zeros(shape, self.state_dtype)

    def step(self, graph: str, feeds: dict, zero: bool):
        return backends.round_half(self.run(graph, feeds)[0], self.eng.backend)

    def fuse(self, feeds: dict) -> np.ndarray:
        return self.run("fcpm_fuse", feeds)[0].numpy()

    def merge_batch(self, kn: int, size: tuple[int, int]) -> DeviceMerge:
        return DeviceMerge(self.eng, kn, size)


def shape_of(v) -> tuple:
    """The shape of a host array or of a device value (OrtValue.shape() is a method)."""
    return tuple(v.shape() if callable(v.shape) else v.shape)
