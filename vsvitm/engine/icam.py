"""The ICAM stage: a key frame's Y from itself and its references, added one at a time (icam_init ->
icam_ref per reference -> icam_decode), on either runner (runner.py)."""
from __future__ import annotations

import numpy as np

from .. import flow as flowmod
from . import allocator, models
from .preflow import given


class IcamStage:
    """The Engine's ICAM part; uses its runner, input(), _preflow(), _pad_flow() and finite()."""

    def icam(self, k, code_k: np.ndarray, refs: list) -> tuple[np.ndarray, np.ndarray]:
        """Y for key frame k (HxWx3 linear, >= f^-1(L)), references added one by one, nearest first,
        and how much reference evidence backs it per pixel (HxW in [0, 1]).

        refs: (frame id, HxWx3 code values or a function giving them), all of them run (the
        caller gates them with useful_refs). The id keys the luma and pre-flow caches: a frame
        number, or any hashable naming those pixels (itm: (r, "rgb24") for 8-bit references)."""
        run = self.runner
        key = self.input(code_k)
        fl, g = run.run("icam_init", {"key": key})
        split = self.splits_ref(key)

        def ref_inputs(i: int) -> dict:
            r, code_r = refs[i]
            code_r = given(code_r)  # one reference's array at a time
            flow, e = self._preflow(k, code_k, r, code_r, icam=True)[:2]
            return {"ref": run.send(self.input(code_r, e)), "preflow": run.send(self._pad_flow(flow))}
        # on the device the references' inputs are made ahead and sent there, so the steps (one after
        # another) wait only for the GPU
        made = run.ahead(ref_inputs, [(i,) for i in range(len(refs))])
        try:
            for i in range(len(refs)):
                feeds = {"fl": fl, "g": g, **made(i, take=True)}
                fl, g = self._ref_split(feeds) if split else run.run("icam_ref", feeds)[:2]
                del feeds  # that reference's inputs leave the device
        finally:
            made.close()
        out = run.run("icam_decode", {"key": key, "fl": fl, "g": g})
        allocator.trim_after(key.shape[-1] * key.shape[-2])
        y, ev = run.fetch(out[0]), run.fetch(out[1])
        h, w = code_k.shape[:2]
        ev = np.clip(np.nan_to_num(ev[0, 0, :h, :w]), 0.0, 1.0).astype(np.float32)
        return self.finite(y[0, :, :h, :w].transpose(1, 2, 0)), ev

    def splits_ref(self, key: np.ndarray) -> bool:
        """Whether the reference steps for this (padded) key input run as icam_ref_a..d (_ref_split)."""
        return self.split_ref and self.runner.cpu_forms and key.shape[-2] * key.shape[-1] <= models.CPU_WARPS_MAX_PIXELS

    def _ref_split(self, feeds: dict) -> tuple[np.ndarray, np.ndarray]:
        """icam_ref on the CPU as icam_ref_a..d with OpenCV doing the warps between (warp_planes:
        bilinear, coordinates clamped to the frame, as nets_common.warp). Same result as icam_ref."""
        rl, pf = self._run("icam_ref_a", {"ref": feeds["ref"], "preflow": feeds["preflow"]})
        w0 = flowmod.warp_planes(rl, pf, np.float32)
        flow = self._run("icam_ref_b", {"fl": feeds["fl"], "rl": rl, "w0": w0, "pf": pf})[0]
        del w0, pf
        flows, mod, fup = self._run("icam_ref_c", {"fl": feeds["fl"], "w1": flowmod.warp_planes(rl, flow, np.float32), "flow": flow})
        c = rl.shape[1]
        samples = np.empty((1, c * mod.shape[1]) + rl.shape[2:], np.float32)
        for i in range(mod.shape[1]):
            samples[:, c * i: c * (i + 1)] = flowmod.warp_planes(rl, flows[:, 2 * i: 2 * i + 2], np.float32)
        del flows
        wr = flowmod.warp_planes(feeds["ref"], fup, np.float32)
        return tuple(self._run("icam_ref_d", {"fl": feeds["fl"], "g": feeds["g"], "rl": rl, "samples": samples,
                                              "mod": mod, "flow": flow, "wr": wr}))
