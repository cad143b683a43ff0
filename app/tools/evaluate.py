"""The focus yardstick: run a focus method on recorded stacks and score it against the truth.

Every trial replays one stack through a fresh `ReplayMicroscope` (so a method runs exactly as
on hardware), starts the stage at a hint drawn as `true focus + U(-hint_range, +hint_range)`
(seeded), gives the method `FocusHint(z_um=hint, range_um=hint_range)` (None for a range of
0: the method uses its default) and records:

- error = scored z - the stack's true focus, in um, never clipped. The scored z is the z the
  final image of the tile shows (`TrialRecord.z_um`); the z the method returned is kept as
  `z_commanded_um`:
  - a returned z outside the stack's recorded range is scored as returned (no image exists
    there) and counted as `out_of_range`;
  - a method that hands back its final frame (`FocusResult.final_frame`, as zsweep, brent and
    diffcnn do) is scored at the true z that frame was served at (its `true_position_um`);
  - otherwise the eval does what a scan does before its final capture: it moves the drive to
    the returned z through the trial's `FocusDrive` (approach from below) and scores the true z
    it arrives at. That move is not counted in the method's frames, moves or hardware seconds.
  On an ideal stage (the default) the drive is where it was told, so this is the returned z
  for every method whose final frame is taken where it says (all of ours). With `mechanics`
  (steps, backlash, repeatability: `ReplayMechanics`) it is not: a method whose final move
  comes from above lands up to the backlash too high and is scored there, and every final
  image carries the step rounding and the repeatability error of its last move.
- `ok=False` results are counted as failed and still scored at the z they returned.
- A method that raises `FocusError` or a `HardwareError` (for example it asked for a z outside
  the stack), or returns a non-finite z, is a failed trial scored at the hint, the z a scan
  would fall back to (taken like any other returned z without a final frame). Any other
  exception is a bug and propagates.
- frames = snaps the replay camera served; hardware seconds = the replay's virtual clock
  (`ReplayTiming`: the one recorded in the file, else the default); compute seconds = wall
  time (`time.perf_counter`) around `method.focus`, which includes the replay's interpolation
  (about 0.2 ms per 512 x 512 RGB frame).

Stage mechanics: each trial gets its own repeatability stream, seeded from the eval seed, the
mechanics' seed, the stack id and the trial number, so a run is reproducible and every method
draws from the same stream in the same trial. The drive starts at the hint as if it had
arrived there moving down (`ReplayMechanics.arrived_from="above"`): the play is open and the
carriage sits b above the reported z (plus the error of that move). Any move that ended
downwards leaves a drive so, and it is the worst case for a method that assumes it knows how
the drive got where it is.
Backlash can put the true z up to b above the highest commanded z; the replay clamps it to the
stack (counted as `true_z_clamps`), so stacks for a backlash eval should reach b above
true focus + hint range + the method's search range.

The summary gives MAE, median, p95 and max of |error|, the signed bias, and the fraction of
trials within half the depth of field, DOF = `depth_of_field_um(na, n)` at 0.55 um.

A trial in which the method handed the tile to another method (diffcnn's z-sweep when it does
not trust the CNN: `FocusResult.fallback`) is marked in `TrialRecord.fallback`, so a report can say how much of its
accuracy the fallback bought. Held-out figures are pooled over several files, one per
specimen (`PooledReport`): each file is evaluated exactly as it would be alone and the pooled
summary is the summary of all their trials; files whose optics give different DOF thresholds
are refused, because "within DOF/2" would then mean different things in one number.

Per-slide calibration (a `SlideCalibrated` method with `calibrate_tiles > 0`, as diffcnn by
default): a stack file is one slide and its stacks are fields of it. Before the trials on a
stack the method's calibration is reset and it calibrates on the *other* stacks of the file
(one tile each at a seeded hint, in file order after this stack, and a second round at
new hints, until it has kept `calibrate_tiles` or been twice round the other fields), then is frozen, so no scored trial ever
calibrates on, or is calibrated by, the field it is scored on (leave-one-field-out). Those
calibration tiles are reported apart (`EvalReport.calibration`), not in the summary; in a scan
they are the first tiles of the slide. A file with one stack gives the method nothing to
calibrate on: it runs uncalibrated (reset and frozen).
"""

from __future__ import annotations

