"""Evaluation metrics for LDR -> HDR video (numpy only; cvvdp optional and imported lazily).

Conventions
-----------
* Images are linear BT.709 RGB arrays ``[..., H, W, 3]`` on the project's relative scale
  (1.0 = the LDR clip level / SDR white).  ``scale`` maps that to absolute luminance:
  ``scale=100`` puts 1.0 at 100 cd/m^2 (the evaluation's convention).
* Luminance ``Y = 0.2126 R + 0.7152 G + 0.0722 B`` (BT.709).

PU21
----
``pu21_encode`` is the PU21 perceptually uniform encoding of Mantiuk & Azimi, "PU21: A novel
perceptually uniform encoding for adapting existing quality metrics for HDR", Picture Coding
Symposium 2021, with the recommended ``banding_glare`` parameters, transcribed from the authors'
reference code (github.com/gfxdisp/pu21, ``matlab/pu21_encoder.m`` and ``pytorch/pu21_encoder.py``)::

    V = p7 * (((p1 + p2 * Y^p4) / (1 + p3 * Y^p4))^p5 - p6),   Y clamped to [0.005, 10000] cd/m^2

It maps 0.005 cd/m^2 to ~0, 100 cd/m^2 to ~256.4 and 10000 cd/m^2 to ~595.4.  The reference
``pu21_metric('PSNR')`` encodes each RGB channel and calls ``psnr(P_test, P_ref, 256)``, i.e. the
peak is **256** (the PU value of ~100 cd/m^2, the top of an SDR display), not PU(10000); we follow
it.  (With peak = PU(10000) every PSNR would be 20*log10(595.39/256) = +7.33 dB higher.)
"""
from __future__ import annotations

import math

import numpy as np

# PU21 'banding_glare' parameters p1..p7 (gfxdisp/pu21, "updated on 06/02/2020").
PU21_BANDING_GLARE = (0.353487901, 0.3734658629, 8.277049286e-05, 0.9062562627,
                      0.09150303166, 0.9099517204, 596.3148142)
PU21_L_MIN = 0.005
PU21_L_MAX = 10000.0
PU21_PSNR_PEAK = 256.0  # peak used by the reference pu21_metric's PSNR

BT709_Y = np.array([0.2126, 0.7152, 0.0722])

# Linear BT.709 -> BT.2020 primaries (ITU-R BT.2087, table 2).
_BT709_TO_BT2020 = np.array([[0.6274, 0.3293, 0.0433],
                             [0.0691, 0.9195, 0.0114],
                             [0.0164, 0.0880, 0.8956]])


def luminance(rgb: np.ndarray) -> np.ndarray:
    """BT.709 luminance of a linear RGB array [..., 3] -> [...] (float64)."""
    return np.asarray(rgb, dtype=np.float64) @ BT709_Y


def pu21_encode(Y_cd_m2) -> np.ndarray:
    """PU21 ('banding_glare') of absolute linear values in cd/m^2 (luminance or per-channel radiance).

    Values are clamped to [0.005, 10000] cd/m^2 (as the reference encoder does, silently here).
    Returns float64 PU values, ~0 at 0.005 cd/m^2, ~256 at 100 cd/m^2, ~595 at 10000 cd/m^2.
    """
    p1, p2, p3, p4, p5, p6, p7 = PU21_BANDING_GLARE
    Y = np.clip(np.asarray(Y_cd_m2, dtype=np.float64), PU21_L_MIN, PU21_L_MAX)
    t = Y ** p4
    return p7 * (((p1 + p2 * t) / (1.0 + p3 * t)) ** p5 - p6)


def pu21_decode(V) -> np.ndarray:
    """Inverse of :func:`pu21_encode` (reference ``decode``)."""
    p1, p2, p3, p4, p5, p6, p7 = PU21_BANDING_GLARE
    V = np.asarray(V, dtype=np.float64)
    vp = np.maximum(V / p7 + p6, 0.0) ** (1.0 / p5)
    return (np.maximum(vp - p1, 0.0) / (p2 - p3 * vp)) ** (1.0 / p4)


def _pu(img: np.ndarray, scale: float, channels: str) -> np.ndarray:
    img = np.asarray(img, dtype=np.float64)
    if channels == "rgb":
        return pu21_encode(img * scale)
    if channels == "y":
        return pu21_encode(luminance(img) * scale)[..., None]
    raise ValueError(f"channels must be 'rgb' or 'y', got {channels!r}")


def _expand_mask(mask, shape) -> np.ndarray:
    """Bool mask [..., H, W] (or [..., H, W, 1]) -> broadcastable to an image [..., H, W, C]."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim == len(shape) - 1:
        mask = mask[..., None]
    return np.broadcast_to(mask, shape)


def pu21_psnr(pred, gt, mask=None, scale: float = 100.0, peak: float = PU21_PSNR_PEAK,
              channels: str = "rgb") -> float:
    """PU21-PSNR in dB of ``pred`` against ``gt`` (linear RGB [..., H, W, 3], 1.0 = ``scale`` cd/m^2).

    As the reference ``pu21_metric(..., 'PSNR')``: each RGB channel is PU21-encoded and
    PSNR = 10 log10(peak^2 / MSE) with peak 256 (``channels="y"`` gives the reference 'PSNRY',
    luminance only).  Leading dims (e.g. a sequence [T, H, W, 3]) are pooled into one MSE.
    ``mask`` (bool [..., H, W]) restricts the MSE to those pixels (e.g. over-exposed ones).
    Returns ``inf`` for identical inputs and ``nan`` when the mask selects nothing.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pu21_psnr: shape mismatch {pred.shape} vs {gt.shape}")
    d2 = (_pu(pred, scale, channels) - _pu(gt, scale, channels)) ** 2
    if mask is not None:
        m = _expand_mask(mask, gt.shape[:-1] + (d2.shape[-1],))
        if not m.any():
            return float("nan")
        mse = float(d2[m].mean())
    else:
        mse = float(d2.mean())
    if mse == 0.0:
        return float("inf")
    return 10.0 * math.log10(peak * peak / mse)


