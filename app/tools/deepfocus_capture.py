"""Capture range: how far from focus a hint may be and the method still finds focus (Shajkofci &
Liebling, Section 3.2: DeepFocus kept depth information over 11 depths of field at 10x/0.3,
the classical scores over 4 to 7).

For each offset d, on every stack of every file, one trial from hint = true focus - d and one
from true focus + d (`evaluate.evaluate_offsets`: fixed hints, not drawn), for DeepFocus and
for Brent with Tenengrad at its own default settings (coarse pass and all, no frame budget).
The hint gives no range (`hint_range_um` 0), so each method searches as far as it does by
default: DeepFocus the hint +/- 2 FWHM of its calibration curve, Brent max(6 um, 7.5 DOF). A
trial succeeds when its final image lies within one depth of field of the truth
(|error| <= DOF). The capture range is the largest tested d up to which every tested d had at
least `SUCCESS_RATE` (90 %) success (0 when the smallest one did not).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slidescan.app.tools.deepfocus_compare import check_same_optics, contenders, optics_line
from slidescan.app.tools.eval_report import TrialRecord, eval_dof_um
from slidescan.app.tools.evaluate import evaluate_offsets

SUCCESS_RATE = 0.9
#: Default offsets, in depths of field (those the stacks allow are used).
DEFAULT_OFFSETS_DOF = (1, 2, 3, 5, 7, 10, 12, 15, 20, 25, 30)


def capture_range(
    offsets_um: Sequence[float], success: Sequence[float], rate: float = SUCCESS_RATE
) -> float:
    """The largest offset up to which every offset (taken in increasing order) has a success
    fraction of at least `rate`; 0 when the smallest has not."""
    best = 0.0
    for d, s in sorted(zip(offsets_um, success, strict=True)):
        if not s >= rate:
            break
        best = float(d)
    return best


def stack_reach_um(opened: Sequence[tuple[str, Any]]) -> float:
    """The largest |offset| that keeps the hint inside every stack of every file."""
    reach = math.inf
    for _, f in opened:
        for i in range(len(f)):
            truth = f.true_focus_um(i)
            if truth is None:
                raise ValueError(f"stack {f.ids[i]!r} has no true_focus_um; it cannot be scored")
            z = f.z_um(i)
            reach = min(reach, truth - float(z.min()), float(z.max()) - truth)
    return reach


def default_offsets(dof_um: float, reach_um: float) -> list[float]:
    """`DEFAULT_OFFSETS_DOF` depths of field, those within reach."""
    return [k * dof_um for k in DEFAULT_OFFSETS_DOF if k * dof_um <= reach_um + 1e-9]


@dataclass
class CaptureReport:
    offsets_um: list[float]
    keys: list[str]
    success: dict[str, list[float]]  # per method, per offset
    trials_per_offset: int
    dof_um: float
    ranges_um: dict[str, float]
    files: list[str] = field(default_factory=list)
    optics: str = ""
    records: dict[str, list[TrialRecord]] = field(default_factory=dict)

    def format_table(self) -> str:
        head = f"{'offset um':>10} {'DOF':>6}" + "".join(f" {k:>16}" for k in self.keys)
        lines = [
            f"{len(self.files)} file(s), {self.trials_per_offset} trials per offset (every stack, "
            f"hint = truth -/+ d); success: |error| <= DOF = {self.dof_um:.3f} um"
            + (f"; optics {self.optics}" if self.optics else ""),
            "",
            head,
            "-" * len(head),
        ]
        for i, d in enumerate(self.offsets_um):
            row = f"{d:>10.2f} {d / self.dof_um:>6.1f}"
            row += "".join(f" {100 * self.success[k][i]:>15.0f}%" for k in self.keys)
            lines.append(row)
        lines.append("")
        for k in self.keys:
            r = self.ranges_um[k]
            lines.append(
                f"capture range {k}: {r:.2f} um = {r / self.dof_um:.1f} DOF "
                f"(every offset up to it >= {100 * SUCCESS_RATE:.0f} % success)"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "offsets_um": self.offsets_um,
            "offsets_dof": [d / self.dof_um for d in self.offsets_um],
            "methods": self.keys,
            "success": self.success,
            "success_rule": f"|error| <= DOF ({self.dof_um:.4f} um)",
            "capture_rule": f"largest offset up to which every offset has >= {SUCCESS_RATE:.0%}",
            "trials_per_offset": self.trials_per_offset,
            "dof_um": self.dof_um,
            "capture_range_um": self.ranges_um,
            "capture_range_dof": {k: v / self.dof_um for k, v in self.ranges_um.items()},
            "files": self.files,
            "optics": self.optics,
        }


def run_capture(
    opened: Sequence[tuple[str, Any]],
    calibration: Path | str,
    weights: Path | str | None = None,
    offsets_um: Sequence[float] | None = None,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> CaptureReport:
    """DeepFocus and Brent+Tenengrad from every offset (module docstring) on the open
    (label, `StackFile`) files. `progress(n)` gets the trials done so far."""
    if not opened:
        raise ValueError("no stack files given")
    check_same_optics([(label, f.optics) for label, f in opened])
    optics = opened[0][1].optics
    dof = eval_dof_um(optics)
    reach = stack_reach_um(opened)
    if offsets_um is None:
        offsets = default_offsets(dof, reach)
        if not offsets:
            raise ValueError(f"the stacks reach only {reach:.3g} um from focus, under one DOF")
    else:
        offsets = sorted({abs(float(d)) for d in offsets_um})
        if not offsets or not all(math.isfinite(d) and d > 0 for d in offsets):
            raise ValueError("offsets must be positive numbers of um")
        if offsets[-1] > reach + 1e-9:
            raise ValueError(
                f"offset {offsets[-1]:g} um puts the hint outside a stack: the stacks reach "
                f"{reach:.3g} um from their focus"
            )
    signed = [s * d for d in offsets for s in (-1.0, 1.0)]
    chosen = [
        c for c in contenders(calibration, weights) if c.key in ("deepfocus", "brent+tenengrad")
    ]
    success: dict[str, list[float]] = {}
    ranges: dict[str, float] = {}
    records: dict[str, list[TrialRecord]] = {}
    done = 0
    for c in chosen:
        recs: list[TrialRecord] = []
        for _, f in opened:
            step = None if progress is None else (lambda n, base=done: progress(base + n))
            recs += evaluate_offsets(c.make(), f, signed, seed=seed, progress=step)
            done += len(f) * len(signed)
        which = np.array([r.trial // 2 for r in recs])  # trial number = index in `signed`
        ok = np.array([abs(r.error_um) <= dof for r in recs])
        success[c.key] = [float(ok[which == i].mean()) for i in range(len(offsets))]
        ranges[c.key] = capture_range(offsets, success[c.key])
        records[c.key] = recs
    n_stacks = sum(len(f) for _, f in opened)
    return CaptureReport(
        offsets_um=offsets,
        keys=[c.key for c in chosen],
        success=success,
        trials_per_offset=2 * n_stacks,
        dof_um=dof,
        ranges_um=ranges,
        files=[label for label, _ in opened],
        optics=optics_line(optics),
        records=records,
    )
