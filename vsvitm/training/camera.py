"""The synthetic camera's parts: camera curves (CRFs), smooth random paths, homography warps from a
source pyramid, and the ground-truth flow between two frames (exact from the homographies, refined by DIS
for video sources)."""
from __future__ import annotations

import math

import cv2
import numpy as np

from ..curves import from_linear, to_linear
from .sources import luminance


def crf(name: str, e: np.ndarray) -> np.ndarray:
    """Camera curve f: linear [0, 1] -> code value [0, 1].

    name: the curve ("gamma2.2", "srgb", "bt1886", "gammaG", "filmicK").
    e: linear exposure.
    """
    e = np.clip(e, 0.0, 1.0).astype(np.float32, copy=False)
    if name in ("gamma2.2", "srgb", "bt1886"):
        return from_linear(e, name)
    if name.startswith("gamma"):
        return np.power(e, np.float32(1.0 / float(name[5:])))
    if name.startswith("filmic"):
        k = np.float32(name[6:])
        x = np.power(e, np.float32(1 / 2.2))
        return x * (1 + k) / (x + k)
    raise ValueError(f"vsvitm: unknown camera curve {name!r}")


def crf_inverse(name: str, v: np.ndarray) -> np.ndarray:
    """f^-1: code value [0, 1] -> linear [0, 1].

    name: the curve (as crf).
    v: code values.
    """
    v = np.clip(v, 0.0, 1.0).astype(np.float32, copy=False)
    if name in ("gamma2.2", "srgb", "bt1886"):
        return to_linear(v, name)
    if name.startswith("gamma"):
        return np.power(v, np.float32(float(name[5:])))
    if name.startswith("filmic"):
        k = np.float32(name[6:])
        x = v * k / (1 + k - v)
        return np.power(x, np.float32(2.2))
    raise ValueError(f"vsvitm: unknown camera curve {name!r}")


def random_transfer(rng: np.random.Generator) -> str:
    """A camera curve's name: gamma 2.2 70 % of the time, else sRGB, gamma 1.8..2.6 or a filmic S-curve.

    rng: the random generator.
    """
    u = rng.random()
    if u < 0.7:
        return "gamma2.2"
    if u < 0.8:
        return "srgb"
    if u < 0.9:
        return f"gamma{rng.uniform(1.8, 2.6):.2f}"
    return f"filmic{rng.uniform(0.3, 1.5):.2f}"


# --------------------------------------------------------------------------------------------
# Geometry helpers


def smooth_path(rng: np.random.Generator, n: int, periods=(60.0, 800.0), k: int = 3) -> np.ndarray:
    """Sum of k low-frequency sinusoids, in [-1, 1]: a smooth random path over n frames.

    rng: the random generator.
    n: frames.
    periods: the range of the sinusoids' periods, frames (drawn log-uniformly).
    k: how many sinusoids.
    """
    t = np.arange(n, dtype=np.float64)
    a = rng.uniform(0.2, 1.0, k)
    a /= a.sum()
    per = np.exp(rng.uniform(math.log(periods[0]), math.log(periods[1]), k))
    ph = rng.uniform(0, 2 * math.pi, k)
    return (a[:, None] * np.sin(2 * math.pi * t[None] / per[:, None] + ph[:, None])).sum(0)


def translation(x: float, y: float) -> np.ndarray:
    """The 3x3 homography of a shift by (x, y).

    x: horizontal shift, pixels.
    y: vertical shift, pixels.
    """
    return np.array([[1, 0, x], [0, 1, y], [0, 0, 1]], np.float64)


def _level_matrix(L: int) -> np.ndarray:
    f = 2.0 ** L
    o = (f - 1) / (2 * f)
    return np.array([[1 / f, 0, -o], [0, 1 / f, -o], [0, 0, 1]], np.float64)


def local_scale(H: np.ndarray, h: int, w: int) -> float:
    """Source pixels per output pixel at the output centre.

    H: the homography, output pixel -> source pixel.
    h: output height.
    w: output width.
    """
    cx, cy = (w - 1) / 2, (h - 1) / 2
    p = H @ np.array([[cx, cx + 1, cx], [cy, cy, cy + 1], [1, 1, 1]], np.float64)
    p = p[:2] / p[2]
    a, b = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    return math.sqrt(abs(a[0] * b[1] - a[1] * b[0]))


def warp(pyr: list[np.ndarray], H: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Render output pixels (x, y) from source position H @ (x, y, 1), prefiltered via the pyramid.

    pyr: the source's pyramid (Source.pyramid).
    H: the homography, output pixel -> source pixel.
    size: output (height, width).
    """
    h, w = size
    s = local_scale(H, h, w)
    L = int(min(max(math.floor(math.log2(max(s, 1e-6))), 0), len(pyr) - 1))
    M = _level_matrix(L) @ H if L else H
    return cv2.warpPerspective(pyr[L], M, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)


def camera_flow(Ht: np.ndarray, Hr: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Flow of a static scene: output pixel p of frame t shows source point Ht p, seen at Hr^-1 Ht p in r;
    (flow float32 [H, W, 2], bool mask "lands inside frame r").

    Ht: frame t's homography, output pixel -> source pixel.
    Hr: frame r's.
    size: output (height, width).
    """
    h, w = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    P = np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)])
    Q = np.linalg.inv(Hr) @ (Ht @ P)
    z = Q[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        qx, qy = Q[0] / z, Q[1] / z
    flow = np.stack([qx - P[0], qy - P[1]], -1).reshape(h, w, 2)
    e = 1e-3  # round-off
    valid = ((z > 0) & (qx >= -e) & (qx <= w - 1 + e) & (qy >= -e) & (qy <= h - 1 + e)).reshape(h, w)
    flow = np.nan_to_num(flow, nan=0.0, posinf=0.0, neginf=0.0)
    return flow.astype(np.float32), valid


def _to8(y: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((np.log2(y + 1e-6) - lo) * (255.0 / max(hi - lo, 1e-3)), 0, 255).astype(np.uint8)


_DIS = None


def _dis():
    global _DIS
    if _DIS is None:
        _DIS = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return _DIS


def refined_flow(rad_t: np.ndarray, rad_r: np.ndarray, init_tr: np.ndarray, init_rt: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """DIS flow t->r on log luminance of noise-free radiance, initialised with the camera flow;
    mask = lands inside frame r and forward-backward consistent.

    rad_t: frame t's radiance, linear RGB.
    rad_r: frame r's.
    init_tr: the camera flow t -> r.
    init_rt: the camera flow r -> t.
    """
    h, w = rad_t.shape[:2]
    yt, yr = luminance(rad_t), luminance(rad_r)
    both = np.concatenate([np.log2(yt[::4, ::4].ravel() + 1e-6), np.log2(yr[::4, ::4].ravel() + 1e-6)])
    lo, hi = np.percentile(both, [0.5, 99.9])
    a, b = _to8(yt, lo, hi), _to8(yr, lo, hi)
    dis = _dis()
    f_tr = dis.calc(a, b, init_tr.copy())
    f_rt = dis.calc(b, a, init_rt.copy())
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    mx, my = xs + f_tr[..., 0], ys + f_tr[..., 1]
    back = cv2.remap(f_rt, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    err = np.linalg.norm(f_tr + back, axis=-1)
    mag = np.linalg.norm(f_tr, axis=-1)
    valid = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1) & (err < 1.0 + 0.05 * mag)
    return f_tr.astype(np.float32), valid
