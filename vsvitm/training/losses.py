"""Training losses (paper eq. 8 / 13, with the pixel term in the log domain so highlights count)."""
from __future__ import annotations

import torch

from .nets_common import EPS


def log_l1(logy: torch.Tensor, hdr: torch.Tensor, w: torch.Tensor, overshoot: float = 1.0) -> torch.Tensor:
    """w-weighted L1 between a log-domain prediction log(Y + EPS) and log(H + EPS).

    ``overshoot`` > 1 weighs predictions above the truth that much more than those below (a quantile
    loss: the optimum is the 1/(1+overshoot) quantile of what the input allows). Where references
    pin the value down every quantile is the truth; where nothing does, the guess stays low instead
    of painting a bright highlight that was never there."""
    d = logy - torch.log(hdr.clamp_min(0) + EPS)
    d = torch.where(d > 0, d * overshoot, -d) * w
    return d.sum() / (3 * w.sum()).clamp_min(1.0)


def flow_l1(flows: list[torch.Tensor], gts: list[torch.Tensor], valids: list[torch.Tensor]) -> torch.Tensor:
    """L1 between corrected flow (1/2 res) and ground-truth flow downsampled to it (eq. 4)."""
    if not flows:
        return torch.zeros(())
    total = 0.0
    for f, g, v in zip(flows, gts, valids):
        g2 = torch.nn.functional.avg_pool2d(g, 2) / 2
        v2 = torch.nn.functional.avg_pool2d(v, 2)
        total = total + ((f - g2).abs() * v2).sum() / (2 * v2.sum()).clamp_min(1.0)
    return total / len(flows)


def log_l1_to(logy: torch.Tensor, logt: torch.Tensor, w: torch.Tensor, norm: torch.Tensor | None = None) -> torch.Tensor:
    """w-weighted L1 between two log-domain predictions: a student's distance to its teacher.
    Divided by the sum of `norm` (default w): with norm ⊇ w, a term on part of the pixels counts
    by how many of them there are."""
    d = (logy - logt.detach()).abs() * w
    return d.sum() / (3 * (w if norm is None else norm).sum()).clamp_min(1.0)
