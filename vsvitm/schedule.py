"""Frame scheduling (global sampling, local propagation) as pure functions.

Everything here depends only on the frame number, the clip length, the parameters and the shot
boundaries (scene cuts) near that frame: that is what makes a frame's result independent of the
order in which frames are requested (previews match encodes; a film can be split across machines).

`cuts` is a sorted sequence of frame indices that start a new shot (frame 0 is implicit).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Schedule:
    num_frames: int
    key_stride: int = 6
    ref_stride: int = 15
    num_refs: int = 6          # references each way (up to 2 * num_refs in all)
    fcpm_keys: int = 5         # key-frame results warped into every frame (paper: five)
    chunk: int = 12            # FCPM recurrence chunk (fixed grid) ...
    margin: int = 6            # ... with this much overlap each side

    def __post_init__(self):
        for name in ("num_frames", "key_stride", "ref_stride", "chunk", "fcpm_keys"):
            if getattr(self, name) < 1:
                raise ValueError(f"vsvitm: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_refs", "margin"):
            if getattr(self, name) < 0:
                raise ValueError(f"vsvitm: {name} must be >= 0, got {getattr(self, name)}")

    # --- shots ---
    def shot(self, n: int, cuts: Sequence[int]) -> tuple[int, int]:
        """[start, end) of the shot holding frame n."""
        self._check(n)
        i = bisect.bisect_right(cuts, n)
        start = cuts[i - 1] if i > 0 else 0
        end = cuts[i] if i < len(cuts) else self.num_frames
        return max(0, start), min(self.num_frames, end)

    @property
    def reach(self) -> int:
        """How far (in frames) from n any part of n's plan looks: the cut window every stage needs."""
        # nearest_keys searches (fcpm_keys + 1) strides each way: at a shot start all keys lie on one side
        key_reach = (self.fcpm_keys + 1) * self.key_stride
        return max(self.num_refs * self.ref_stride, key_reach + self.chunk + self.margin) + 1

    # --- key frames (global sampling) ---
    def keys_in(self, start: int, end: int) -> list[int]:
        """Key frames of shot [start, end): GOP centres on the global grid; a short shot with no grid
        key gets its middle frame as its only key."""
        s = self.key_stride
        first = ((start - s // 2 + s - 1) // s) * s + s // 2
        keys = list(range(first, end, s))
        return keys or [(start + end - 1) // 2]

    def is_key(self, n: int, cuts: Sequence[int]) -> bool:
        return n in self.keys_in(*self.shot(n, cuts))

    def references(self, k: int, cuts: Sequence[int]) -> list[int]:
        """References of key frame k: k -/+ ref_stride * i, nearest first, past before future,
        inside the clip and inside k's shot."""
        start, end = self.shot(k, cuts)
        out = []
        for i in range(1, self.num_refs + 1):
            for r in (k - self.ref_stride * i, k + self.ref_stride * i):
                if start <= r < end:
                    out.append(r)
        return out

    def nearest_keys(self, t: int, cuts: Sequence[int]) -> list[int]:
        """The fcpm_keys key frames of t's shot nearest to t (ties to the earlier), in time order."""
        start, end = self.shot(t, cuts)
        s = self.key_stride
        lo, hi = max(start, t - (self.fcpm_keys + 1) * s), min(end, t + (self.fcpm_keys + 1) * s + 1)
        keys = [k for k in self.keys_in(start, end) if lo <= k < hi] or self.keys_in(start, end)
        keys = sorted(keys, key=lambda k: (abs(k - t), k))[: self.fcpm_keys]
        return sorted(keys)

    # --- FCPM chunks (local propagation) ---
    def chunk_of(self, t: int, cuts: Sequence[int]) -> tuple[int, int, int, int]:
        """(core_start, core_end, run_start, run_end) of the recurrence chunk that outputs frame t.

        Chunks sit on a fixed grid (t // chunk), cut at shot boundaries; the recurrence runs over
        the core plus `margin` frames each side so that chunk edges do not show.
        """
        start, end = self.shot(t, cuts)
        c = t // self.chunk
        core = (max(start, c * self.chunk), min(end, (c + 1) * self.chunk))
        run = (max(start, core[0] - self.margin), min(end, core[1] + self.margin))
        return core[0], core[1], run[0], run[1]

    def _check(self, n: int):
        if not 0 <= n < self.num_frames:
            raise IndexError(f"vsvitm: frame {n} outside the clip (0..{self.num_frames - 1})")
