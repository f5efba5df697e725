"""Network input preparation (numpy), identical at training and run time."""
from __future__ import annotations

import numpy as np

from .curves import overexposure_mask, to_linear

MAX_REL = 64.0  # the largest exposure-relative value a reference can bring (6 stops)


def net_input(code: np.ndarray, transfer: str = "gamma2.2", ratio: float = 1.0, threshold: float = 0.95) -> np.ndarray:
    """HxWx3 display-referred code values -> 4xHxW float32 network input.

    Channels: (f^-1(L) * ratio) ** (1/2.2) (exposure-aligned, may exceed 1 for references) and the
    frame's own soft over-exposure mask (where this frame itself carries no information).
    """
    lin = to_linear(code, transfer) * np.float32(ratio)
    out = np.empty((4,) + code.shape[:2], np.float32)   # written channels-first: no concatenate + transpose copy
    out[:3] = np.power(np.minimum(lin, MAX_REL), 1 / 2.2, dtype=np.float32).transpose(2, 0, 1)
    out[3] = overexposure_mask(code, threshold)[..., 0]
    return out


def pad_to(x: np.ndarray, modulus: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad CxHxW (or HxWxC when channels_last) by edge replication up to multiples of modulus."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % modulus, (-w) % modulus
    if ph == 0 and pw == 0:
        return x, (h, w)
    pad = [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(x, pad, mode="edge"), (h, w)
