"""diffcnn's parameters: torch-free, so the CLI's --help and the GUI's form need no torch."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from slidescan.focus.metrics import MetricName
from slidescan.focus.protocol import FocusParams


class DiffCNNParams(FocusParams):
    """See `slidescan.focus.learned.diffcnn.DiffCNNFocus` for what each one does."""

    weights: Path | None = Field(
        default=None, description="checkpoint file (default: the shipped weights)"
    )
    objective: str | None = Field(
        default=None,
        description="whose shipped weights (default: the device's objective, else 20x/0.75)",
    )
    range_um: float = Field(default=1.0, gt=0, description="hint error when the hint says none, um")
    margin_um: float = Field(
        default=0.5, ge=0, description="gap between the upper shot and the nearest focus, um"
    )
    min_confidence: float = Field(
        default=0.5, ge=0, le=1, description="least patch agreement to trust a pair"
    )
    max_pairs: int = Field(default=2, ge=1, description="pairs before the sweep fallback")
    fallback: Literal["zsweep", "none"] = Field(
        default="zsweep", description="what settles a tile the CNN does not trust"
    )
    tolerance_um: float = Field(
        default=0.2, gt=0, description="uncertainty at which confidence is 0.5, um"
    )
    max_patches: int | None = Field(default=None, ge=1, description="patches read per pair")
    na_scaling: bool = Field(
        default=True, description="stretch distances for an NA outside the trained range"
    )
    threads: int | None = Field(default=1, ge=1, description="torch CPU threads for inference")
    trust_within_um: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=True,
        description="farthest distance one pair is trusted at, model um (default 2.25 spacings)",
    )
    calibrate_tiles: int = Field(
        default=5, ge=0, description="per-slide calibration tiles (0: the paper's method)"
    )
    calibration_range_um: float = Field(
        default=1.5, gt=0, description="half range of a calibration tile's sweep, um"
    )
    calibration_pairs_um: tuple[float, ...] = Field(
        default=(3.0, 4.5), description="extra pairs below focus on a calibration tile, model um"
    )
    sweep_metric: MetricName = Field(
        default="brenner_green", description="metric of the calibration and fallback sweep"
    )
