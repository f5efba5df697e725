"""Network input preparation (numpy), identical at training and run time."""
from __future__ import annotations

import numpy as np

from .curves import overexposure_mask, to_linear

MAX_REL = 64.0  # the largest exposure-relative value a reference can bring (6 stops)


def net_input(code: np.ndarray, transfer: str = "gamma2.2", ratio: float = 1.0, threshold: float = 0.95,
              out: np.ndarray | None = None) -> np.ndarray:
    """HxWx3 display-referred code values -> 4xHxW float32 network input (into `out` when given: a
    4xHxW float32 array or view, e.g. the inside of a padded buffer).

    Channels: (f^-1(L) * ratio) ** (1/2.2) (exposure-aligned, may exceed 1 for references) and the
    frame's own soft over-exposure mask (where this frame itself carries no information).
    """
    if out is None:
        out = np.empty((4,) + code.shape[:2], np.float32)   # written plane by plane: no HxWx3 temporaries
    # pow is monotone, so min(lin * r, MAX_REL) ** (1/2.2) = min(lin ** (1/2.2) * r ** (1/2.2), MAX_REL ** (1/2.2)),
    # and for gamma 2.2 lin ** (1/2.2) is the clipped code value itself: no pow at all (1080p: 55 -> 10 ms)
    scale = np.float32(np.float64(ratio) ** (1 / 2.2))
    top = np.float32(MAX_REL ** (1 / 2.2))
    for c in range(3):
        if transfer == "gamma2.2":
            np.clip(code[..., c], 0.0, 1.0, out=out[c])
        else:
            out[c] = np.power(to_linear(code[..., c], transfer), 1 / 2.2, dtype=np.float32)
        if scale != 1:
            np.multiply(out[c], scale, out=out[c])
            np.minimum(out[c], top, out=out[c])
    out[3] = overexposure_mask(code, threshold)[..., 0]
    return out


def padded_size(h: int, w: int, modulus: int) -> tuple[int, int]:
    """(h, w) rounded up to multiples of modulus."""
    return h + (-h) % modulus, w + (-w) % modulus


def fill_padded(dst: np.ndarray, h: int, w: int) -> np.ndarray:
    """Replicate the edges of dst[..., :h, :w] into the rest of dst (...xHpxWp): edge padding for
    buffers filled in place (the engine writes network inputs straight into them)."""
    if dst.shape[-1] > w:
        dst[..., :h, w:] = dst[..., :h, w - 1: w]
    if dst.shape[-2] > h:
        dst[..., h:, :] = dst[..., h - 1: h, :]
    return dst


def pad_to(x: np.ndarray, modulus: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad ...xHxW by edge replication up to multiples of modulus (x itself when already there)."""
    h, w = x.shape[-2:]
    hp, wp = padded_size(h, w, modulus)
    if (hp, wp) == (h, w):
        return x, (h, w)
    out = np.empty(x.shape[:-2] + (hp, wp), x.dtype)
    out[..., :h, :w] = x
    return fill_padded(out, h, w), (h, w)
