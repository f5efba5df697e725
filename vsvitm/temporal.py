"""Temporal correction: measured radiance from other frames on top of the single-frame reconstruction.

The default pipeline (``ITM(mode="temporal")``) reconstructs every frame alone (single-frame ICAM, S_t)
and then corrects S_t in its clipped channels where other frames *measured* the same scene point:

1. On a key frame k (``itm._temporal_stages``), each reference r (k +- ref_stride * i) is aligned to k
   (pre-flow k -> r) and brought to k's exposure (ratio r -> k). Where r's channel is unclipped at all
   four taps of the sample it is a measurement of k's clipped channel (``measure``). Measurements are
   trusted by how well r, so aligned, matches k where both are exposed (``alignment_weight``, local),
   and only when they lie at or above k's clip level (a value below it contradicts k's clipping:
   misalignment or a wrong ratio). The key's result moves towards their weighted mean log radiance by
   the confidence C = sum w / (sum w + w0) (``fuse``); ``radiance_map`` makes what is carried.
2. Every frame t takes the radiance maps of its key frames before and after it (k's own measurements
   where k is unclipped, k's result where it is clipped, each with its trust), aligned and brought to
   t's exposure the same way, weighted by closeness in time (``carried``, then ``fuse``).

Without evidence (no reference sees the point, or nothing aligns) the weights are zero and the result
is exactly S_t: the correction can only replace the single-frame guess by what was measured. Every
weight is a smooth function of the inputs (soft clip masks, blurred alignment error, a soft frame
border, confidence blurred over the clipped region), so the region where the correction acts has no
hard edge.

All functions work on HxWx3 float32 arrays (linear light, 1.0 = the input's white) and HxWx2 flows
(a -> b: a(p) ~ b(p + flow[p])).
"""
from __future__ import annotations

import cv2
import numpy as np

from .curves import max_channel
from .flow import luma

LOG_EPS = 1e-4
CLIP_SOFT = 0.04       # channel mask ramps over code values [threshold - CLIP_SOFT, threshold]
ALIGN_SIGMA = 0.3      # log-luma error (local mean) at which a measurement's alignment weight is 1/e
ALIGN_CELL = 8         # alignment error is pooled over cells of this many pixels, then blurred
ALIGN_BLUR = 2.0       # ... with a Gaussian of this many cells
BORDER = 4.0           # pixels: a warp's weight ramps from 0 at the frame border to 1 this far inside
CONFIDENCE_W0 = 0.25   # C = sum w / (sum w + w0): one fully trusted measurement gives 0.8
LEVEL_LO = 0.8         # a measurement of a clipped channel counts from LEVEL_LO x clip level ...
SMOOTH = 0.03          # confidence is blurred over this share of the frame's longer side


def smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    """0 below lo, 1 above hi, a C1 ramp between (float32)."""
    t = np.clip((x - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0).astype(np.float32, copy=False)
    return t * t * (3.0 - 2.0 * t)


def clipped_weight(code: np.ndarray, threshold: float) -> np.ndarray:
    """Per channel, how clipped the code value is: 0 below threshold - CLIP_SOFT, 1 at threshold."""
    return smoothstep(threshold - CLIP_SOFT, threshold, code)


def _targets(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The coordinates (x, y), HxW each, that a flow (HxWx2, pixels) sends each pixel to."""
    h, w = flow.shape[:2]
    return np.arange(w, dtype=np.float32)[None, :] + flow[..., 0], np.arange(h, dtype=np.float32)[:, None] + flow[..., 1]


def _inside(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """HxW soft weight of (xs, ys) landing inside the frame: 0 outside, ramping to 1 BORDER pixels in."""
    h, w = xs.shape
    return (np.clip(np.minimum(xs, (w - 1) - xs) / BORDER + 1 / BORDER, 0, 1)
            * np.clip(np.minimum(ys, (h - 1) - ys) / BORDER + 1 / BORDER, 0, 1)).astype(np.float32)


def remap(x: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x sampled at p + flow[p], bilinear, edges replicated; soft weight of landing inside the frame).

    x: HxW or HxWxC; flow: HxWx2 (pixels)."""
    xs, ys = _targets(flow)
    return cv2.remap(x, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), _inside(xs, ys)


def _pool(x: np.ndarray, cells: tuple[int, int]) -> np.ndarray:
    return cv2.resize(x, (cells[1], cells[0]), interpolation=cv2.INTER_AREA)


def alignment_weight(lin_a: np.ndarray, lin_b_at_a: np.ndarray, code_a: np.ndarray, code_b_at_a: np.ndarray,
                     threshold: float) -> np.ndarray:
    """HxW trust in [0, 1] of frame b aligned to a (and brought to a's exposure): exp(-(e / ALIGN_SIGMA)^2)
    with e the local mean |log luma a - log luma b| over pixels both frames expose well (code 0.25 to
    threshold - CLIP_SOFT), pooled in ALIGN_CELL cells and blurred; where no pixel near qualifies,
    the frame's median error stands in.

    lin_a, lin_b_at_a: HxWx3 linear; code_a, code_b_at_a: HxWx3 code values at the same pixels."""
    h, w = lin_a.shape[:2]
    ma, mb = max_channel(code_a), max_channel(code_b_at_a)
    good = ((ma < threshold - CLIP_SOFT) & (mb < threshold - CLIP_SOFT) & (ma > 0.25) & (mb > 0.25)).astype(np.float32)
    err = np.abs(np.log(luma(lin_a) + LOG_EPS) - np.log(luma(lin_b_at_a) + LOG_EPS)).astype(np.float32)
    np.minimum(err, 2.0, out=err)
    cells = (max(1, -(-h // ALIGN_CELL)), max(1, -(-w // ALIGN_CELL)))
    num, den = _pool(err * good, cells), _pool(good, cells)
    if num.ndim == 1 or min(cells) < 2:
        num, den = num.reshape(cells), den.reshape(cells)
    num = cv2.GaussianBlur(num, (0, 0), ALIGN_BLUR, borderType=cv2.BORDER_REPLICATE)
    den = cv2.GaussianBlur(den, (0, 0), ALIGN_BLUR, borderType=cv2.BORDER_REPLICATE)
    fallback = float(np.median(err[good > 0])) if good.any() else 1.0
    support = np.clip(den * 20.0, 0.0, 1.0)      # 5 % of a cell's pixels well exposed: full support
    local = num / np.maximum(den, 1e-6)
    e = support * local + (1.0 - support) * fallback
    wgt = np.exp(-(e / ALIGN_SIGMA) ** 2).astype(np.float32)
    return cv2.resize(wgt, (w, h), interpolation=cv2.INTER_LINEAR)


def measure(code_a: np.ndarray, lin_a: np.ndarray, code_b: np.ndarray, lin_b: np.ndarray, flow: np.ndarray,
            ratio: float, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """What frame b measures of frame a: (b's radiance at a's pixels and exposure, HxWx3; weight HxWx3).

    The weight is b's channel being unclipped at all four taps of the sample (tap_clipping) x landing
    inside b x the alignment weight. flow: a -> b; ratio: b -> a (b's linear values x ratio are at
    a's exposure)."""
    m, inside = remap(lin_b, flow)
    m *= np.float32(ratio)
    cb, _ = remap(code_b, flow)
    wgt = 1.0 - tap_clipping(code_b, flow, threshold)
    wgt *= (inside * alignment_weight(lin_a, m, code_a, cb, threshold))[..., None]
    return m, wgt


def tap_clipping(code: np.ndarray, flow: np.ndarray, threshold: float) -> np.ndarray:
    """HxWx3: per channel, the most clipped of the four pixels a bilinear sample at p + flow[p] reads: a
    sample is a measurement only when none of its taps is clipped (between a clipped lamp and a dark
    pixel it reads an unclipped value that nothing measured)."""
    c = clipped_weight(code, threshold)
    d = c.copy()
    np.maximum(d[:-1], c[1:], out=d[:-1])
    np.maximum(d[:, :-1], d[:, 1:].copy(), out=d[:, :-1])   # d[i, j] = max of c[i:i+2, j:j+2]
    xs, ys = _targets(flow)
    return cv2.remap(d, np.floor(xs), np.floor(ys), cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)


def coverage(flows: list[np.ndarray]) -> np.ndarray:
    """HxW: how far inside at least one of the frames the flows point into each pixel lands (remap's
    soft border weight, the largest over the flows); 0 where no frame sees the pixel at all."""
    out = np.zeros(flows[0].shape[:2], np.float32)
    for f in flows:
        np.maximum(out, _inside(*_targets(f)), out=out)
    return out


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of HxW or HxWxC with a large sigma, done at a reduced size (a sigma of ~2 px there)
    and brought back: the same fade at a fraction of the cost."""
    h, w = x.shape[:2]
    f = max(1.0, sigma / 2.0)
    if f <= 1.5:
        return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    small = cv2.resize(x, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / f, borderType=cv2.BORDER_REPLICATE)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return out.reshape(x.shape)


def smooth_confidence(conf: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Confidence (HxW or HxWxC) blurred (Gaussian, SMOOTH of the frame's longer side) and never raised:
    where the evidence ends, the correction fades out over a few pixels instead of stopping at an edge.
    where: HxW weights of the pixels the blur averages over (the clipped ones), so that pixels that need
    no correction do not fade the rim of a clipped region."""
    sigma = max(1.0, SMOOTH * max(conf.shape[:2]))
    wb = where[..., None] if conf.ndim == 3 else where
    num = _blur(conf * wb, sigma)
    den = _blur(where, sigma)
    den = den[..., None] if conf.ndim == 3 else den
    return np.minimum(conf, np.where(den > 1e-3, num / np.maximum(den, 1e-3), conf))


def fuse(base: np.ndarray, lin: np.ndarray, code: np.ndarray, clip_level: float, threshold: float,
         measurements: list[tuple[np.ndarray, np.ndarray]], w0: float | None = CONFIDENCE_W0
         ) -> tuple[np.ndarray, np.ndarray]:
    """A frame's result from its single-frame guess and measurements: (Y HxWx3 >= lin, confidence HxWx3).

    Per channel, in clipped channels (soft, clipped_weight s): log Y = log base + c x (mean log m -
    log base), the mean weighted by each measurement's weight x (m at or above the clip level:
    LEVEL_LO..1 x clip_level ramps in), c the smoothed confidence (smooth_confidence) x s. A clipped
    channel with less confidence than the pixel's most confident one follows, for the difference, the
    pixel's confidence-weighted mean log change (raising only): a measurement of two channels does
    not leave the third at the single-frame guess and tint the pixel. Where no channel has
    confidence, Y is base exactly.
    base: single-frame result; lin: f^-1(L); code: the frame's code values; measurements: (m, weight),
    HxWx3 each; w0: c = sum w / (sum w + w0); None: the weights are confidences already (carried key
    maps), c = min(sum w, 1)."""
    if not measurements:
        return np.maximum(base, lin), np.zeros_like(base)
    s = clipped_weight(code, threshold)
    num = np.zeros_like(base)
    den = np.zeros_like(base)
    lo = LEVEL_LO * clip_level
    for m, wgt in measurements:
        w = wgt * smoothstep(lo, clip_level, m)
        num += w * np.log(m + LOG_EPS)
        den += w
    conf = den / (den + np.float32(w0)) if w0 is not None else np.minimum(den, 1.0)
    conf = smooth_confidence(conf.astype(np.float32), max_channel(s)) * s
    logb = np.log(base + LOG_EPS)
    step = np.where(den > 0, num / np.maximum(den, 1e-12) - logb, 0.0)
    top = max_channel(conf)[..., None]
    mean_step = np.maximum((conf * step).sum(-1, keepdims=True) / np.maximum(conf.sum(-1, keepdims=True), 1e-12), 0.0)
    shift = conf * step + (top - conf) * s * mean_step
    y = np.exp(logb + shift) - LOG_EPS
    y = np.where(top > 0, y, base)
    return np.maximum(y, lin).astype(np.float32), conf.astype(np.float32)


def radiance_map(y: np.ndarray, lin: np.ndarray, code: np.ndarray, conf: np.ndarray,
                 threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """A key frame's radiance and trust per channel, for carrying to other frames: its own measurement
    f^-1(L) where unclipped (trust 1), its result Y where clipped (trust: Y's confidence, or the
    pixel's most confident channel's where Y's channel followed it)."""
    s = clipped_weight(code, threshold)
    rad = np.exp((1.0 - s) * np.log(lin + LOG_EPS) + s * np.log(y + LOG_EPS)) - LOG_EPS
    c = np.maximum(conf, max_channel(conf)[..., None] * s)
    return rad.astype(np.float32), (1.0 - s + s * c).astype(np.float32)


def carried(code_t: np.ndarray, lin_t: np.ndarray, threshold: float,
            keys: list[tuple[float, np.ndarray | None, float, np.ndarray, np.ndarray, np.ndarray]]
            ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Measurements (m, weight), HxWx3 each, that key frames' radiance maps give frame t, for fuse().

    keys: (time weight (the keys' weights sum to 1), flow t -> k (None: k is t), ratio k -> t, the key's
    code values, radiance and trust (radiance_map))."""
    ms = []
    for wt, flow, ratio, code_k, rad_k, trust_k in keys:
        if wt <= 0:
            continue
        if flow is None:
            ms.append((rad_k * np.float32(ratio), trust_k * np.float32(wt)))
            continue
        m, inside = remap(rad_k, flow)
        m *= np.float32(ratio)
        tr, _ = remap(cv2.erode(trust_k, np.ones((3, 3), np.uint8)), flow)
        ck, _ = remap(code_k, flow)
        # where the key is unclipped its radiance map is its own f^-1(L): alignment is judged there
        a = alignment_weight(lin_t, m, code_t, ck, threshold)
        ms.append((m, tr * (inside * a * np.float32(wt))[..., None]))
    return ms
