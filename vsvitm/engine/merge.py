"""The inputs of one FCPM merge (eq. 9) as each runner makes them: on the host (HostMerge: every key's
slices of the network input) or on the device (DeviceMerge: key results kept there, brought to the
frame's exposure by a small graph). fcpm.FcpmStage._merge fills either, key by key, the same way."""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from .. import backends
from ..prep import Y_MAX, merge_prep_graph, ratio_scale
from . import models
from .preflow import given

# On CUDA the last this many key frames' merge inputs stay on the device (key_on_device): a frame
# merges its 5 nearest keys, and consecutive frames share them, so a chunk of 24 frames (with margins)
# reads about 9 keys
DEVICE_KEYS = 16


class _Merge:
    """What both runners' merges hold: each key's pre-flow to the frame and whether the slot is valid
    (slots past the frame's keys repeat its last key with valid 0)."""

    def __init__(self, eng, kn: int, size: tuple[int, int]):
        self.eng, self.kn = eng, kn
        hp, wp = size
        self.flows = np.empty((1, 2 * kn, hp, wp), np.float32)
        self.valid = np.zeros((1, kn, 1, 1), np.float32)

    def add(self, j: int, valid: bool, flow: np.ndarray, e: np.float32, k, code_k, y_k, ev_k) -> None:
        """Key slot j: its pre-flow t -> k, exposure ratio, then key k's code values, Y and evidence
        (arrays or functions giving them)."""
        self.valid[0, j] = 1.0 if valid else 0.0
        self.eng._put(self.flows[:, 2 * j: 2 * j + 2], [flow[..., 0], flow[..., 1]])
        self.add_key(j, e, k, code_k, y_k, ev_k)


class HostMerge(_Merge):
    """The merge's inputs as host arrays: keys' network inputs at frame t's exposure (ins), their
    results (ys), their evidence; run as fcpm_merge, or on the CPU as its parts (Engine._merge_split)."""

    def __init__(self, eng, kn: int, size: tuple[int, int]):
        super().__init__(eng, kn, size)
        hp, wp = size
        self.ins = np.empty((1, 4 * kn, hp, wp), np.float32)
        self.ys = np.empty((1, 3 * kn, hp, wp), np.float32)
        self.evidence = np.empty((1, kn, hp, wp), np.float32) if eng.merge_evidence else None

    @staticmethod
    def code(code_k) -> np.ndarray:
        return given(code_k)

    def add_key(self, j: int, e: np.float32, k, code_k, y_k, ev_k) -> None:
        eng = self.eng
        if self.evidence is not None:
            eng._put(self.evidence[:, j: j + 1], [given(ev_k)])
        y_k = given(y_k)
        eng.input(code_k, e, out=self.ins[:, 4 * j: 4 * j + 4])
        eng._put(self.ys[:, 3 * j: 3 * j + 3], [np.minimum(y_k[..., c] * e, Y_MAX) for c in range(3)])

    def run(self, cur: np.ndarray) -> np.ndarray:
        eng = self.eng
        ins, ys, flows, evidence = self.ins, self.ys, self.flows, self.evidence
        self.ins = self.ys = self.flows = self.evidence = None
        hp, wp = cur.shape[-2:]
        if eng.split_merge and hp * wp <= models.CPU_WARPS_MAX_PIXELS:
            held = [ins, ys, flows, evidence]
            del ins, ys, flows, evidence  # _merge_split frees each once used (1080p: 80-170 MB apiece)
            return eng._merge_split(cur, self.valid, held)
        feeds = {"cur": cur, "keys": ins, "ys": ys, "preflows": flows, "valid": self.valid}
        if evidence is not None:
            feeds["evidence"] = evidence
        return eng._run("fcpm_merge", feeds)[0]


class DeviceMerge(_Merge):
    """The merge with IO binding (CUDA): each key's network input (at ratio 1), result and evidence go
    to the device once (key_on_device) and a small graph (prep.merge_prep_graph) brings them to frame
    t's exposure there; only t's input and the pre-flows are sent per merge (at 1080p ~100 MB instead
    of ~450, and no per-key input making on the host). Same result as HostMerge."""

    def __init__(self, eng, kn: int, size: tuple[int, int]):
        super().__init__(eng, kn, size)
        self.size, self.feeds = size, {}

    @staticmethod
    def code(code_k):
        return code_k  # made only when the key is not on the device yet

    def add_key(self, j: int, e: np.float32, k, code_k, y_k, ev_k) -> None:
        k_dev, y_dev, ev = key_on_device(self.eng, k, code_k, y_k, ev_k, self.size)
        self.feeds[f"k{j}"], self.feeds[f"y{j}"] = k_dev, y_dev
        if self.eng.merge_evidence:
            self.feeds[f"ev{j}"] = ev
        self.feeds[f"s{j}"], self.feeds[f"e{j}"] = np.array([ratio_scale(e)], np.float32), np.array([e], np.float32)

    def run(self, cur: np.ndarray) -> np.ndarray:
        eng, runner, kn = self.eng, self.eng.runner, self.kn
        prep = backends.aux_session(f"merge_prep_{kn}_{int(eng.merge_evidence)}",
                                    lambda: backends.model_bytes(merge_prep_graph(kn, eng.merge_evidence, Y_MAX)),
                                    eng.backend)
        made = backends.run_bound(prep, self.feeds, runner.device, runner.device_id)
        self.feeds = {}
        mfeeds = {"cur": cur, "keys": made[0], "ys": made[1], "preflows": self.flows, "valid": self.valid}
        if eng.merge_evidence:
            mfeeds["evidence"] = made[2]
        return runner.run("fcpm_merge", mfeeds)[0].numpy()


class DeviceKeys:
    """Key results on the device (CUDA), the last DEVICE_KEYS of them, shared by all merges."""

    def __init__(self):
        self.d: OrderedDict = OrderedDict()
        self.lock = threading.Lock()


def key_on_device(eng, k, code_k, y_k, ev_k, padded: tuple[int, int]) -> tuple:
    """Key k's network input at ratio 1 (1x4xHpxWp), its Y (1x3xHpxWp, float32) and its evidence
    (1x1xHpxWp, or None without the evidence gate) as OrtValues on the device, made once and kept
    for the next merges (the last DEVICE_KEYS keys; ~70 MB each at 1080p)."""
    keys = eng.dev_keys
    with keys.lock:
        hit = keys.d.get((k, padded))
        if hit is not None:
            keys.d.move_to_end((k, padded))
            return hit
    send = eng.runner.send
    hp, wp = padded
    y_k = given(y_k)
    ys = np.empty((1, 3, hp, wp), np.float32)
    eng._put(ys, [y_k[..., c] for c in range(3)])
    del y_k
    ev = None
    if eng.merge_evidence:
        ev = np.empty((1, 1, hp, wp), np.float32)
        eng._put(ev, [given(ev_k)])
        ev = send(ev)
    hit = (send(eng.input(given(code_k))), send(ys), ev)
    with keys.lock:
        keys.d[(k, padded)] = hit
        while len(keys.d) > DEVICE_KEYS:
            keys.d.popitem(last=False)
    return hit
