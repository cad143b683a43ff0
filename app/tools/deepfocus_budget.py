"""DeepFocus against Brent at equal frame budgets (Shajkofci & Liebling, Section 3.3 and Fig. 4:
the focus error as a function of the number of images).

For each budget (default 3, 4, 5, 6 frames per trial, the final capture counted) every
contender (`deepfocus_compare.contenders`: DeepFocus with its `max_frames`, Brent with
Tenengrad and with Brenner with their `max_frames`, which makes Brent the paper's bounded
Brent from the first frame) runs the focus yardstick (`evaluate.evaluate_files`) on the same
files with the same seed, so every (method, budget) meets the same hints. Each cell is the
summary of all trials of all files pooled: MAE, the fraction within DOF/2, the frames a trial
really took.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slidescan.app.tools.deepfocus_compare import (
    check_same_optics,
    contenders,
    optics_line,
    pooled_summary,
)
from slidescan.app.tools.eval_report import EvalSummary, eval_dof_um
from slidescan.app.tools.evaluate import evaluate_files

DEFAULT_BUDGETS = (3, 4, 5, 6)


@dataclass
class BudgetReport:
    budgets: list[int]
    keys: list[str]
    cells: dict[tuple[int, str], EvalSummary]
    hint_range_um: float
    trials_per_stack: int
    seed: int
    dof_um: float
    files: list[str] = field(default_factory=list)
    optics: str = ""
    stage: str = "ideal"

    def setup_line(self) -> str:
        n = next(iter(self.cells.values())).trials if self.cells else 0
        return (
            f"{len(self.files)} file(s), {n} trials per cell ({self.trials_per_stack} per "
            f"stack), hint = truth + U(+/-{self.hint_range_um:g}) um, seed {self.seed}, "
            f"stage {self.stage}; DOF/2 = {self.dof_um / 2:.3f} um"
            + (f"; optics {self.optics}" if self.optics else "")
        )

    def format_table(self) -> str:
        w = 24
        top = f"{'frames':<7}" + "".join(f"{k:<{w}}" for k in self.keys)
        head = f"{'MAE um':>7} {'DOF/2':>6} {'frames':>6}"
        sub = f"{'':<7}" + f"{head:<{w}}" * len(self.keys)
        lines = [self.setup_line(), "", top, sub, "-" * len(top)]
        for b in self.budgets:
            row = f"{b:<7}"
            for k in self.keys:
                s = self.cells[(b, k)]
                pct = f"{100 * s.within_fraction:.0f}%"
                cell = f"{s.mae_um:>7.3f} {pct:>6} {s.frames_mean:>6.2f}"
                row += f"{cell:<{w}}"
            lines.append(row)
        return "\n".join(lines)

    def format_markdown(self) -> str:
        head = "| frames | " + " | ".join(
            f"{k} MAE um | {k} within DOF/2 | {k} frames" for k in self.keys
        )
        lines = [head + " |", "|---:" + "|---:|---:|---:" * len(self.keys) + "|"]
        for b in self.budgets:
            cells = []
            for k in self.keys:
                s = self.cells[(b, k)]
                cells += [
                    f"{s.mae_um:.3f}",
                    f"{100 * s.within_fraction:.0f} %",
                    f"{s.frames_mean:.2f}",
                ]
            lines.append(f"| {b} | " + " | ".join(cells) + " |")
        return "\n".join([*lines, "", self.setup_line()])

    def to_dict(self) -> dict[str, Any]:
        return {
            "budgets": self.budgets,
            "methods": self.keys,
            "hint_range_um": self.hint_range_um,
            "trials_per_stack": self.trials_per_stack,
            "seed": self.seed,
            "dof_um": self.dof_um,
            "files": self.files,
            "optics": self.optics,
            "stage": self.stage,
            "cells": [
                {"budget": b, "method": k, "summary": asdict(self.cells[(b, k)])}
                for b in self.budgets
                for k in self.keys
            ],
        }


def run_budgets(
    opened: Sequence[tuple[str, Any, dict[str, Any]]],
    calibration: Path | str,
    weights: Path | str | None = None,
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    hint_range_um: float = 5.0,
    trials: int = 5,
    seed: int = 0,
    stage: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> BudgetReport:
    """Every contender at every budget on the open (label, `StackFile`, `stage_model`
    keywords) files. `progress(n)` gets the trials done so far over everything."""
    if not opened:
        raise ValueError("no stack files given")
    if not budgets or any(b < 2 for b in budgets):
        raise ValueError("every budget must be at least 2 frames")
    check_same_optics([(label, f.optics) for label, f, _ in opened])
    optics = opened[0][1].optics
    per_run = sum(len(f) for _, f, _ in opened) * trials
    cells: dict[tuple[int, str], EvalSummary] = {}
    keys: list[str] = []
    done = 0
    for b in budgets:
        for c in contenders(calibration, weights, int(b)):
            if c.key not in keys:
                keys.append(c.key)
            step = None if progress is None else (lambda n, base=done: progress(base + n))
            reports = evaluate_files(
                c.make(),
                c.make,
                opened,
                hint_range_um,
                trials,
                seed,
                params=c.params,
                progress=step,
            )
            cells[(int(b), c.key)] = pooled_summary(reports, optics)
            done += per_run
    return BudgetReport(
        budgets=[int(b) for b in budgets],
        keys=keys,
        cells=cells,
        hint_range_um=float(hint_range_um),
        trials_per_stack=int(trials),
        seed=int(seed),
        dof_um=eval_dof_um(optics),
        files=[label for label, _, _ in opened],
        optics=optics_line(optics),
        stage=stage or "ideal",
    )