import dataclasses
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slidescan.focus.drive import FocusDrive
from slidescan.focus.protocol import (
    FocusError,
    FocusHint,
    FocusMethod,
    FrameLike,
    OpticsLike,
    SlideCalibrated,
    depth_of_field_um,
)
from slidescan.hardware.errors import HardwareError
from slidescan.hardware.replay import ReplayMechanics, ReplayMicroscope, ReplayTiming, timing_for
from slidescan.hardware.stackfile import FocusStack

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
            "",
            f"{'stack':<12}{'true z um':>11}{'MAE um':>9}{'max um':>9}{'within':>9}{'failed':>8}",
        ]
        for sid, st in self.per_stack().items():
            lines.append(
                f"{sid:<12}{st['true_focus_um']:>11.3f}{st['mae_um']:>9.3f}"
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


def _stack_truth_and_range(stacks: Any, i: int) -> tuple[str, float | None, float, float]:
    """(id, true focus, z min, z max) of stack i, from metadata alone where the container can."""
    if hasattr(stacks, "z_um") and hasattr(stacks, "ids"):  # an open StackFile: no image reads
        z = stacks.z_um(i)
        return stacks.ids[i], stacks.true_focus_um(i), float(z.min()), float(z.max())
    s: FocusStack = stacks[i]
    lo, hi = s.z_range_um
    return s.id, s.true_focus_um, lo, hi


def check_stacks(stacks: Any, hint_range_um: float) -> None:
    """Refuse, before anything runs, stacks that cannot be scored with this hint range."""
    if not (math.isfinite(hint_range_um) and hint_range_um >= 0):
        raise ValueError(f"hint range must be a finite number >= 0, got {hint_range_um}")
    if len(stacks) == 0:
        raise ValueError("there are no stacks to evaluate on")
    for i in range(len(stacks)):
        sid, truth, lo, hi = _stack_truth_and_range(stacks, i)
        if truth is None:
            raise ValueError(f"stack {sid!r} has no true_focus_um; it cannot be scored")
        if truth - hint_range_um < lo or truth + hint_range_um > hi:
            raise ValueError(
                f"stack {sid!r}: hint range +-{hint_range_um:g} um around its true focus "
                f"{truth:.3f} um reaches outside its z range [{lo:.3f}, {hi:.3f}] um; "
                "use a smaller hint range or a deeper stack"
            )


def evaluate_method(
    method: FocusMethod,
    stacks: Any,
    hint_range_um: float,
    trials: int,
    seed: int,
    *,
    optics: OpticsLike | None = None,
    timing: ReplayTiming | None = None,
    params: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    mechanics: ReplayMechanics | None = None,
    stage: str | None = None,
    timing_source: str | None = None,
) -> EvalReport:
    """Score `method` on every stack (`trials` runs each); see the module docstring.

    `stacks` is an open `StackFile` (its `optics` are used) or a sequence of `FocusStack`
    with `optics=` given. `progress(n)` is called after each trial with the trials done.
    `mechanics` (default: an ideal stage) model the Z drive; each trial gets its own seed.
    `stage` names the stage model in the report (default "ideal", or "custom" with mechanics)
    and `timing_source` says where a given `timing` came from.
    """
    optics = optics if optics is not None else getattr(stacks, "optics", None)
    if optics is None:
        raise ValueError("evaluate_method needs the optics: pass a StackFile or optics=")
    if trials < 1:
        raise ValueError(f"trials per stack must be at least 1, got {trials}")
    check_stacks(stacks, hint_range_um)
    if timing is None:
        timing, found = timing_for(stacks)
        timing_source = timing_source or found
    else:
        timing_source = timing_source or "given"
    if stage is None:
        stage = "ideal" if mechanics is None else "custom"
    dof = eval_dof_um(optics)
    name = method.name
    method.prepare(optics)
    # All hint offsets are drawn up front, so trial (i, j) sees the same hint whatever the method.
    offsets = np.random.default_rng(seed).uniform(
        -hint_range_um, hint_range_um, size=(len(stacks), trials)
    )
    records: list[TrialRecord] = []
    calibration: list[TrialRecord] = []
    kept: dict[str, int] = {}
    calibrating = isinstance(method, SlideCalibrated) and method.calibrate_tiles > 0
    try:
        for i in range(len(stacks)):
            stack: FocusStack = stacks[i]
            if calibrating:
                calibration += _calibrate(
                    method, stacks, i, optics, timing, hint_range_um, seed, mechanics
                )
                kept[stack.id] = method.calibration_count()
            records += _stack_trials(
                method,
                stack,
                optics,
                timing,
                offsets[i],
                hint_range_um,
                seed,
                mechanics,
                progress,
                len(records),
            )
    finally:
        if calibrating:
            method.calibration_frozen = False
            method.reset_calibration()
    return EvalReport(
        method=name,
        hint_range_um=float(hint_range_um),
        trials_per_stack=int(trials),
        seed=int(seed),
        na=float(optics.na),
        immersion_n=float(optics.immersion_n),
        timing=timing,
        records=records,
        summary=EvalSummary.of(records, dof),
        params=dict(params or {}),
        stacks_source=str(getattr(stacks, "path", "")),
        timing_source=timing_source,
        mechanics=mechanics,
        stage=stage,
        calibration_records=calibration,
        calibration_kept=kept,
    )


#: Trial numbers of calibration tiles start here (their mechanics seeds differ from trials').
CALIBRATION_TRIAL_BASE = 1_000_000


def _calibrate(
    method: SlideCalibrated,
    stacks: Any,
    i: int,
    optics: OpticsLike,
    timing: ReplayTiming,
    hint_range_um: float,
    seed: int,
    mechanics: ReplayMechanics | None,
) -> list[TrialRecord]:
    """Reset the method's slide calibration and calibrate it on the stacks other than `i`
    (one tile each, in file order after `i`, then a second round if it still lacks tiles),
    then freeze it. See the module docstring."""
    method.reset_calibration()
    method.calibration_frozen = False
    n = len(stacks)
    rng = np.random.default_rng([int(seed), 0xCA1, i])
    out: list[TrialRecord] = []
    # Every other field once, then once more (another hint) if tiles were not kept: a scan
    # would go on calibrating on its next tiles too.
    order = [(i + k) % n for k in range(1, n)] * 2
    for k, o in enumerate(order, start=1):
        if method.calibration_count() >= method.calibrate_tiles:
            break
        offset = float(rng.uniform(-hint_range_um, hint_range_um))
        number = CALIBRATION_TRIAL_BASE + i * n + k
        assert isinstance(method, FocusMethod)
        out.append(
            _seeded_trial(
                method, stacks[o], optics, timing, offset, hint_range_um, number, seed, mechanics
            )
        )
    method.calibration_frozen = True
    return out


def _stack_trials(
    method: FocusMethod,
    stack: FocusStack,
    optics: OpticsLike,
    timing: ReplayTiming,
    offsets: Any,
    hint_range_um: float,
    seed: int,
    mechanics: ReplayMechanics | None,
    progress: Callable[[int], None] | None,
    done: int,
) -> list[TrialRecord]:
    """The scored trials on one stack, one per hint offset."""
    records: list[TrialRecord] = []
    for j in range(len(offsets)):
        records.append(
            _seeded_trial(
                method, stack, optics, timing, float(offsets[j]), hint_range_um, j, seed, mechanics
            )
        )
        if progress is not None:
            progress(done + len(records))
    return records


def _seeded_trial(
    method: FocusMethod,
    stack: FocusStack,
    optics: OpticsLike,
    timing: ReplayTiming,
    hint_offset: float,
    hint_range_um: float,
    number: int,
    seed: int,
    mechanics: ReplayMechanics | None,
) -> TrialRecord:
    """Trial `number` on `stack` from hint = true focus + `hint_offset`, with the mechanics'
    repeatability seeded for this trial (`trial_seed`)."""
    truth = float(stack.true_focus_um)  # type: ignore[arg-type]  # checked by check_stacks
    trial_mechanics = None
    if mechanics is not None:
        trial_mechanics = dataclasses.replace(
            mechanics, seed=trial_seed(seed, mechanics.seed, stack.id, number)
        )
    return _run_trial(
        method,
        stack,
        optics,
        timing,
        truth,
        truth + hint_offset,
        hint_range_um,
        number,
        stack.z_range_um,
        trial_mechanics,
    )


def trial_seed(eval_seed: int, mechanics_seed: int, stack_id: str, trial: int) -> int:
    """The repeatability seed of one trial: a hash of everything that names it, so trials
    differ from one another and a rerun (or another method) meets the same draws."""
    sequence = np.random.SeedSequence(
        [int(eval_seed), int(mechanics_seed), zlib.crc32(stack_id.encode()), int(trial)]
    )
    return int(sequence.generate_state(1)[0])


def _run_trial(
    method: FocusMethod,
    stack: FocusStack,
    optics: OpticsLike,
    timing: ReplayTiming,
    truth: float,
    hint: float,
    hint_range_um: float,
    trial: int,
    z_range: tuple[float, float],
    mechanics: ReplayMechanics | None = None,
) -> TrialRecord:
    scope = ReplayMicroscope(stack, optics, timing=timing, start_z_um=hint, mechanics=mechanics)
    drive = FocusDrive(scope)
    range_um = hint_range_um if hint_range_um > 0 else None  # 0: say nothing, method default
    t_hw = scope.now()
    t0 = time.perf_counter()
    scored_at_hint = False
    final_frame = None
    fallback = ""
    try:
        result = method.focus(drive, FocusHint(z_um=hint, range_um=range_um, source="eval"))
    except (FocusError, HardwareError) as exc:
        compute_s = time.perf_counter() - t0
        scored_at_hint = True
        z, ok, conf, reported_frames = hint, False, 0.0, scope.frames_taken
        message = f"raised {type(exc).__name__}: {exc}"
    else:
        compute_s = time.perf_counter() - t0
        z = math.nan if result.z_um is None else float(result.z_um)
        ok, conf = bool(result.ok), float(result.confidence)
        reported_frames, message = int(result.frames), str(result.message)
        final_frame = result.final_frame
        fallback = "" if result.fallback is None else result.fallback.to
        if not math.isfinite(z):
            scored_at_hint, ok, z, final_frame = True, False, hint, None
            message = f"returned a non-finite z ({result.z_um}); {message}".rstrip("; ")
    # What the method spent, before the eval's own final move (if any).
    frames, moves, hardware_s = scope.frames_taken, scope.moves, scope.now() - t_hw
    lo, hi = z_range
    in_range = lo <= z <= hi
    scored = _final_image_z(scope, drive, stack, z, final_frame) if in_range else z
    return TrialRecord(
        stack_id=stack.id,
        trial=trial,
        true_focus_um=truth,
        hint_z_um=hint,
        z_um=scored,
        error_um=scored - truth,
        ok=ok,
        scored_at_hint=scored_at_hint,
        in_range=in_range,
        frames=frames,
        reported_frames=reported_frames,
        moves=moves,
        hardware_s=hardware_s,
        compute_s=compute_s,
        confidence=conf,
        message=message,
        z_commanded_um=z,
        true_z_clamps=scope.replay_stage.true_z_clamps,
        fallback=fallback,
    )


def _final_image_z(
    scope: ReplayMicroscope,
    drive: FocusDrive,
    stack: FocusStack,
    z: float,
    final_frame: FrameLike | None,
) -> float:
    """The true z of the tile's final image (see the module docstring): where the method's own
    final frame was served, else where a scan's move to `z` through the drive really lands."""
    meta = final_frame.meta if final_frame is not None else {}
    if meta.get("stack_id") == stack.id:
        true_position = meta.get("true_position_um")
        if true_position is not None:
            return float(true_position[2])
    drive.move_to(z)
    return scope.true_z_um


def stage_model(preset: str | None, stacks: Any) -> dict[str, Any]:
    """`evaluate_method` keywords for a stage preset: none for the default ideal stage; else
    the preset's Z mechanics and Z/light timing over the camera timing the file recorded."""
    if preset is None:
        return {}
    recorded, source = timing_for(stacks)
    return {
        "timing": ReplayTiming.from_stage_preset(preset, base=recorded),
        "timing_source": f"{preset} stage, {source} camera",
        "mechanics": ReplayMechanics.from_stage_preset(preset),
        "stage": preset,
    }


def evaluate_files(
    method: FocusMethod,
    make_method: Callable[[], FocusMethod],
    opened: Sequence[tuple[str, Any, dict[str, Any]]],
    hint_range_um: float,
    trials: int,
    seed: int,
    *,
    params: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[EvalReport]:
    """Evaluate each open (label, stack file, `stage_model` keywords) as a one-file run would:
    the same seed and a method of its own (`method` for the first, `make_method()` for each
    other), so no state a method keeps between calls leaks from one file into the next.
    `progress(n)` gets the trials done over all files. A `ValueError` names the file."""
    reports: list[EvalReport] = []
    done = 0
    for k, (label, stacks, stage_kw) in enumerate(opened):
        step = None if progress is None else (lambda n, base=done: progress(base + n))
        try:
            reports.append(
                evaluate_method(
                    method if k == 0 else make_method(),
                    stacks,
                    hint_range_um,
                    trials,
                    seed,
                    params=params,
                    progress=step,
                    **stage_kw,
                )
            )
        except ValueError as exc:
            raise ValueError(f"{label}: {exc}" if len(opened) > 1 else str(exc)) from None
        done += len(stacks) * trials
    return reports
