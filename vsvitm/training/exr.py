"""Minimal OpenEXR I/O (the OpenEXR python package; cv2 here is built without EXR support)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _clean(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    np.maximum(a, 0.0, out=a)
    return a


def read_exr(path: str | Path) -> np.ndarray:
    """Linear RGB float32 HxWx3; NaN/Inf/negatives -> 0. Alpha is dropped; multi-view files give 'RGB'."""
    import OpenEXR

    with OpenEXR.File(str(path)) as f:
        ch = f.channels()
        for key in ("RGB", "RGBA"):
            if key in ch:
                px = np.asarray(ch[key].pixels)
                if px.ndim == 2:
                    px = np.repeat(px[..., None], 3, axis=2)
                return _clean(px[..., :3])
        if all(k in ch for k in ("R", "G", "B")):
            return _clean(np.stack([np.asarray(ch[k].pixels) for k in ("R", "G", "B")], axis=-1))
        if "Y" in ch:  # luminance-only
            y = np.asarray(ch["Y"].pixels)
            return _clean(np.repeat(y[..., None], 3, axis=2))
        # Anything else: first 3-channel entry (e.g. a view name).
        for v in ch.values():
            px = np.asarray(v.pixels)
            if px.ndim == 3 and px.shape[2] >= 3:
                return _clean(px[..., :3])
    raise ValueError(f"vsvitm: no RGB channels in {path}")


def write_exr(path: str | Path, arr: np.ndarray) -> None:
    """Write HxWx3 linear RGB as half float (ZIP compression)."""
    import OpenEXR

    a = np.ascontiguousarray(np.asarray(arr, dtype=np.float16)[..., :3])
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"RGB": a}) as f:
        f.write(str(path))
