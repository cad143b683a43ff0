"""What the DeepFocus measurements share: the contenders (DeepFocus, Brent with Tenengrad, Brent
with Brenner) as focus-method settings, the optics check for pooling stack files, and the
pooled summary of several files' trials.

DeepFocus is compared with the classical searches the paper compares it with (Shajkofci &
Liebling, Fig. 4: a bounded Brent's method on Tenengrad and on another classical metric), so
the tools name the same three everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slidescan.app.tools.eval_report import EvalReport, EvalSummary, TrialRecord, eval_dof_um
from slidescan.focus.protocol import FocusMethod, OpticsLike

#: The classical metrics Brent is run with, beside DeepFocus.
BRENT_METRICS = ("tenengrad", "brenner")
#: Relative tolerance on pixel size, NA, magnification and immersion for files to be pooled.
OPTICS_RTOL = 1e-6


@dataclass(frozen=True)
class Contender:
    """One focus method with its settings: `key` names it in tables ("deepfocus",
    "brent+tenengrad", ...), `mode` is the registry name."""

    key: str
    mode: str
    params: dict[str, Any] = field(default_factory=dict)

    def make(self) -> FocusMethod:
        from slidescan.focus.registry import get_method

        return get_method(self.mode, **self.params)


def contenders(
    calibration: Path | str,
    weights: Path | str | None = None,
    budget: int | None = None,
    metrics: Sequence[str] = BRENT_METRICS,
) -> list[Contender]:
    """DeepFocus with this calibration (and weights, default the shipped ones) and Brent with
    each metric; with `budget`, every one limited to that many frames (the final one counted),
    else each at its own default."""
    df: dict[str, Any] = {"calibration": str(calibration)}
    if weights is not None:
        df["weights"] = str(weights)
    out = [Contender("deepfocus", "deepfocus", df)]
    out += [Contender(f"brent+{m}", "brent", {"metric": m}) for m in metrics]
    if budget is not None:
        # a hard cap: no recovery frames beyond it for DeepFocus
        out = [Contender(c.key, c.mode, c.params | {"max_frames": int(budget)}) for c in out]
        out[0] = Contender("deepfocus", "deepfocus", out[0].params | {"recover": False})
    return out


def optics_line(optics: OpticsLike) -> str:
    return (
        f"NA {float(optics.na):g}, {float(optics.pixel_size_um):.4g} um/px, "
        f"n {float(optics.immersion_n):g}"
    )


def check_same_optics(files: Sequence[tuple[str, Any]]) -> None:
    """Refuse (one-line `ValueError`) files whose optics differ: (name, optics) pairs, judged by
    NA, pixel size, immersion index and magnification. One score curve or one calibration
    holds for one objective on one camera only."""
    if not files:
        return
    (name0, o0), *rest = files
    keys = ("na", "pixel_size_um", "immersion_n", "magnification")

    def same(o: Any) -> bool:
        return all(
            math.isclose(float(getattr(o, k)), float(getattr(o0, k)), rel_tol=OPTICS_RTOL)
            for k in keys
            if hasattr(o, k) and hasattr(o0, k)
        )

    odd = [(n, o) for n, o in rest if not same(o)]
    if odd:
        n, o = odd[0]
        raise ValueError(
            f"the files must share their optics: {name0} has {optics_line(o0)} but {n} has "
            f"{optics_line(o)}; measure them separately"
        )


def pooled_summary(reports: Sequence[EvalReport], optics: OpticsLike) -> EvalSummary:
    """The summary of every trial of several files' reports together."""
    records: list[TrialRecord] = [r for rep in reports for r in rep.records]
    return EvalSummary.of(records, eval_dof_um(optics))
