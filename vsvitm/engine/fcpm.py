"""The FCPM stage: the merge of the nearest key results into a frame (eq. 9) and the bidirectional
recurrence over a chunk (eq. 10-12), each loop written once for both runners (runner.py)."""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import flow as flowmod
from ..flow import pool2, up2_plane
from . import allocator
from .models import MERGE_CORRECT
from .runner import shape_of

LOG_EPS = 1e-3  # X^ and the merge's warped key results are log(Y + LOG_EPS) (training/nets_common.EPS)
# Merges of frames above this many pixels run one at a time: at 1920x1080 one call holds ~1.3 GB
# (its 54-channel input and the graph's own activations) and two at once made a render's peak
MERGE_ALONE_PIXELS = 1 << 20
# On CUDA the graph's activations live on the GPU and a 1080p merge holds ~0.45 GB of host memory (its
# inputs), while building those inputs is ~0.4 s of one core: one merge at a time bounded a 1080p render
# to ~1 fps on an H200 (BENCHMARKS.md). This many run at once there (VSVITM_CUDA_MERGES overrides).
CUDA_MERGES_AT_ONCE = 4


def merges_at_once(bind_device: str | None) -> int:
    """How many merges above MERGE_ALONE_PIXELS may run at once: 1 on the CPU (host memory), and on
    CUDA CUDA_MERGES_AT_ONCE, or the positive integer in VSVITM_CUDA_MERGES."""
    if bind_device != "cuda":
        return 1
    want = os.environ.get("VSVITM_CUDA_MERGES", "")
    if want:
        if not want.isdigit() or int(want) < 1:
            raise ValueError(f"vsvitm: VSVITM_CUDA_MERGES={want!r} must be a positive integer (merges at once on CUDA); "
                             "unset it for the default")
        return int(want)
    return CUDA_MERGES_AT_ONCE