def log_l1(pred, gt, mask=None, eps: float = 1e-4) -> float:
    """Mean |log(pred + eps) - log(gt + eps)| over the RGB values of the masked pixels.

    Scale-relative (1.0 = clip level); negative values are clipped to 0 first.  ``nan`` for an empty mask.
    """
    pred = np.maximum(np.asarray(pred, dtype=np.float64), 0.0)
    gt = np.maximum(np.asarray(gt, dtype=np.float64), 0.0)
    if pred.shape != gt.shape:
        raise ValueError(f"log_l1: shape mismatch {pred.shape} vs {gt.shape}")
    d = np.abs(np.log(pred + eps) - np.log(gt + eps))
    if mask is not None:
        m = _expand_mask(mask, d.shape)
        if not m.any():
            return float("nan")
        return float(d[m].mean())
    return float(d.mean())


def temporal_consistency(pred_seq, gt_seq, scale: float = 100.0) -> float:
    """Temporal consistency error (lower is better; 0 = the prediction changes exactly as the truth does).

    TC = mean_{t=1..T-1} mean_pixels | (P(pred_t) - P(pred_{t-1})) - (P(gt_t) - P(gt_{t-1})) |
    with P = PU21 of the BT.709 luminance in cd/m^2 (1.0 = ``scale``).  Units: PU21 steps
    (~256 span 0.005..100 cd/m^2).  A static error (same bias every frame) gives 0; flicker
    (a frame-to-frame change of the error) gives a positive value.  ``nan`` for T < 2.
    """
    pred_seq = np.asarray(pred_seq)
    gt_seq = np.asarray(gt_seq)
    if pred_seq.shape != gt_seq.shape or pred_seq.ndim != 4:
        raise ValueError(f"temporal_consistency: need equal [T,H,W,3], got {pred_seq.shape} vs {gt_seq.shape}")
    if pred_seq.shape[0] < 2:
        return float("nan")
    total = 0.0
    prev_p = prev_g = None
    for t in range(pred_seq.shape[0]):  # frame by frame: bounded memory for long sequences
        p = pu21_encode(luminance(pred_seq[t]) * scale)
        g = pu21_encode(luminance(gt_seq[t]) * scale)
        if prev_p is not None:
            total += float(np.abs((p - prev_p) - (g - prev_g)).mean())
        prev_p, prev_g = p, g
    return total / (pred_seq.shape[0] - 1)


def overexposed_mask(ldr, threshold: float = 0.95) -> np.ndarray:
    """Bool mask [..., H, W]: max channel of the display-referred LDR >= ``threshold``.

    ``ldr`` is uint8 (0..255), uint16 (0..65535) or float in [0, 1], shape [..., H, W, 3].
    """
    ldr = np.asarray(ldr)
    if ldr.dtype == np.uint8:
        v = ldr.astype(np.float32) / 255.0
    elif ldr.dtype == np.uint16:
        v = ldr.astype(np.float32) / 65535.0
    else:
        v = ldr.astype(np.float32)
    return v.max(axis=-1) >= threshold


def cvvdp_jod(pred_seq, gt_seq, fps: float = 24.0, scale: float = 100.0,
              display: str = "standard_hdr_pq", device=None):
    """ColorVideoVDP quality in JOD (10 = identical; higher is better), or ``None`` if pycvvdp is missing.

    Inputs are linear BT.709 [T, H, W, 3] (or [H, W, 3]) with 1.0 = ``scale`` cd/m^2.  For the
    ``standard_hdr_pq`` display (BT.2020-PQ, 1500 cd/m^2 peak) they are converted to BT.2020
    primaries and PQ-encoded to 0..1 (``pycvvdp.display_model.lin2pq`` of cd/m^2), as that display model
    expects (raw cd/m^2 would be clamped and give a meaningless score).  For a
    ``*_linear`` display the absolute BT.709 values are passed as they are.
    """
    try:
        import torch
        import pycvvdp
        from pycvvdp.display_model import lin2pq
    except Exception:  # ImportError, or a broken torch install
        return None
    pred = np.asarray(pred_seq, dtype=np.float32)
    gt = np.asarray(gt_seq, dtype=np.float32)
    if pred.shape != gt.shape:
        raise ValueError(f"cvvdp_jod: shape mismatch {pred.shape} vs {gt.shape}")
    if pred.ndim == 3:
        pred, gt = pred[None], gt[None]

    def prep(x: np.ndarray):
        x = np.maximum(x, 0.0) * scale
        if display.endswith("_pq"):
            x = np.maximum(x @ _BT709_TO_BT2020.T.astype(np.float32), 0.0)
            return lin2pq(torch.from_numpy(np.ascontiguousarray(x)))
        return torch.from_numpy(np.ascontiguousarray(x))

    device = device or torch.device("cpu")
    metric = pycvvdp.cvvdp(display_name=display, device=device, quiet=True)
    with torch.no_grad():
        q, _ = metric.predict(prep(pred), prep(gt), dim_order="FHWC",
                              frames_per_second=float(fps) if pred.shape[0] > 1 else 0)
    return float(q)
