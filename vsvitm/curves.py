"""Camera curves f and their inverses f^-1 (numpy), shared by the runtime and data synthesis.

Display-referred code values V in [0, 1] <-> linear light E in [0, 1] (1.0 = the camera's clip level).
"""
from __future__ import annotations

import numpy as np

TRANSFERS = ("gamma2.2", "srgb", "bt1886")


def check_transfer(name: str) -> str:
    if name not in TRANSFERS:
        raise ValueError(f"vsvitm: unknown transfer {name!r}; use one of {', '.join(TRANSFERS)}")
    return name


def to_linear(v: np.ndarray, transfer: str = "gamma2.2") -> np.ndarray:
    """f^-1: code value -> linear (inputs are clipped to [0, 1] first)."""
    v = np.clip(v, 0.0, 1.0)
    if transfer == "gamma2.2":
        return np.power(v, 2.2, dtype=np.float32)
    if transfer == "srgb":
        return np.where(v <= 0.04045, v / 12.92, np.power((v + 0.055) / 1.055, 2.4)).astype(np.float32)
    if transfer == "bt1886":
        return np.power(v, 2.4, dtype=np.float32)
    check_transfer(transfer)
    raise AssertionError


def from_linear(e: np.ndarray, transfer: str = "gamma2.2") -> np.ndarray:
    """f: linear -> code value (clips to [0, 1])."""
    e = np.clip(e, 0.0, 1.0)
    if transfer == "gamma2.2":
        return np.power(e, 1 / 2.2, dtype=np.float32)
    if transfer == "srgb":
        return np.where(e <= 0.0031308, e * 12.92, 1.055 * np.power(e, 1 / 2.4) - 0.055).astype(np.float32)
    if transfer == "bt1886":
        return np.power(e, 1 / 2.4, dtype=np.float32)
    check_transfer(transfer)
    raise AssertionError


def max_channel(a: np.ndarray) -> np.ndarray:
    """a.max(axis=-1) for 3 channels, exactly: elementwise maxima of the planes (np.max over a length-3
    last axis is ~25x slower)."""
    return np.maximum(np.maximum(a[..., 0], a[..., 1]), a[..., 2])


def overexposure_mask(v: np.ndarray, threshold: float = 0.95) -> np.ndarray:
    """Soft over-exposure mask alpha (HDRCNN) from display-referred code values, HxWx3 or ...x3."""
    m = max_channel(v)[..., None]
    return np.clip((m - threshold) / (1.0 - threshold), 0.0, 1.0).astype(np.float32)
