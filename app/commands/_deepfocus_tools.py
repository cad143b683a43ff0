"""`slidescan focus invariance`, `focus budget`, `focus capture-range` and `focus
calibration-gap`: the DeepFocus paper's offline measurements on focus-stack files, and what
the calibration costs (the tools are app/tools/deepfocus_invariance.py, deepfocus_budget.py,
deepfocus_capture.py and deepfocus_gap.py; this is their command line). Registered under
`slidescan focus` by `register`."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from slidescan.app.cli import CliError, print_json


def register(sub: argparse._SubParsersAction) -> None:
    i = sub.add_parser(
        "invariance",
        help="DeepFocus's Table 1: how sample-invariant and informative each focus score is",
        description=(
            "Score every plane of every stack (one stack = one sample) with DeepFocus's network "
            "(median over the patches it judges valid) and the classical metrics HPF, "
            "Tenengrad, LAPV, Brenner and normalised variance; normalise each curve to [0, 1] "
            "(1 = blurriest) on a common defocus grid and report per score sigma (SD across "
            "samples averaged over |defocus| <= --range) and the paper's conditional entropy "
            "H(B|Z) over the whole grid (20 bins, natural log). Files must share their optics."
        ),
    )
    _stacks_arg(i)
    i.add_argument(
        "--weights", type=Path, default=None, help="network checkpoint (default shipped)"
    )
    i.add_argument(
        "--range",
        type=float,
        default=None,
        metavar="UM",
        help="half range of the SD average, um (default 5 depths of field)",
    )
    i.add_argument("--bins", type=int, default=20, help="entropy bins on [0, 1] (default 20)")
    _output_args(i, markdown=True)
    i.set_defaults(func=_invariance)

    b = sub.add_parser(
        "budget",
        help="DeepFocus against Brent (Tenengrad, Brenner) at equal frame budgets",
        description=(
            "For each frame budget, score DeepFocus (max_frames) and the bounded Brent search "
            "with Tenengrad and with Brenner (max_frames: no coarse pass) on the same hints "
            "(true focus + uniform(-range, +range), seeded), as `slidescan focus eval` does; one "
            "row per budget: MAE, the fraction within DOF/2 and the mean frames per trial, all "
            "files pooled (they must share their optics)."
        ),
    )
    _stacks_arg(b)
    _deepfocus_args(b)
    b.add_argument(
        "--budgets",
        type=_int_list,
        default=[3, 4, 5, 6],
        metavar="N,N,...",
        help="frames per trial, the final capture counted (default 3,4,5,6)",
    )
    _hint_args(b, trials=5, per="per stack")
    b.add_argument(
        "--stage",
        metavar="PRESET",
        default=None,
        help="replay on a simulator stage preset's Z mechanics and timing (as focus eval)",
    )
    _output_args(b, markdown=True)
    b.set_defaults(func=_budget)

    c = sub.add_parser(
        "capture-range",
        help="how far from focus a hint may start and DeepFocus / Brent still find it",
        description=(
            "From fixed hints true focus -/+ d for each offset d, on every stack: the fraction "
            "of trials whose final image lies within one depth of field of the truth, for "
            "DeepFocus and for Brent with Tenengrad (its defaults); the capture range is the "
            "largest d up to which every tested d has at least 90 % success."
        ),
    )
    _stacks_arg(c)
    _deepfocus_args(c)
    c.add_argument(
        "--offsets",
        type=_float_list,
        default=None,
        metavar="UM,UM,...",
        help="hint offsets d, um, each tried as -d and +d (default 1, 2, 3, 5, 7, 10, ... "
        "depths of field, as far as the stacks reach)",
    )
    c.add_argument("--seed", type=int, default=0, help="seed of the trials (default 0)")
    _output_args(c, markdown=False)
    c.set_defaults(func=_capture)

    g = sub.add_parser(
        "calibration-gap",
        help="what DeepFocus's calibration costs: each stack with the given one and its own",
        description=(
            "Every stack searched twice on the same hints (true focus + uniform(-range, "
            "+range), seeded per stack): with the given calibration (made on another specimen) "
            "and with one made on that very stack (the best one calibration stack can give). "
            "The difference is what the specimens' different score curves cost; what the own "
            "calibration leaves is the search's own error."
        ),
    )
    _stacks_arg(g)
    _deepfocus_args(g)
    _hint_args(g, trials=10, per="per stack per arm")
    g.add_argument(
        "--max-frames",
        type=int,
        default=None,
        metavar="N",
        help="most frames per trial, the final capture counted, no recovery (default: the "
        "method's own)",
    )
    g.add_argument(
        "--plane-step",
        type=int,
        default=2,
        metavar="K",
        help="the own calibration from every K-th plane of the stack (default 2)",
    )
    _output_args(g, markdown=False)
    g.set_defaults(func=_gap)


# -- arguments ---------------------------------------------------------------------------------


def _stacks_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--stacks",
        required=True,
        nargs="+",
        action="extend",
        metavar="PATH",
        help="focus-stack files (.h5) or folders (every *.h5 in them); all with the same optics",
    )


def _hint_args(p: argparse.ArgumentParser, trials: int, per: str) -> None:
    """The seeded hint draws of a trial-based tool: their range, count and seed."""
    p.add_argument(
        "--hint-range", type=float, default=5.0, help="hint error range, +- um (default 5)"
    )
    p.add_argument("--trials", type=int, default=trials, help=f"trials {per} (default {trials})")
    p.add_argument("--seed", type=int, default=0, help="seed of the hint draws (default 0)")


def _deepfocus_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--calibration",
        type=Path,
        required=True,
        metavar="CAL",
        help="DeepFocus calibration (from `slidescan focus calibrate`), made on another stack",
    )
    p.add_argument(
        "--weights", type=Path, default=None, help="network checkpoint (default shipped)"
    )


def _output_args(p: argparse.ArgumentParser, markdown: bool) -> None:
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the report as JSON")
    if markdown:
        out.add_argument("--markdown", action="store_true", help="print a markdown table")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected whole numbers like 3,4,5, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one number")
    return values


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 2,5,10, got {text!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError("give at least one finite number")
    return values


# -- shared --------------------------------------------------------------------------------------


@contextmanager
def _opened(action: str, items: list[str]) -> Iterator[list[tuple[str, Any]]]:
    """The --stacks files, open, labelled, checked to share their optics; a bad one is one
    line."""
    from slidescan.app.commands.focus import stack_paths
    from slidescan.app.tools.deepfocus_compare import check_same_optics
    from slidescan.app.tools.eval_report import file_labels
    from slidescan.hardware.stackfile import StackFileError, open_stacks

    try:
        paths, _ = stack_paths(items)
    except CliError as exc:
        raise CliError(str(exc).replace("focus eval:", f"focus {action}:", 1), exc.code) from None
    labels = file_labels([str(p) for p in paths])
    with ExitStack() as files:
        opened = []
        for path, label in zip(paths, labels, strict=True):
            try:
                opened.append((label, files.enter_context(open_stacks(path))))
            except StackFileError as exc:
                raise CliError(f"focus {action}: {exc}", code=1) from None
        try:
            check_same_optics([(label, f.optics) for label, f in opened])
        except ValueError as exc:
            raise CliError(f"focus {action}: {exc}", code=1) from None
        yield opened


def _check_deepfocus(action: str, args: argparse.Namespace, opened: list[tuple[str, Any]]) -> None:
    """Load the network and the calibration now (checked against the files' optics), so a
    wrong path or a calibration for another objective is one line before anything runs."""
    from slidescan.focus.deepfocus_calibration import DeepFocusCalibration
    from slidescan.focus.learned.deepfocus_model import load_sharpness
    from slidescan.focus.protocol import FocusError

    try:
        load_sharpness(args.weights)
        cal = DeepFocusCalibration.load(args.calibration)
        for label, f in opened:
            try:
                cal.check_matches(f.optics)
            except FocusError as exc:
                raise FocusError(f"{label}: {exc}") from None
    except FocusError as exc:
        raise CliError(f"focus {action}: {exc}", code=1) from None


@contextmanager
def _bar(enabled: bool, desc: str, unit: str, total: int | None = None):
    """A tqdm bar on stderr (None when disabled); yields an update(n_done) function."""
    bar = None
    if enabled:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)

    def update(n: int) -> None:
        if bar is not None:
            bar.update(n - bar.n)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()


def _print(args: argparse.Namespace, report: Any) -> None:
    if args.json:
        print_json(report.to_dict())
    elif getattr(args, "markdown", False):
        print(report.format_markdown())
    else:
        print(report.format_table())


def _run(action: str, work: Callable[[], Any]) -> Any:
    """The tool's work; its `ValueError` or `FocusError` is one line."""
    from slidescan.focus.protocol import FocusError

    try:
        return work()
    except (ValueError, FocusError) as exc:
        raise CliError(f"focus {action}: {exc}", code=1) from None


# -- the actions ---------------------------------------------------------------------------------


def _invariance(args: argparse.Namespace) -> int:
    from slidescan.app.tools.deepfocus_invariance import (
        classical_scorers,
        deepfocus_scorer,
        measure_files,
    )
    from slidescan.focus.protocol import FocusError

    if args.range is not None and not (math.isfinite(args.range) and args.range > 0):
        raise CliError("focus invariance: --range must be a positive number of um")
    if args.bins < 2:
        raise CliError("focus invariance: --bins must be at least 2")
    with _opened("invariance", args.stacks) as opened:
        if sum(len(f) for _, f in opened) < 2:
            raise CliError("focus invariance: sample invariance needs at least 2 stacks", code=1)
        try:
            scorers = [deepfocus_scorer(args.weights), *classical_scorers()]
        except FocusError as exc:
            raise CliError(f"focus invariance: {exc}", code=1) from None
        total = sum(len(f.z_um(i)) for _, f in opened for i in range(len(f)))
        with _bar(not args.json, "invariance", "plane", total) as update:
            count = [0]

            def progress() -> None:
                count[0] += 1
                update(count[0])

            report = _run(
                "invariance",
                lambda: measure_files(opened, scorers, args.range, args.bins, progress),
            )
    _print(args, report)
    return 0


def _budget(args: argparse.Namespace) -> int:
    from slidescan.app.tools.deepfocus_budget import run_budgets
    from slidescan.app.tools.evaluate import check_stacks, stage_model

    if args.trials < 1:
        raise CliError("focus budget: --trials must be at least 1")
    if not (math.isfinite(args.hint_range) and args.hint_range >= 0):
        raise CliError("focus budget: --hint-range must be a number >= 0")
    if any(b < 2 for b in args.budgets):
        raise CliError("focus budget: every budget must be at least 2 frames")
    if args.stage is not None:
        from slidescan.hardware.replay import stage_preset_names

        if args.stage not in stage_preset_names():
            known = ", ".join(stage_preset_names())
            raise CliError(f"focus budget: unknown --stage {args.stage!r}; known presets: {known}")
    with _opened("budget", args.stacks) as files:
        _check_deepfocus("budget", args, files)
        opened = []
        for label, f in files:
            try:
                check_stacks(f, args.hint_range)
                opened.append((label, f, stage_model(args.stage, f)))
            except ValueError as exc:
                raise CliError(f"focus budget: {label}: {exc}", code=1) from None
        total = 3 * len(args.budgets) * sum(len(f) for _, f in files) * args.trials
        with _bar(not args.json, "budget", "trial", total) as update:
            report = _run(
                "budget",
                lambda: run_budgets(
                    opened,
                    args.calibration,
                    args.weights,
                    args.budgets,
                    args.hint_range,
                    args.trials,
                    args.seed,
                    args.stage,
                    progress=update,
                ),
            )
    _print(args, report)
    return 0


def _capture(args: argparse.Namespace) -> int:
    from slidescan.app.tools.deepfocus_capture import run_capture

    if args.offsets is not None and not all(v > 0 for v in args.offsets):
        raise CliError("focus capture-range: --offsets must be positive numbers of um")
    with _opened("capture-range", args.stacks) as opened:
        _check_deepfocus("capture-range", args, opened)
        with _bar(not args.json, "capture range", "trial") as update:
            report = _run(
                "capture-range",
                lambda: run_capture(
                    opened, args.calibration, args.weights, args.offsets, args.seed, update
                ),
            )
    _print(args, report)
    return 0


def _gap(args: argparse.Namespace) -> int:
    from slidescan.app.tools.deepfocus_gap import run_gap

    if args.trials < 1:
        raise CliError("focus calibration-gap: --trials must be at least 1")
    if not (math.isfinite(args.hint_range) and args.hint_range >= 0):
        raise CliError("focus calibration-gap: --hint-range must be a number >= 0")
    if args.max_frames is not None and args.max_frames < 2:
        raise CliError("focus calibration-gap: --max-frames must be at least 2")
    if args.plane_step < 1:
        raise CliError("focus calibration-gap: --plane-step must be at least 1")
    with _opened("calibration-gap", args.stacks) as files:
        _check_deepfocus("calibration-gap", args, files)
        total = 2 * sum(len(f) for _, f in files) * args.trials
        with _bar(not args.json, "calibration gap", "trial", total) as update:
            report = _run(
                "calibration-gap",
                lambda: run_gap(
                    [(label, f, {}) for label, f in files],
                    args.calibration,
                    args.weights,
                    args.hint_range,
                    args.trials,
                    args.seed,
                    args.max_frames,
                    args.plane_step,
                    progress=update,
                ),
            )
    _print(args, report)
    return 0
