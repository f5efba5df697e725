"""Building blocks shared by the ICAM and FCPM networks (torch, export-friendly: no custom ops)."""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F


EPS = 1e-3           # log-domain offset: networks and losses work on log(Y + EPS)
LOG_RANGE = (-8.0, 8.3)  # exported outputs: Y at most ~2^12


def input_linear(x: torch.Tensor) -> torch.Tensor:
    """f^-1(L) from a network input's first 3 channels (gamma-encoded code values, prep.py)."""
    return torch.pow(x[:, :3].clamp(0, 1), 2.2)


def from_log(logy: torch.Tensor, lin: torch.Tensor) -> torch.Tensor:
    """Exported output: Y = exp(log(Y + EPS)) - EPS, bounded, never below f^-1(L)."""
    return torch.maximum(torch.exp(logy.clamp(*LOG_RANGE)) - EPS, lin)


def up2(x: torch.Tensor) -> torch.Tensor:
    """2x bilinear upsampling (pixel centres aligned)."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def act() -> nn.Module:
    return nn.LeakyReLU(0.1, inplace=True)


def conv(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, padding=dilation * (k // 2), dilation=dilation)


# How `warp` is written into an exported graph. "grid": torch's grid_sample (ONNX GridSample),
# used in training and in the fp16 graphs (fast on CUDA, coordinates kept fp32 by to_fp16).
# "gather": the same bilinear sampling as one Gather of the 4 neighbours of every pixel from a
# channels-last copy. ONNX Runtime's CPU GridSample works channel by channel; for ICAM's wide feature
# maps (24 and 64 channels) the gather form made icam_ref 24 % faster at 512x512, for FCPM's
# 16-channel full-resolution state it was slower (74 -> 102 ms), hence the threshold
# (ONNX Runtime's per-operator profile; BENCHMARKS.md). Same values up to float rounding.
_WARP_IMPL = "grid"
GATHER_MIN_CH = 20


@contextmanager
def warp_impl(name: str):
    """Within this block, `warp` is built as `name` ("grid" or "gather"): export-time choice."""
    global _WARP_IMPL
    if name not in ("grid", "gather"):
        raise ValueError(f"warp_impl: unknown implementation {name!r} (grid or gather)")
    old, _WARP_IMPL = _WARP_IMPL, name
    try:
        yield
    finally:
        _WARP_IMPL = old


def _warp_gather(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """`warp` by explicit bilinear interpolation: border padding = coordinates clamped to the frame."""
    n, c, h, w = x.shape
    ys = torch.arange(h, dtype=x.dtype, device=x.device).view(1, h, 1)
    xs = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, w)
    # NaN coordinates would become out-of-range Gather indices (an error in ONNX Runtime, not a NaN)
    px = torch.nan_to_num(xs + flow[:, 0], nan=0.0).clamp(0, w - 1)
    py = torch.nan_to_num(ys + flow[:, 1], nan=0.0).clamp(0, h - 1)
    x0, y0 = px.floor(), py.floor()
    wx, wy = px - x0, py - y0
    x0i, y0i = x0.long(), y0.long()
    x1i, y1i = (x0i + 1).clamp(max=w - 1), (y0i + 1).clamp(max=h - 1)
    base = torch.arange(n, device=x.device).view(n, 1, 1) * (h * w)
    r0, r1 = base + y0i * w, base + y1i * w
    flat = x.permute(0, 2, 3, 1).reshape(n * h * w, c)
    idx = torch.stack([r0 + x0i, r0 + x1i, r1 + x0i, r1 + x1i]).reshape(-1)
    wts = torch.stack([(1 - wx) * (1 - wy), wx * (1 - wy), (1 - wx) * wy, wx * wy]).reshape(4, n * h * w, 1)
    vals = flat[idx].reshape(4, n * h * w, c)
    return (vals * wts).sum(0).reshape(n, h, w, c).permute(0, 3, 1, 2)


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample x at p + flow (flow in pixels of x, [B,2,H,W]); bilinear, border padding.

    grid_sample with align_corners=False maps pixel centres p to (2p + 1)/size - 1.
    """
    if _WARP_IMPL == "gather" and x.shape[1] >= GATHER_MIN_CH:
        return _warp_gather(x, flow)
    _, _, h, w = x.shape
    ys = torch.arange(h, dtype=x.dtype, device=x.device).view(1, h, 1).expand(1, h, w)
    xs = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, w).expand(1, h, w)
    gx = (2 * (xs + flow[:, 0]) + 1) / w - 1
    gy = (2 * (ys + flow[:, 1]) + 1) / h - 1
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def inside(flow: torch.Tensor) -> torch.Tensor:
    """[B,1,H,W]: 1 where p + flow lands inside the frame (warp() replicates the border elsewhere), else 0."""
    _, _, h, w = flow.shape
    # integer ranges, then cast: ONNX's Range has no float16 form, and the fp16 graphs are converted from these
    ys = torch.arange(h, device=flow.device).to(flow.dtype).view(1, h, 1)
    xs = torch.arange(w, device=flow.device).to(flow.dtype).view(1, 1, w)
    x, y = xs + flow[:, 0], ys + flow[:, 1]
    return ((x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)).to(flow.dtype).unsqueeze(1)


def downflow(flow: torch.Tensor, factor: int) -> torch.Tensor:
    """Full-resolution flow -> flow at 1/factor resolution, in that resolution's pixels."""
    return F.avg_pool2d(flow, factor) / factor


class DenseBlock(nn.Module):
    """Dense block (Huang et al.): each layer sees all previous outputs; 1x1 conv back to `cout`."""

    def __init__(self, cin: int, cout: int, growth: int = 16, layers: int = 3):
        super().__init__()
        self.layers = nn.ModuleList(conv(cin + i * growth, growth) for i in range(layers))
        self.out = conv(cin + layers * growth, cout, 1)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.layers:
            feats.append(self.act(layer(torch.cat(feats, 1))))
        return self.out(torch.cat(feats, 1))
