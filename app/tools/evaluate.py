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
from typing import Any

import numpy as np

from slidescan.app.tools.eval_report import (
    EvalReport,
    EvalSummary,
    TrialRecord,
    eval_dof_um,
)
from slidescan.focus.drive import FocusDrive
from slidescan.focus.protocol import (
    FocusError,
    FocusHint,
    FocusMethod,
    FrameLike,
    OpticsLike,
    SlideCalibrated,
)
from slidescan.hardware.errors import HardwareError
from slidescan.hardware.replay import ReplayMechanics, ReplayMicroscope, ReplayTiming, timing_for
from slidescan.hardware.stackfile import FocusStack


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


def evaluate_offsets(
    method: FocusMethod,
    stacks: Any,
    offsets_um: Sequence[float],
    *,
    hint_range_um: float = 0.0,
    seed: int = 0,
    optics: OpticsLike | None = None,
    timing: ReplayTiming | None = None,
    mechanics: ReplayMechanics | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[TrialRecord]:
    """Trials at fixed hints instead of drawn ones: on every stack, one trial from hint = true
    focus + each of `offsets_um` (trial number = the offset's index), scored as
    `evaluate_method` scores. The hint carries `hint_range_um` as its range (0: none, the
    method's own default). Each offset must keep the hint inside every stack. A slide-calibrated
    method calibrates on the other stacks first, as in `evaluate_method`."""
    optics = optics if optics is not None else getattr(stacks, "optics", None)
    if optics is None:
        raise ValueError("evaluate_offsets needs the optics: pass a StackFile or optics=")
    offsets = np.asarray(offsets_um, dtype=np.float64)
    if offsets.ndim != 1 or offsets.size == 0 or not np.all(np.isfinite(offsets)):
        raise ValueError("give at least one finite hint offset")
    check_stacks(stacks, float(np.max(np.abs(offsets))))
    if not (math.isfinite(hint_range_um) and hint_range_um >= 0):
        raise ValueError(f"hint range must be a finite number >= 0, got {hint_range_um}")
    if timing is None:
        timing, _ = timing_for(stacks)
    method.prepare(optics)
    calibrating = isinstance(method, SlideCalibrated) and method.calibrate_tiles > 0
    calib_range = max(float(np.max(np.abs(offsets))), hint_range_um)
    records: list[TrialRecord] = []
    try:
        for i in range(len(stacks)):
            stack: FocusStack = stacks[i]
            if calibrating:
                _calibrate(method, stacks, i, optics, timing, calib_range, seed, mechanics)
            records += _stack_trials(
                method,
                stack,
                optics,
                timing,
                offsets,
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
    return records


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
