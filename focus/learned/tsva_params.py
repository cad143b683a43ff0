"""TSVA's parameters: torch-free, so the CLI's --help and the GUI's form need no torch."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from slidescan.focus.metrics import MetricName
from slidescan.focus.protocol import FocusParams

#: Default shot spacing dD in um (20x/0.75), chosen by measurement on the tuning stacks with
#: the shipped network: PSNR weighted by the paper's (and the training's) prediction error
#: e ~ N(0, 1 um), dD 0.75 / 1.0 / 1.25 / 1.5 um: 39.89 / 40.11 / 39.69 / 38.83 dB. A wider
#: spacing helps far from focus (|e| = 3 um: 29.9 / 31.0 / 32.1 / 33.4 dB) and costs near it
#: (|e| <= 1 um: 40.9 / 40.9 / 39.9 / 38.4 dB), where a scan's predictions mostly fall.
DEFAULT_SPACING_UM = 1.0


class TSVAParams(FocusParams):
    """See `slidescan.focus.learned.tsva.TSVAFocus` for what each one does."""

    weights: Path | None = Field(
        default=None, description="checkpoint file (default: the shipped weights)"
    )
    spacing_um: float = Field(
        default=DEFAULT_SPACING_UM, gt=0, description="shots at the predicted focus -/+ this, um"
    )
    max_pairs: int = Field(
        default=2, ge=1, description="pairs per tile (a second when the first says focus is far)"
    )
    repair_beyond_um: float = Field(
        default=2.5, gt=0, description="focus this far from the pair takes another pair, um"
    )
    sweep_range_um: float | None = Field(
        default=None, gt=0, description="half range of the first tile's sweep, um (default auto)"
    )
    metric: MetricName = Field(
        default="brenner", description="metric of the first sweep and of the focus estimate"
    )
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads for fusion")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="where fusion runs")
