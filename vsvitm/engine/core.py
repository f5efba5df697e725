"""The Engine: runs the ICAM and FCPM ONNX graphs on numpy frames, the parts put together.

Frames arrive here as HxWx3 float32 display-referred code values (from VapourSynth); everything is
padded to the networks' modulus once and cropped back at the end. Pre-flows and key-frame results
are cached (bounded in bytes) and shared between VapourSynth's threads.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .. import backends
from ..cache import ByteLRU
from ..curves import overexposure_mask, to_linear
from ..flow import RUNTIME_PRESET
from ..prep import Y_MAX, fill_padded, net_input, pad_to, padded_size
from .allocator import limit_malloc_arenas
from .fcpm import FcpmStage, merges_at_once
from .icam import IcamStage
from .merge import DeviceKeys
from .models import load
from .preflow import Preflows
from .runner import DeviceRunner, HostRunner

# FCPM's recurrent steps and fuse are convolutions plus, in a step, one warp of the state: each output
# row depends only on input rows within a few pixels (and, through the warp, the flow's vertical
# reach). Above BAND_PIXELS (0.26 MP) they run in horizontal bands with that halo, so their activations
# (~370 B/px a step, ~400 B/px the fuse, two steps in flight) exist for one band at a time: at
# 1920x1080 these were the peak of a render. The result is the same (tests/test_engine.py).
BAND_PIXELS = 1 << 18
BAND_HALO = {"fcpm_back": 3, "fcpm_fwd": 3, "fcpm_fuse": 2,  # stacked 3x3 convolutions after the warp
             "fcpm_back_cpu": 3, "fcpm_fwd_cpu": 3}
# what the Engine reads off its ModelSet (models.load), as attributes of its own
MODEL_ATTRS = ("sess", "int8_graphs", "prewarp", "split_merge", "split_ref", "merge_corrects", "merge_evidence",
               "bind_device", "on_cpu", "icam_meta", "fcpm_meta", "modulus")


class Engine(Preflows, IcamStage, FcpmStage):
    """models: the model folder (None: the shipped one); backend: a vsvitm.Backend or None (the best
    available); need_fcpm: load FCPM too (mode "full"); transfer, threshold: the camera curve and
    eq. 1's mask start; exposure_norm: bring references to the key's exposure; cache_bytes: the bound
    of the pre-flow, luma and result caches together; ref_gate: the reference gate (useful_refs);
    preflow: the DIS preset of the pre-flows."""

    def __init__(self, models: str | Path | None, backend, *, need_fcpm: bool, transfer: str, threshold: float,
                 exposure_norm: bool, cache_bytes: int, ref_gate: float = 0.0, preflow: str = RUNTIME_PRESET):
        limit_malloc_arenas()
        self.backend = backends.resolve(backend)
        self.models = load(models, self.backend, need_fcpm)
        for name in MODEL_ATTRS:
            setattr(self, name, getattr(self.models, name))
        if need_fcpm:
            self.fcpm_keys = int(self.fcpm_meta["keys"])
            self.hidden = int(self.fcpm_meta["hidden"])
        self.threshold = threshold
        self._init_preflows(preflow, self.icam_meta.get("preflow_start", "zero"), self.models.folder, transfer,
                            threshold, exposure_norm, ref_gate, cache_bytes)
        self.results = ByteLRU(cache_bytes - cache_bytes // 8 - cache_bytes // 64)
        # Bands bound the host's memory on the CPU. On CUDA they would make every band height (which
        # follows the flow's reach) a new input shape, and each new shape a new cuDNN algorithm search
        # (EXHAUSTIVE by default): a 1080p render on an H200 did not get past its warm-up in 110 s.
        # A GPU holds a 1080p step whole (~0.8 GB of activations).
        self.band_pixels = BAND_PIXELS if self.bind_device is None else 1 << 62
        self.merge_slots = threading.BoundedSemaphore(merges_at_once(self.bind_device))
        self.dev_keys = DeviceKeys()  # merge.key_on_device: key results on the device (CUDA)
        self.runner = DeviceRunner(self) if self.bind_device else HostRunner(self)

    # --- graph runs on host arrays ---
    def _run(self, graph: str, feeds: dict) -> list[np.ndarray]:
        return backends.run(self.sess[graph], feeds)

    def run_banded(self, graph: str, feeds: dict, flow: np.ndarray | None = None, dtype=np.float32) -> np.ndarray:
        """The first output of a convolutional graph (BAND_HALO), computed band by band.

        A band of rows [a, b) is run on rows [a - p, b + p) and cropped: p covers the convolutions'
        reach and, where the graph warps by `flow` (1x2xHxW, pixels), the largest vertical flow in
        those rows, so every sample the band's rows use lies inside the crop (the frame's own edges
        stay edges). One call when the frame is small or the halo would span the frame. Inputs may be
        half floats (held states): each band is made float32 on its own; the result is `dtype`. An input
        may also be a function (lo, hi) -> its rows lo..hi-1 (the CPU path's warped state, made one band
        at a time); the first input must be an array.

        graph: the graph's name (BAND_HALO lists the halo of each); feeds: its inputs, 1xCxHxW each;
        flow: the flow the graph warps by (None: it warps nothing); dtype: the result's dtype."""
        h, w = next(iter(feeds.values())).shape[-2:]
        n = -(-h * w // self.band_pixels)

        def rows(v, lo, hi):
            return np.ascontiguousarray(v(lo, hi) if callable(v) else v[..., lo:hi, :], np.float32)
        if n <= 1:
            return self._run(graph, {k: rows(v, 0, h) for k, v in feeds.items()})[0].astype(dtype, copy=False)
        halo = BAND_HALO[graph]
        edges = np.linspace(0, h, n + 1).round().astype(int)
        crops = []
        for a, b in zip(edges[:-1], edges[1:]):
            p = halo
            if flow is not None:  # +2: bilinear reads the next row, and rounding
                p += int(np.ceil(np.abs(flow[0, 1, max(0, a - halo): b + halo]).max())) + 2
            crops.append((a, b, max(0, a - p), min(h, b + p)))
        if sum(hi - lo for _, _, lo, hi in crops) >= 2 * h:  # halos as large as the bands: no saving
            crops = [(0, h, 0, h)]
        out = None
        for a, b, lo, hi in crops:
            part = self._run(graph, {k: rows(v, lo, hi) for k, v in feeds.items()})[0]
            if out is None:
                out = np.empty(part.shape[:-2] + (h, w), dtype)
            out[..., a:b, :] = part[..., a - lo: b - lo, :]
            del part
        return out

    # --- inputs ---
    def _pad(self, x: np.ndarray) -> np.ndarray:
        return pad_to(x, self.modulus)[0]

    def _pad_flow(self, flow: np.ndarray) -> np.ndarray:
        return self._pad(flow.transpose(2, 0, 1))[None]

    def input(self, code: np.ndarray, ratio: float = 1.0, out: np.ndarray | None = None) -> np.ndarray:
        """1x4xHpxWp network input, padded to the modulus (into `out`, 1x4xHpxWp, when given): written
        in place, no padded copy of it (1080p: 33 MB and ~4 ms a call, ~10 calls per output frame)."""
        h, w = code.shape[:2]
        if out is None:
            out = np.empty((1, 4) + padded_size(h, w, self.modulus), np.float32)
        net_input(code, self.transfer, ratio, self.threshold, out=out[0, :, :h, :w])
        return fill_padded(out, h, w)

    def _put(self, dst: np.ndarray, planes) -> None:
        """dst (1xCxHpxWp, a slice of a graph input) <- C HxW planes, edge-padded."""
        h, w = planes[0].shape
        for c, p in enumerate(planes):
            dst[0, c, :h, :w] = p
        fill_padded(dst, h, w)

    # --- output ---
    @staticmethod
    def finite(y: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """y as float32 in [0, Y_MAX]: NaN and -Inf -> 0, +Inf -> Y_MAX (into `out` when given).
        fmax/fmin return the number where the other operand is NaN: two passes, no nan_to_num copies."""
        out = np.fmax(y, np.float32(0.0), out=out, dtype=np.float32)
        return np.fmin(out, np.float32(Y_MAX), out=out)

    def blend(self, code: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        """Paper eq. 1: (1 - alpha) f^-1(L) + alpha Y; finite and non-negative.
        Computed as lin + alpha (max(Y, lin) - lin), in place (1080p: four full-frame temporaries fewer)."""
        lin = to_linear(code, self.transfer)
        if y is None:
            return lin
        out = np.maximum(y, lin, dtype=np.float32)
        out -= lin
        out *= overexposure_mask(code, self.threshold)
        out += lin
        return self.finite(out, out)
