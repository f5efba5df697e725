"""Saved sequences (.npz from vsvitm-synthesize and vsvitm-make-devset) with the live sequences'
render/flow API, and how much of a sequence's clipping other frames can fill (clue_share)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .synth import SequenceBase


class NpzSequence(SequenceBase):
    """A saved sequence (vsvitm-synthesize, vsvitm-make-devset) with the live render/flow API."""

    def __init__(self, path: str | Path):
        """path: the .npz file (CameraSequence.to_npz_dict)."""
        d = np.load(str(path), allow_pickle=False)
        self.path = str(path)
        self.ldr = d["ldr"]
        self.hdr = d["hdr"]
        self.exposure = d["exposure"].astype(np.float32)
        self.homographies = d["homography"].astype(np.float64)
        self.src_index = d["src_index"]
        self.is_video = bool(d["is_video"])
        self.transfer = str(d["transfer"])
        self.name = str(d["source"])
        self.n_frames = int(self.ldr.shape[0])
        self.size = (int(self.ldr.shape[1]), int(self.ldr.shape[2]))

    def _radiance(self, t: int) -> np.ndarray:
        return self.hdr[t].astype(np.float32) / self.exposure[t]

    def render(self, indices: Sequence[int]) -> dict:
        """ldr uint8 [n, H, W, 3] and hdr float32 [n, H, W, 3] of these frames, as saved.

        indices: the frames.
        """
        idx = [int(i) for i in indices]
        return {"ldr": self.ldr[idx], "hdr": self.hdr[idx].astype(np.float32)}


def load_npz_sequence(path: str | Path) -> NpzSequence:
    """A saved sequence.

    path: the .npz file.
    """
    return NpzSequence(path)


def clue_share(seq, t: int, radius: int = 90, stride: int = 15) -> float:
    """Fraction of frame t's clipped pixels (max channel >= 250) that some frame t +- stride*i within
    ``radius`` shows unclipped (max channel <= 240 at the GT-flow location, inside that frame).
    NaN when frame t has no clipped pixels.

    seq: a live or saved sequence.
    t: the frame.
    radius: how far the other frames reach, frames.
    stride: frames between the other frames.
    """
    refs = [t + s * stride * i for i in range(1, radius // stride + 1) for s in (-1, 1)]
    refs = [r for r in refs if 0 <= r < seq.n_frames]
    fr = seq.render([t] + refs)
    mx = fr["ldr"].max(axis=-1)
    clipped = mx[0] >= 250
    if not clipped.any():
        return float("nan")
    h, w = clipped.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    seen = np.zeros_like(clipped)
    for j, r in enumerate(refs):
        f, valid = seq.flow(t, r)
        m = cv2.remap(mx[j + 1], xs + f[..., 0], ys + f[..., 1], cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                      borderValue=255)
        seen |= valid & (m <= 240)
    return float((seen & clipped).sum() / clipped.sum())


def clipped_share(ldr: np.ndarray) -> float:
    """Share of pixels whose largest channel is clipped (>= 250).

    ldr: uint8 [..., 3].
    """
    return float((np.asarray(ldr).max(axis=-1) >= 250).mean())