class FcpmStage:
    """The Engine's FCPM part; uses its runner, input(), preflow(), _pad_flow(), _run() and finite()."""

    def merge(self, t: int, code_t: np.ndarray, keys: list) -> np.ndarray:
        """X^_t (log domain, 1x3xHpxWp padded) from the nearest key frames' results (eq. 9).

        keys: (k, code_k, y_k, ev_k) with HxWx3 arrays (ev_k: HxW evidence, read only by a merge with the
        evidence gate), or functions giving them; each key's arrays exist only while its slice of the
        network input is filled (the input alone is 49 channels, 54 with evidence: 450 MB at 1080p)."""
        cur = self.input(code_t)
        hp, wp = cur.shape[-2:]
        if hp * wp > MERGE_ALONE_PIXELS:
            with self.merge_slots:
                x = self._merge(t, code_t, keys, cur)
        else:
            x = self._merge(t, code_t, keys, cur)
        allocator.trim_after(hp * wp)
        return x

    def _merge(self, t: int, code_t: np.ndarray, keys: list, cur: np.ndarray) -> np.ndarray:
        batch = self.runner.merge_batch(self.fcpm_keys, cur.shape[-2:])
        for j in range(self.fcpm_keys):
            k, code_k, y_k, ev_k = keys[min(j, len(keys) - 1)]
            code_k = batch.code(code_k)
            flow, e = self._to_key(t, code_t, k, code_k)
            batch.add(j, j < len(keys), flow, e, k, code_k, y_k, ev_k)
            del code_k, y_k, ev_k, flow
        return batch.run(cur)

    def _to_key(self, t: int, code_t: np.ndarray, k: int, code_k) -> tuple[np.ndarray, np.float32]:
        """The merge's (pre-flow t -> k, exposure ratio) for key k: zero flow and ratio 1 for t's own key."""
        if k == t:
            return np.zeros(code_t.shape[:2] + (2,), np.float32), np.float32(1.0)
        return self.preflow(t, code_t, k, code_k)

    def _merge_split(self, cur, valid, held: list) -> np.ndarray:
        """The merge on the CPU: corrected flows (graph), each key's result (log domain), frame and
        evidence warped by OpenCV in one call per key, masks and mix (graph). Same result as fcpm_merge.
        held: [ins, ys, flows, evidence], emptied here so that each array is freed once used."""
        ins, ys, flows, evidence = held
        held.clear()
        kn = self.fcpm_keys
        hp, wp = cur.shape[-2:]
        # slots past the frame's keys repeat its last key (valid 0): the same inputs, so the same
        # corrected flow and warps, made once and copied
        n = max(1, int(valid.sum()))
        fl = self._merge_flows_cv(cur, ins, flows, n) if self.merge_corrects else flows
        del flows
        wys = np.empty((1, 3 * kn, hp, wp), np.float32)
        wkeys = np.empty((1, 3 * kn, hp, wp), np.float32)
        wev = np.empty((1, kn, hp, wp), np.float32) if evidence is not None else None
        for j in range(kn):
            if j >= n:
                wys[:, 3 * j: 3 * j + 3], wkeys[:, 3 * j: 3 * j + 3] = wys[:, 3 * n - 3: 3 * n], wkeys[:, 3 * n - 3: 3 * n]
                if wev is not None:
                    wev[:, j] = wev[:, n - 1]
                continue
            planes = [np.log(np.maximum(ys[:, 3 * j: 3 * j + 3], 0.0) + np.float32(LOG_EPS)), ins[:, 4 * j: 4 * j + 3]]
            if wev is not None:
                planes.append(evidence[:, j: j + 1])
            w = flowmod.warp_planes(np.concatenate(planes, 1), fl[:, 2 * j: 2 * j + 2], np.float32)
            wys[:, 3 * j: 3 * j + 3], wkeys[:, 3 * j: 3 * j + 3] = w[:, :3], w[:, 3:6]
            if wev is not None:
                wev[:, j] = w[:, 6]
            del planes, w
        del ins, ys, fl, evidence
        feeds = {"cur": cur, "wys": wys, "wkeys": wkeys, "valid": valid}
        if wev is not None:
            feeds["wev"] = wev
        return self._run("fcpm_merge_mix", feeds)[0]

    def _merge_flows_cv(self, cur: np.ndarray, ins: np.ndarray, flows: np.ndarray, n: int) -> np.ndarray:
        """Each key's pre-flow to frame t plus the learned correction (fcpm_net.FCPM._corrected) for the
        first n key slots (the others are not read): 1/2-res frame and key (2x2 means), the key
        warped by the 1/2-res pre-flow, the correction graph for all keys in one call, its output
        upsampled 2x and added. Pooling, warp and upsampling by OpenCV (flow.pool2, warp_planes,
        up2_plane), in ~half the time of the same operations in a graph.
        Written into `flows` (1x2KxHpxWp), which is returned."""
        h2, w2 = cur.shape[-2] // 2, cur.shape[-1] // 2
        x = np.empty((n, 8, h2, w2), np.float32)
        x[:, :4] = pool2(cur)[0]
        for j in range(n):
            f2 = pool2(flows[:, 2 * j: 2 * j + 2])
            f2 *= np.float32(0.5)  # in 1/2-res pixels (nets_common.downflow)
            x[j, 4:] = flowmod.warp_planes(pool2(ins[:, 4 * j: 4 * j + 4]), f2, np.float32)[0]
        d = self._run(MERGE_CORRECT, {"x": x})[0]
        for j in range(n):
            for c in range(2):
                flows[0, 2 * j + c] += np.float32(2.0) * up2_plane(d[j, c])
        return flows

    def propagate(self, ts: list[int], code, xhat, core: range) -> dict[int, np.ndarray]:
        """Bidirectional recurrent refinement (eq. 10-12) over a chunk; returns Y (HxWx3, half floats)
        for core frames.

        ts: the frame numbers of the chunk's run, in order; code(i) gives frame ts[i] as HxWx3 code
        values and xhat(i) its merged X^ (1x3xHpxWp, log domain, half floats). The runner makes each
        frame's inputs when needed (host: not kept; at 1920x1080 a 24-frame run held as arrays is
        0.9 GB) or ahead, in the order the two recurrences need them (device).
        """
        n, run = len(ts), self.runner

        def make_cur(i: int) -> tuple:  # ts[i]'s network input, and its size before padding
            c = code(i)
            return run.send(self.input(c)), c.shape[:2]
        make = {"x": lambda i: run.send(xhat(i), np.float32), "cur": make_cur,
                "flow": lambda i, j: run.send(self._pad_flow(self.preflow(ts[i], lambda: code(i), ts[j], lambda: code(j))[0]))}
        order = []
        for s_ in range(n):
            b, f = n - 1 - s_, s_
            order += [("x", b), ("cur", b), ("x", f), ("cur", f)]
            order += [("flow", b, b + 1)] * (b + 1 < n) + [("flow", f, f - 1)] * (f > 0)
        made = run.ahead(lambda what, *i: make[what](*i), order)

        def step(graph: str, i: int, j: int | None, h):
            x, cur = made("x", i), made("cur", i)[0]
            if j is not None:
                return run.step(graph, {"x": x, "cur": cur, "xn": made("x", j), "h": h,
                                        "flow": made("flow", i, j, take=True)}, zero=False)
            hp, wp = shape_of(x)[-2:]  # the run's end: no neighbour, zero state (made here, not held)
            return run.step(graph, {"x": x, "cur": cur, "xn": x, "h": run.zero_state((1, self.hidden, hp, wp)),
                                    "flow": np.zeros((1, 2, hp, wp), np.float32)}, zero=True)

        # A core frame is fused (eq. 12) by whichever direction reaches it second; the first leaves
        # its state there. The two passes meet in the middle, so about one state per core frame is
        # held at a time, not two. States are half floats' values, the running ones too (16 channels:
        # 67 MB instead of 134 at 1080p; the devset scores are unchanged), so the result does not
        # depend on which thread came first.
        waiting: dict[int, object] = {}
        lock = threading.Lock()
        out: dict[int, np.ndarray] = {}

        def recurrence(graph: str, order: range, prev: int) -> None:
            h = None
            for i in order:
                h = step(graph, i, i + prev if 0 <= i + prev < n else None, h)
                if ts[i] not in core:
                    continue
                with lock:
                    other = waiting.pop(i, None)
                    if other is None:
                        waiting[i] = h
                        continue
                hf, hb = (h, other) if prev < 0 else (other, h)
                cur, (hh, ww) = made("cur", i)
                y = run.fuse({"hf": hf, "hb": hb, "x": made("x", i), "cur": cur})
                # held (and cached) as half floats until the chunk's frames are blended: Y <= Y_MAX is a
                # finite half, and 2^-11 relative is far below an output's 10/12-bit PQ step
                out[ts[i]] = self.finite(y[0, :, :hh, :ww].transpose(1, 2, 0)).astype(np.float16)

        try:
            self._both_ways(n, recurrence)
        finally:
            made.close()
        allocator.trim_heap()
        return dict(sorted(out.items()))

    @staticmethod
    def _both_ways(n: int, recurrence) -> None:
        """The two directions are independent until the fuse: run them side by side, so a chunk's
        recurrence uses two cores while other VapourSynth threads wait for it."""
        with ThreadPoolExecutor(1) as pool:
            fut = pool.submit(recurrence, "fcpm_back", range(n - 1, -1, -1), +1)
            recurrence("fcpm_fwd", range(n), -1)
            fut.result()
