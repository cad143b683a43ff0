"""Image-to-image training losses: MSE (Li et al.'s choice for TSVA), L1, and SSIM.

All take (N, C, H, W) tensors on the [0, 1] scale and return the batch mean. The SSIM loss is
1 - SSIM with an 11 x 11 Gaussian window (sigma 1.5) per channel, as Wang et al. 2004.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

LossName = Literal["mse", "l1", "ssim"]


def _gaussian_window(channels: int, size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    x = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    w = (g[:, None] * g[None, :]).expand(channels, 1, size, size)
    return w.contiguous()


def ssim_map(a: torch.Tensor, b: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM of two [0, 1] batches (valid region, no padding)."""
    c = a.shape[1]
    w = _gaussian_window(c, size, sigma, a)
    c1, c2 = 0.01**2, 0.03**2
    mu_a = F.conv2d(a, w, groups=c)
    mu_b = F.conv2d(b, w, groups=c)
    var_a = F.conv2d(a * a, w, groups=c) - mu_a**2
    var_b = F.conv2d(b * b, w, groups=c) - mu_b**2
    cov = F.conv2d(a * b, w, groups=c) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )


def ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 1.0 - ssim_map(pred, target).mean()


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse": F.mse_loss,
    "l1": F.l1_loss,
    "ssim": ssim_loss,
}


def image_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {name!r}") from None
