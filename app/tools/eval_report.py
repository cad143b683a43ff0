"""The focus yardstick's reports: one trial's record, the summary statistics, one file's report
and several files pooled, with their tables (text, markdown, JSON). See `evaluate.py` for how
trials are run and scored.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slidescan.focus.protocol import OpticsLike, depth_of_field_um
from slidescan.hardware.replay import ReplayMechanics, ReplayTiming

#: Wavelength the depth-of-field threshold is computed at (um); `depth_of_field_um`'s default.
DOF_WAVELENGTH_UM = 0.55


def eval_dof_um(optics: OpticsLike) -> float:
    """The depth of field the eval judges "within DOF/2" by, for these optics."""
    return depth_of_field_um(optics.na, optics.immersion_n, DOF_WAVELENGTH_UM)


@dataclass(frozen=True)
class TrialRecord:
    """One focus run on one stack. `z_um` is what was scored, the z the final image shows;
    `z_commanded_um` is the z the method returned (the hint when it failed without one); see
    the module docstring. `true_z_clamps` counts moves whose true z the replay had to clamp to
    the recorded range. `fallback` names the method the focus method fell back to in this
    trial ("" when it settled the tile itself): recorded here, from the result, so reports
    never have to parse messages."""

    stack_id: str
    trial: int
    true_focus_um: float
    hint_z_um: float
    z_um: float
    error_um: float
    ok: bool
    scored_at_hint: bool
    in_range: bool
    frames: int
    reported_frames: int
    moves: int
    hardware_s: float
    compute_s: float
    confidence: float
    message: str = ""
    z_commanded_um: float = math.nan
    true_z_clamps: int = 0
    fallback: str = ""


@dataclass(frozen=True)
class EvalSummary:
    trials: int
    stacks: int
    mae_um: float
    median_abs_um: float
    p95_abs_um: float
    max_abs_um: float
    bias_um: float
    rmse_um: float
    threshold_um: float
    dof_um: float
    within_fraction: float
    failed: int
    scored_at_hint: int
    out_of_range: int
    frames_mean: float
    frames_max: int
    hardware_s_mean: float
    compute_s_mean: float
    compute_s_median: float
    true_z_clamps: int = 0
    fallbacks: int = 0

    @classmethod
    def of(cls, records: Sequence[TrialRecord], dof_um: float) -> EvalSummary:
        if not records:
            raise ValueError("no trials to summarise")
        err = np.array([r.error_um for r in records], dtype=np.float64)
        a = np.abs(err)
        frames = np.array([r.frames for r in records])
        compute = np.array([r.compute_s for r in records])
        threshold = dof_um / 2.0
        return cls(
            trials=len(records),
            stacks=len({r.stack_id for r in records}),
            mae_um=float(a.mean()),
            median_abs_um=float(np.median(a)),
            p95_abs_um=float(np.percentile(a, 95)),
            max_abs_um=float(a.max()),
            bias_um=float(err.mean()),
            rmse_um=float(np.sqrt(np.mean(err**2))),
            threshold_um=float(threshold),
            dof_um=float(dof_um),
            within_fraction=float(np.mean(a <= threshold)),
            failed=sum(not r.ok for r in records),
            scored_at_hint=sum(r.scored_at_hint for r in records),
            out_of_range=sum(not r.in_range for r in records),
            frames_mean=float(frames.mean()),
            frames_max=int(frames.max()),
            hardware_s_mean=float(np.mean([r.hardware_s for r in records])),
            compute_s_mean=float(compute.mean()),
            compute_s_median=float(np.median(compute)),
            true_z_clamps=sum(r.true_z_clamps for r in records),
            fallbacks=sum(bool(r.fallback) for r in records),
        )


@dataclass
class EvalReport:
    """Everything one evaluation measured: the set-up, every trial, and the summary."""

    method: str
    hint_range_um: float
    trials_per_stack: int
    seed: int
    na: float
    immersion_n: float
    timing: ReplayTiming
    records: list[TrialRecord]
    summary: EvalSummary
    params: dict[str, Any] = field(default_factory=dict)
    stacks_source: str = ""
    timing_source: str = "default"
    mechanics: ReplayMechanics | None = None
    stage: str = "ideal"
    #: per-slide calibration tiles run before each stack's trials (see the module docstring)
    calibration_records: list[TrialRecord] = field(default_factory=list)
    #: calibration tiles kept per stack (the method's own count after calibrating), by stack id
    calibration_kept: dict[str, int] = field(default_factory=dict)

    def calibration_line(self) -> str:
        """How the method was calibrated, in words ("" when it was not)."""
        if not self.calibration_kept:
            return ""
        if not self.calibration_records:
            return (
                "per-slide calibration: none (the file has one field to score and none to "
                "calibrate on), the method ran uncalibrated"
            )
        kept = np.array(list(self.calibration_kept.values()), dtype=float)
        recs = self.calibration_records
        frames = np.mean([r.frames for r in recs]) if recs else 0.0
        hw = np.mean([r.hardware_s for r in recs]) if recs else 0.0
        return (
            f"per-slide calibration on other fields of the same file: {kept.mean():.1f} tiles "
            f"kept per stack (min {int(kept.min())}), {frames:.1f} frames and {hw:.3f} s per "
            "calibration tile, not counted in the trials"
        )

    def stage_line(self) -> str:
        """Which stage model the trials ran on, in words."""
        if self.mechanics is None:
            return f"{self.stage} (Z goes exactly where it is told)"
        return f"{self.stage} ({self.mechanics.describe()})"

    def per_stack(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for sid in dict.fromkeys(r.stack_id for r in self.records):
            rs = [r for r in self.records if r.stack_id == sid]
            a = np.abs([r.error_um for r in rs])
            out[sid] = {
                "true_focus_um": rs[0].true_focus_um,
                "mae_um": float(a.mean()),
                "max_abs_um": float(a.max()),
                "within_fraction": float(np.mean(a <= self.summary.threshold_um)),
                "failed": sum(not r.ok for r in rs),
            }
        return out

    def to_dict(self, *, include_trials: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "method": self.method,
            "params": self.params,
            "stacks_source": self.stacks_source,
            "hint_range_um": self.hint_range_um,
            "hint": "true focus + uniform(-hint_range_um, +hint_range_um), passed as range_um",
            "trials_per_stack": self.trials_per_stack,
            "seed": self.seed,
            "optics": {"na": self.na, "immersion_n": self.immersion_n},
            "threshold": (
                f"|error| <= DOF/2 = {self.summary.threshold_um:.4f} um "
                f"(DOF {self.summary.dof_um:.4f} um at {DOF_WAVELENGTH_UM} um, "
                f"NA {self.na:g}, n {self.immersion_n:g})"
            ),
            "timing": asdict(self.timing),
            "timing_source": self.timing_source,
            "stage": {
                "model": self.stage,
                "description": self.stage_line(),
                "mechanics": None if self.mechanics is None else self.mechanics.to_dict(),
            },
            "summary": asdict(self.summary),
            "per_stack": self.per_stack(),
            "calibration": (
                {
                    "description": self.calibration_line(),
                    "kept_per_stack": self.calibration_kept,
                    "tiles": len(self.calibration_records),
                }
                if self.calibration_kept
                else None
            ),
        }
        if include_trials:
            d["trials"] = [asdict(r) for r in self.records]
        return d

    def format_table(self) -> str:
        s = self.summary
        lines = [
            f"method {self.method}"
            + (f" {self.params}" if self.params else "")
            + f" on {s.stacks} stacks x {self.trials_per_stack} trials = {s.trials} trials"
            + (f" ({self.stacks_source})" if self.stacks_source else ""),
            f"hint: true focus + U(-{self.hint_range_um:g}, +{self.hint_range_um:g}) um, "
            f"seed {self.seed}",
            f"stage: {self.stage_line()}"
            + (f"; true z clamped to the stack {s.true_z_clamps} times" if s.true_z_clamps else ""),
            *([self.calibration_line()] if self.calibration_kept else []),
            "",
            f"|error| um    MAE {s.mae_um:.3f}   median {s.median_abs_um:.3f}   "
            f"p95 {s.p95_abs_um:.3f}   max {s.max_abs_um:.3f}   "
            f"(bias {s.bias_um:+.3f}, RMSE {s.rmse_um:.3f})",
            f"within DOF/2  {100 * s.within_fraction:.1f} %  "
            f"(|error| <= {s.threshold_um:.3f} um; DOF {s.dof_um:.3f} um at "
            f"{DOF_WAVELENGTH_UM} um, NA {self.na:g}, n {self.immersion_n:g})",
            f"failed        {s.failed} (ok=False; {s.scored_at_hint} raised or gave no z: "
            "scored at the hint)   "
            f"outside the stack: {s.out_of_range}",
            f"per trial     frames {s.frames_mean:.1f} (max {s.frames_max})   "
            f"hardware {s.hardware_s_mean:.3f} s ({self.timing_source} timing)   "
            f"compute {s.compute_s_mean * 1000:.1f} ms (median {s.compute_s_median * 1000:.1f} ms)",
        ]
        per_stack = self.per_stack()
        width = max([12, *(len(str(sid)) + 2 for sid in per_stack)])
        lines += [
            "",
            f"{'stack':<{width}}{'true z um':>11}{'MAE um':>9}{'max um':>9}{'within':>9}"
            f"{'failed':>8}",
        ]
        for sid, st in per_stack.items():
            lines.append(
                f"{sid:<{width}}{st['true_focus_um']:>11.3f}{st['mae_um']:>9.3f}"
                f"{st['max_abs_um']:>9.3f}{100 * st['within_fraction']:>8.0f}%"
                f"{st['failed']:>8d}"
            )
        return "\n".join(lines)


def check_poolable(files: Sequence[tuple[str, float, float]]) -> None:
    """Refuse to pool files whose optics give different "within DOF/2" thresholds (one number
    would mix two yardsticks). `files` are (name, NA, immersion n); the error names every file
    that differs from the first, with its threshold."""
    if not files:
        return
    first, *rest = files
    dof0 = depth_of_field_um(first[1], first[2], DOF_WAVELENGTH_UM)
    odd = [
        (name, na, n, dof)
        for name, na, n in rest
        if not math.isclose(dof := depth_of_field_um(na, n, DOF_WAVELENGTH_UM), dof0, rel_tol=1e-9)
    ]
    if odd:
        shown = ", ".join(
            f"{name} (NA {na:g}, n {n:g}: DOF/2 {dof / 2:.3f} um)" for name, na, n, dof in odd
        )
        raise ValueError(
            f"cannot pool files with different optics: {first[0]} (NA {first[1]:g}, "
            f"n {first[2]:g}: DOF/2 {dof0 / 2:.3f} um) but {shown}; evaluate them separately"
        )


def file_labels(paths: Sequence[str]) -> list[str]:
    """Short row names for files: their names, or the paths as given where names collide
    (the same specimen name in two folders)."""
    names = [Path(p).name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(p) for p in paths]


@dataclass
class PooledReport:
    """Several stack files (one per specimen) evaluated alike, each exactly as it would be
    alone, and pooled: the held-out table model cards and the README quote.

    `pooled` is `EvalSummary.of` over every trial of every file; `pooled_no_fallback` the same
    over the trials the method settled itself (None when no trial fell back, or all did), so a
    learned method's own accuracy is not hidden behind its fallback. Stack ids are only unique
    within a file, so the pooled `stacks` counts (file, stack id) pairs.
    """

    files: list[EvalReport]
    labels: list[str]
    pooled: EvalSummary
    pooled_no_fallback: EvalSummary | None

    @classmethod
    def of(cls, reports: Sequence[EvalReport], labels: Sequence[str] | None = None) -> PooledReport:
        if not reports:
            raise ValueError("no files to pool")
        names = (
            list(labels)
            if labels is not None
            else file_labels([r.stacks_source or f"file {k + 1}" for k, r in enumerate(reports)])
        )
        if len(names) != len(reports):
            raise ValueError(f"{len(names)} labels for {len(reports)} files")
        check_poolable(
            [(name, r.na, r.immersion_n) for name, r in zip(names, reports, strict=True)]
        )
        dof = reports[0].summary.dof_um
        tagged = [(k, r) for k, report in enumerate(reports) for r in report.records]
        alone = [(k, r) for k, r in tagged if not r.fallback]
        return cls(
            files=list(reports),
            labels=names,
            pooled=_pooled_summary(tagged, dof),
            pooled_no_fallback=(
                _pooled_summary(alone, dof) if alone and len(alone) < len(tagged) else None
            ),
        )

    def rows(self) -> list[tuple[str, EvalSummary]]:
        """(name, summary) per table row: each file, "ALL", then "no fallback" if any."""
        out = [(name, r.summary) for name, r in zip(self.labels, self.files, strict=True)]
        out.append(("ALL", self.pooled))
        if self.pooled_no_fallback is not None:
            out.append(("no fallback", self.pooled_no_fallback))
        return out

    def to_dict(self, *, include_trials: bool = True) -> dict[str, Any]:
        return {
            "files": [r.to_dict(include_trials=include_trials) for r in self.files],
            "pooled": asdict(self.pooled),
            "pooled_no_fallback": (
                None if self.pooled_no_fallback is None else asdict(self.pooled_no_fallback)
            ),
        }

    def format_table(self) -> str:
        first, s = self.files[0], self.pooled
        stages = ", ".join(dict.fromkeys(r.stage_line() for r in self.files))
        timings = ", ".join(dict.fromkeys(r.timing_source for r in self.files))
        width = max(11, *(len(name) for name, _ in self.rows()))
        head = (
            f"{'file':<{width}}{'trials':>7}{'MAE um':>8}{'median':>8}{'p95':>8}{'max':>8}"
            f"{'bias':>8}  {'within DOF/2':<18}{'frames':>7}{'hw s':>7}{'comp ms':>8}{'fallbacks':>10}"
        )
        lines = [
            f"method {first.method}"
            + (f" {first.params}" if first.params else "")
            + f" on {len(self.files)} files, {s.stacks} stacks x {first.trials_per_stack} "
            f"trials = {s.trials} trials",
            f"hint: true focus + U(-{first.hint_range_um:g}, +{first.hint_range_um:g}) um, "
            f"seed {first.seed} in every file (each file's trials are those of a run on it alone)",
            f"stage: {stages}; {timings} timing",
            *dict.fromkeys(r.calibration_line() for r in self.files if r.calibration_kept),
            f"within DOF/2: |error| <= {s.threshold_um:.3f} um (DOF {s.dof_um:.3f} um at "
            f"{DOF_WAVELENGTH_UM} um, NA {first.na:g}, n {first.immersion_n:g})",
            "",
            head,
        ]
        for name, r in self.rows():
            if name == "ALL":
                lines.append("-" * len(head))
            within = f"{100 * r.within_fraction:.1f} % (<= {r.threshold_um:.3f})"
            lines.append(
                f"{name:<{width}}{r.trials:>7d}{r.mae_um:>8.3f}{r.median_abs_um:>8.3f}"
                f"{r.p95_abs_um:>8.3f}{r.max_abs_um:>8.3f}{r.bias_um:>+8.3f}  {within:<18}"
                f"{r.frames_mean:>7.1f}{r.hardware_s_mean:>7.3f}{1000 * r.compute_s_median:>8.1f}"
                f"{r.fallbacks:>10d}"
            )
        lines += [
            "",
            "|error| in um; frames and hardware s (virtual clock): mean per trial; comp ms: median "
            "compute per trial; fallbacks: trials the method handed to another method",
            f"failed {s.failed} ({s.scored_at_hint} scored at the hint), outside the stack "
            f"{s.out_of_range}"
            + (f", true z clamped to the stack {s.true_z_clamps} times" if s.true_z_clamps else ""),
        ]
        return "\n".join(lines)

    def format_markdown(self) -> str:
        """The rows as a GitHub markdown table, ready for a model card or the README."""
        lines = [
            "| file | trials | MAE um | median | p95 | max | bias | within DOF/2 | frames "
            "| hardware s | compute ms (median) | fallbacks |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, r in self.rows():
            shown = f"**{name}**" if name == "ALL" else name
            lines.append(
                f"| {shown} | {r.trials} | {r.mae_um:.3f} | {r.median_abs_um:.3f} "
                f"| {r.p95_abs_um:.3f} | {r.max_abs_um:.3f} | {r.bias_um:+.3f} "
                f"| {100 * r.within_fraction:.1f} % (<= {r.threshold_um:.2f}) "
                f"| {r.frames_mean:.1f} | {r.hardware_s_mean:.3f} "
                f"| {1000 * r.compute_s_median:.1f} | {r.fallbacks} |"
            )
        return "\n".join(lines)


def _pooled_summary(tagged: Sequence[tuple[int, TrialRecord]], dof_um: float) -> EvalSummary:
    """`EvalSummary.of` the records, counting stacks as (file, stack id) pairs."""
    summary = EvalSummary.of([r for _, r in tagged], dof_um)
    return dataclasses.replace(summary, stacks=len({(k, r.stack_id) for k, r in tagged}))
