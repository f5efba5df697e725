"""Building blocks shared by the ICAM and FCPM networks (torch, export-friendly: no custom ops)."""
from __future__ import annotations

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


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample x at p + flow (flow in pixels of x, [B,2,H,W]); bilinear, border padding.

    grid_sample with align_corners=False maps pixel centres p to (2p + 1)/size - 1.
    """
    _, _, h, w = x.shape
    ys = torch.arange(h, dtype=x.dtype, device=x.device).view(1, h, 1).expand(1, h, w)
    xs = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, w).expand(1, h, w)
    gx = (2 * (xs + flow[:, 0]) + 1) / w - 1
    gy = (2 * (ys + flow[:, 1]) + 1) / h - 1
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


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
