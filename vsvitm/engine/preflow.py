"""The pre-flow cache: DIS flows between frames and exposure ratios, and each frame's reduced luma, keyed
by frame id and shared by all of VapourSynth's threads (vsvitm.cache.ByteLRU)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cache import ByteLRU
from ..curves import to_linear
from ..flow import DISFlow, HomographyDIS, align_small, luma


def given(x):
    """An array, or a function giving it: the engine's callers pass frames lazily so that large
    frames exist as arrays only while a graph needs them."""
    return x() if callable(x) else x


class Preflows:
    """Pre-flows of frame pairs, made once and cached (the Engine's part that aligns frames).

    Frames are named by an id (a frame number, or any hashable naming those pixels) and given as HxWx3
    code values or functions giving them (called on a cache miss only)."""

    def _init_preflows(self, preset: str, icam_start: str, folder: Path, transfer: str, threshold: float,
                       exposure_norm: bool, ref_gate: float, cache_bytes: int) -> None:
        self.transfer, self.exposure_norm = transfer, exposure_norm
        # A reference step runs only when the reference shows at least this fraction of the frame that
        # the key clipped (flow.reference_clue, from the pre-flow's reduced images); 0: every reference
        self.ref_gate = float(ref_gate)
        self.clip_level = float(to_linear(np.float32(threshold), transfer))
        self.flow_fn = DISFlow(preset)  # the DIS preset by name (flow.PRESETS)
        # ICAM's key -> reference pre-flows: DIS started from a feature homography when the ICAM was trained on
        # those (export_models --homography-preflow writes it into icam.json), else the same as FCPM's
        if icam_start not in ("zero", "homography"):
            raise ValueError(f"vsvitm: {folder / 'icam.json'} asks for pre-flows started from {icam_start!r}; this "
                             "vsvitm knows 'zero' and 'homography': update vsvitm or re-export the models")
        self.icam_flow_fn = HomographyDIS(preset) if icam_start == "homography" else self.flow_fn
        # pre-flows at DIS's working size (<= 0.8 MB a pair): 1/8 of the cache holds the ~150 pairs
        # between two uses of a pair (neighbouring chunks share their margins' neighbour flows)
        self.flows = ByteLRU(cache_bytes // 8)
        # each frame's linear luma at DIS's working size, the pre-flow's input: a frame takes part in many
        # pairs (a key frame in 12, a merged frame in 5), and f^-1 + luma of a 1080p frame cost ~25 ms
        # each time; at most 320 px on a side, so 1/64 of the cache holds hundreds of frames
        self.lumas = ByteLRU(cache_bytes // 64)

    def preflow(self, a, code_a, b, code_b) -> tuple[np.ndarray, np.float32]:
        """Cached (flow a->b, exposure ratio b->a) between frames a and b (frame numbers are the key).

        code_a/code_b: HxWx3 code values, or functions giving them (only called on a cache miss)."""
        return self._preflow(a, code_a, b, code_b)[:2]

    def _preflow(self, a, code_a, b, code_b, full_res: bool = True,
                 icam: bool = False) -> tuple[np.ndarray | None, np.float32, float]:
        """preflow() and, third, flow.reference_clue of b for key a (from the same reduced images).
        The cache holds the flow at DIS's working size, upsampled on each use (~5 ms at 1080p): a
        full-resolution 1080p flow is 16.6 MB, so the cache held only ~14 of them and a chunk's pairs
        were made again. full_res=False: no flow (None), for callers that need only the clue.
        icam: an ICAM key -> reference pair (made by icam_flow_fn)."""
        flow_fn = self.icam_flow_fn if icam else self.flow_fn
        key = self.flow_key(a, b, icam)
        hit = self.flows.get(key)
        if hit is None:
            (sa, pa, full), (sb, pb, _) = self._luma(a, code_a), self._luma(b, code_b)
            if self.ref_gate > 0:
                small = align_small(sa, sb, flow_fn, self.exposure_norm, peaks=(pa, pb, self.clip_level))
            else:  # nothing reads the clue
                small = align_small(sa, sb, flow_fn, self.exposure_norm) + (1.0,)
            hit = small + (full,)
            self.flows.put(key, hit)
        flow, e, clue, full = hit
        return (self.flow_fn.upsample(flow, *full) if full_res else None), e, clue

    def pair(self, a, code_a, b, code_b) -> tuple[np.ndarray, np.float32]:
        """Cached (flow a->b at full resolution, exposure ratio b->a) made as ICAM's key -> reference
        pre-flows are (started from a feature homography when icam.json asks for it): the temporal
        mode's key frame -> reference alignment, shared with ICAM's cache entries. code_a/code_b: HxWx3
        code values or functions giving them."""
        return self._preflow(a, code_a, b, code_b, icam=True)[:2]

    def flow_key(self, a, b, icam: bool = False) -> tuple:
        """The pre-flow cache's key for the pair a -> b (an ICAM pair made by its own flow gets its own entry)."""
        if icam and self.icam_flow_fn is not self.flow_fn:
            return (a, b, self.exposure_norm, "homography")
        return (a, b, self.exposure_norm)

    def _luma(self, n, code) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """(linear luma and, with a ref_gate, linear max channel of frame n at DIS's working size (else
        None), the frame's (h, w)), cached; code: its HxWx3 code values or a function giving them
        (called on a miss only)."""
        hit = self.lumas.get(n)
        if hit is None:
            c = given(code)
            lin = to_linear(c, self.transfer)
            peak = None
            if self.ref_gate > 0:
                peak = self.flow_fn.reduce(np.maximum(np.maximum(lin[..., 0], lin[..., 1]), lin[..., 2]))
            hit = (self.flow_fn.reduce(luma(lin)), peak, c.shape[:2])
            self.lumas.put(n, hit)
        return hit

    def useful_refs(self, k, code_k, refs: list) -> list:
        """The references of key k that pass the gate (all of them when ref_gate is 0), in order."""
        if self.ref_gate <= 0:
            return list(refs)
        return [(r, c) for r, c in refs
                if self._preflow(k, code_k, r, c, full_res=False, icam=True)[2] >= self.ref_gate]
