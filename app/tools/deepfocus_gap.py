"""What DeepFocus's calibration costs: every stack searched twice, on the same hints, once with
the given calibration (made on another specimen, as in use) and once with a calibration made on
that very stack (the best one calibration stack can give: its curve is this specimen's own).

The first arm's error is the method's; the second's is what the search itself leaves (frames,
noise, the fit) with the specimen-to-specimen difference of the score curve taken away. Their
difference is what that difference costs, so it says where work on the method should go: the
network's invariance across specimens, or the search. The stack's own calibration is made as
`slidescan focus calibrate --stacks` makes one (`calibrate_stack`), from every `plane_step`-th
plane. Hints: true focus + uniform(+/-range), seeded per stack, the same for both arms.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slidescan.app.tools.deepfocus_compare import check_same_optics, optics_line
from slidescan.app.tools.eval_report import EvalSummary, eval_dof_um
from slidescan.app.tools.evaluate import check_stacks, evaluate_method
from slidescan.focus.deepfocus_calibration import DeepFocusCalibration
from slidescan.focus.learned.deepfocus import DeepFocusFocus
from slidescan.focus.learned.deepfocus_calibrate import calibrate_stack
from slidescan.focus.learned.deepfocus_model import load_sharpness
from slidescan.focus.protocol import FocusMethod
from slidescan.hardware.stackfile import FocusStack

ARMS = ("given", "own")


class OneStack:
    """A stack file seen as holding its stack `index` alone (what the yardstick reads of a file:
    its length, its stacks, its optics and its attributes)."""

    def __init__(self, stacks: Any, index: int) -> None:
        self._stacks = stacks
        self._index = int(index)

    @property
    def optics(self) -> Any:
        return self._stacks.optics

    @property
    def attrs(self) -> Any:
        return getattr(self._stacks, "attrs", {})

    def __len__(self) -> int:
        return 1

    def __getitem__(self, k: int) -> FocusStack:
        if k not in (0, -1):
            raise IndexError(f"a one-stack view has stack 0 only, not {k}")
        return self._stacks[self._index]


def thinned(stack: FocusStack, step: int) -> FocusStack:
    """Every `step`-th plane of `stack` (a calibration stack need not be as fine as a test one)."""
    if step < 1:
        raise ValueError(f"plane step must be at least 1, got {step}")
    keep = slice(None, None, step)
    return FocusStack(
        id=stack.id,
        images=np.asarray(stack.images[keep]),
        z_um=stack.z_um[keep],
        true_focus_um=stack.true_focus_um,
        meta=dict(stack.meta),
    )


@dataclass
class GapRow:
    """One stack: each arm's summary and the width of its own curve."""

    file: str
    stack_id: str
    own_fwhm_um: float
    given: EvalSummary
    own: EvalSummary


@dataclass
class GapReport:
    rows: list[GapRow]
    pooled: dict[str, EvalSummary]
    given_fwhm_um: float
    hint_range_um: float
    trials_per_stack: int
    seed: int
    max_frames: int | None
    dof_um: float
    files: list[str] = field(default_factory=list)
    optics: str = ""

    def setup_line(self) -> str:
        frames = (
            "the method's own budget"
            if self.max_frames is None
            else (f"at most {self.max_frames} frames, no recovery")
        )
        return (
            f"{len(self.files)} file(s), {len(self.rows)} stacks, {self.trials_per_stack} trials "
            f"per stack per arm, hint = truth + U(+/-{self.hint_range_um:g}) um, seed "
            f"{self.seed}, {frames}; given calibration's FWHM {self.given_fwhm_um:.2f} um; "
            f"DOF/2 = {self.dof_um / 2:.3f} um" + (f"; optics {self.optics}" if self.optics else "")
        )

    def format_table(self) -> str:
        head = (
            f"{'file':<28} {'stack':<8} {'own FWHM':>8} {'MAE given':>10} {'MAE own':>8} {'gap':>7}"
        )
        lines = [self.setup_line(), "", head, "-" * len(head)]
        for r in self.rows:
            gap = r.given.mae_um - r.own.mae_um
            lines.append(
                f"{r.file[-28:]:<28} {r.stack_id:<8} {r.own_fwhm_um:>8.2f} "
                f"{r.given.mae_um:>10.3f} {r.own.mae_um:>8.3f} {gap:>+7.3f}"
            )
        g, o = self.pooled["given"], self.pooled["own"]
        lines += [
            "-" * len(head),
            f"{'pooled':<37} {'':>8} {g.mae_um:>10.3f} {o.mae_um:>8.3f} "
            f"{g.mae_um - o.mae_um:>+7.3f}",
            "",
            f"given calibration: MAE {g.mae_um:.3f} um, median {g.median_abs_um:.3f}, "
            f"{100 * g.within_fraction:.1f} % within DOF/2, {g.frames_mean:.2f} frames",
            f"own calibration:   MAE {o.mae_um:.3f} um, median {o.median_abs_um:.3f}, "
            f"{100 * o.within_fraction:.1f} % within DOF/2, {o.frames_mean:.2f} frames",
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hint_range_um": self.hint_range_um,
            "trials_per_stack": self.trials_per_stack,
            "seed": self.seed,
            "max_frames": self.max_frames,
            "dof_um": self.dof_um,
            "given_fwhm_um": self.given_fwhm_um,
            "files": self.files,
            "optics": self.optics,
            "stacks": [
                {
                    "file": r.file,
                    "stack": r.stack_id,
                    "own_fwhm_um": r.own_fwhm_um,
                    "given": asdict(r.given),
                    "own": asdict(r.own),
                }
                for r in self.rows
            ],
            "summary": {arm: asdict(s) for arm, s in self.pooled.items()},
        }


