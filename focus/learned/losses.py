"""The weighted smooth-L1 loss of Dastidar & Ethirajan's two-phase training.

Phase 1 weights every patch by its standard deviation: a patch of near-empty glass says little
about focus and should not pull the fit. Phase 2 also weights by the distance to focus, so
the patches taken close to focus, where the scanner's final error is decided, count more:

    w_i = s_i                                  (phase 1)
    w_i = s_i / (1 + ln(1 + |y_i| / d0))        (phase 2)
    L   = sum_i w_i * smoothL1(yhat_i - y_i; beta) / sum_i w_i

`s_i` is the patch standard deviation, `y_i` the distance to focus in um, `d0` a distance scale
(1 um). The weights are normalised by their sum, so the loss keeps the units of smooth L1 and
does not depend on the overall contrast of a batch.
"""

from __future__ import annotations

import torch

EPS = 1e-12


def std_weights(patch_std: torch.Tensor) -> torch.Tensor:
    """Phase-1 weight: the patch's standard deviation (non-negative)."""
    return patch_std.clamp_min(0.0)


def distance_weights(target_um: torch.Tensor, scale_um: float = 1.0) -> torch.Tensor:
    """Phase-2 factor: 1 / (1 + ln(1 + |y| / scale)); 1 at focus, falling slowly with distance."""
    return 1.0 / (1.0 + torch.log1p(target_um.abs() / scale_um))


def sample_weights(
    patch_std: torch.Tensor, target_um: torch.Tensor, phase: int, scale_um: float = 1.0
) -> torch.Tensor:
    if phase == 1:
        return std_weights(patch_std)
    if phase == 2:
        return std_weights(patch_std) * distance_weights(target_um, scale_um)
    raise ValueError(f"training phase must be 1 or 2, got {phase}")


def weighted_smooth_l1(
    pred_um: torch.Tensor,
    target_um: torch.Tensor,
    patch_std: torch.Tensor,
    phase: int = 1,
    beta_um: float = 0.5,
    distance_scale_um: float = 1.0,
) -> torch.Tensor:
    """Weighted mean of the smooth-L1 error (see the module docstring); all tensors (N,)."""
    pred_um, target_um, patch_std = (t.reshape(-1) for t in (pred_um, target_um, patch_std))
    per_sample = torch.nn.functional.smooth_l1_loss(
        pred_um, target_um, reduction="none", beta=beta_um
    )
    w = sample_weights(patch_std, target_um, phase, distance_scale_um)
    return (w * per_sample).sum() / w.sum().clamp_min(EPS)