def run_gap(
    opened: Sequence[tuple[str, Any, dict[str, Any]]],
    calibration: Path | str,
    weights: Path | str | None = None,
    hint_range_um: float = 40.0,
    trials: int = 10,
    seed: int = 0,
    max_frames: int | None = None,
    plane_step: int = 2,
    progress: Callable[[int], None] | None = None,
    *,
    calibrate_own: Callable[[FocusStack, Any, str], DeepFocusCalibration] | None = None,
    make_method: Callable[[str], FocusMethod] | None = None,
) -> GapReport:
    """Both arms on every stack of the open (label, `StackFile`, `stage_model` keywords)
    files. `progress(n)` gets the trials done so far over everything. `calibrate_own(stack,
    optics, source)` and `make_method(calibration path)` default to the shipped network's
    calibration of every `plane_step`-th plane and `DeepFocusFocus` with these weights and
    `max_frames`."""
    if not opened:
        raise ValueError("no stack files given")
    if trials < 1:
        raise ValueError(f"trials per stack must be at least 1, got {trials}")
    if plane_step < 1:
        raise ValueError(f"plane step must be at least 1, got {plane_step}")
    check_same_optics([(label, f.optics) for label, f, _ in opened])
    for _, f, _ in opened:
        check_stacks(f, hint_range_um)
    optics = opened[0][1].optics
    given = DeepFocusCalibration.load(calibration)
    given.check_matches(optics)
    params: dict[str, Any] = {} if weights is None else {"weights": str(weights)}
    if max_frames is not None:
        params |= {"max_frames": int(max_frames), "recover": False}
    if calibrate_own is None:
        net = load_sharpness(weights)

        def calibrate_own(stack: FocusStack, optics: Any, source: str) -> DeepFocusCalibration:
            return calibrate_stack(net, thinned(stack, plane_step), optics, source)

    if make_method is None:

        def make_method(cal: str) -> FocusMethod:
            return DeepFocusFocus(calibration=cal, **params)

    rows: list[GapRow] = []
    records: dict[str, list[Any]] = {arm: [] for arm in ARMS}
    done = 0
    with tempfile.TemporaryDirectory(prefix="slidescan-gap-") as tmp:
        for label, f, stage_kw in opened:
            for i in range(len(f)):
                stack = f[i]
                own = calibrate_own(stack, f.optics, f"{label}:{stack.id}")
                own_path = own.save(Path(tmp) / f"own_{len(rows)}.json")
                summaries = {}
                for arm, cal in (("given", Path(calibration)), ("own", own_path)):
                    step = None if progress is None else (lambda n, base=done: progress(base + n))
                    report = evaluate_method(
                        make_method(str(cal)),
                        OneStack(f, i),
                        hint_range_um,
                        trials,
                        seed + len(rows),
                        progress=step,
                        **stage_kw,
                    )
                    summaries[arm] = report.summary
                    records[arm] += report.records
                    done += trials
                rows.append(
                    GapRow(
                        label, stack.id, float(own.fwhm_um), summaries["given"], summaries["own"]
                    )
                )
    dof = eval_dof_um(optics)
    return GapReport(
        rows=rows,
        pooled={arm: EvalSummary.of(records[arm], dof) for arm in ARMS},
        given_fwhm_um=float(given.fwhm_um),
        hint_range_um=float(hint_range_um),
        trials_per_stack=int(trials),
        seed=int(seed),
        max_frames=max_frames,
        dof_um=dof,
        files=[label for label, _, _ in opened],
        optics=optics_line(optics),
    )
