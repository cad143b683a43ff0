"""`slidescan focus eval`: score a focus method on focus-stack files (the tool is
app/tools/evaluate.py; this is its command line).

One file gives the one-file report. Several files (one per specimen, as held-out sets are
kept), or any folder, give one row per file and the rows pooled: the table model cards quote,
made by one reproducible command instead of a script. Every file is evaluated exactly as it
would be alone (the same seed, a freshly made method), so its row does not depend on which
other files were in the set.

A method that makes the tile's image instead of measuring a z (an `ImageMaker`: tsva) is scored
on image quality instead (app/tools/evaluate_images.py): PSNR and SSIM against each stack's
noise-free reference, by prediction error, beside its baselines.
"""

from __future__ import annotations

import argparse
import math
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from slidescan.app.cli import CliError, focus_params, print_json
from slidescan.focus.protocol import ImageMaker
from slidescan.hardware.stackfile import StackFileError, open_stacks


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "focus",
        help="focus methods: evaluate on recorded or simulated stacks; calibrate",
        description="Focus methods: evaluate them on focus-stack files; calibrate DeepFocus.",
    )
    p.set_defaults(func=_no_action)
    sub = p.add_subparsers(dest="focus_action", metavar="ACTION", parser_class=type(p))

    e = sub.add_parser(
        "eval",
        help="score a focus method on every stack of one or more focus-stack files",
        description=(
            "Run focus method MODE on every stack of a focus-stack file through the stack-replay "
            "microscope. Each trial starts at a hint = true focus + uniform(-range, +range) um "
            "(seeded). Reports |error| statistics (error = returned z - true focus, never "
            "clipped), the fraction within half the depth of field, failures, frames and "
            "hardware (virtual clock) and compute (wall) seconds per trial. With --stage the "
            "replayed Z drive has the steps, backlash, repeatability and motion timing of a "
            "simulator stage preset, and a trial is scored at the true z of its final image. "
            "With several files (or a folder) each file is evaluated exactly as it would be "
            "alone, and the report has one line per file, the pooled line ALL and, when some "
            "trials fell back to another method, a pooled line over those that did not; files "
            "whose optics give different DOF/2 thresholds cannot be pooled."
        ),
    )
    e.add_argument("--mode", required=True, help="focus method name (see the error for a list)")
    e.add_argument(
        "--stacks",
        required=True,
        nargs="+",
        action="extend",
        metavar="PATH",
        help=(
            "focus-stack file (.h5) or folder (every *.h5 in it, sorted by name); give several "
            "after one --stacks or repeat the flag: --stacks a.h5 b.h5 and --stacks a.h5 "
            "--stacks b.h5 are the same"
        ),
    )
    e.add_argument(
        "--hint-range", type=float, default=5.0, help="hint error range, +- um (default 5)"
    )
    e.add_argument("--trials", type=int, default=5, help="trials per stack (default 5)")
    e.add_argument("--seed", type=int, default=0, help="seed of the hint draws (default 0)")
    e.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method parameter (repeatable); VALUE is read as JSON when it parses, else text",
    )
    e.add_argument(
        "--stage",
        metavar="PRESET",
        default=None,
        help=(
            "replay on the Z mechanics and motion timing of a simulator stage preset "
            "(commercial, lowcost); default: an ideal stage with the file's recorded timing"
        ),
    )
    out = e.add_mutually_exclusive_group()
    out.add_argument(
        "--json",
        action="store_true",
        help=(
            "print the full report as JSON; with several files: {files: [each file's report], "
            "pooled: summary, pooled_no_fallback: summary or null}"
        ),
    )
    out.add_argument(
        "--markdown",
        action="store_true",
        help="print the per-file and pooled rows as a GitHub markdown table (for model cards)",
    )
    e.add_argument(
        "--spacing",
        type=float,
        default=None,
        metavar="DD",
        help="methods that make the image (tsva): shots at F+e-DD and F+e+DD, um (default: the "
        "method's spacing_um)",
    )
    e.add_argument(
        "--single-weights",
        type=Path,
        default=None,
        help="tsva: weights of the single-input U-Net baseline (default: the shipped ones)",
    )
    e.add_argument(
        "--calibration",
        type=Path,
        default=None,
        metavar="CAL",
        help="deepfocus: the calibration file (from `slidescan focus calibrate`), made on "
        "another stack with the same optics",
    )
    e.add_argument(
        "--max-frames",
        type=int,
        default=None,
        metavar="N",
        help="methods with a frame budget (deepfocus, brent): most frames per trial, the final "
        "capture counted, a hard cap (deepfocus: no recovery frames beyond it)",
    )
    e.set_defaults(func=_eval)
    from slidescan.app.commands import _calibrate_deepfocus, _deepfocus_tools

    _calibrate_deepfocus.register(sub)
    _deepfocus_tools.register(sub)


def _no_action(args: argparse.Namespace) -> int:
    raise CliError(
        "focus: choose an action: eval, calibrate, invariance, budget or capture-range "
        "(see slidescan focus --help)"
    )


def make_method(name: str, params: dict[str, Any]) -> Any:
    """The focus method `name` from the registry, with a one-line error for a bad name/param."""
    from slidescan.focus.registry import UnknownMethodError, get_method

    try:
        return get_method(name, **params)
    except UnknownMethodError as exc:
        raise CliError(f"focus eval: {exc}") from None


def _eval(args: argparse.Namespace) -> int:
    from slidescan.app.tools.eval_report import PooledReport, check_poolable, file_labels
    from slidescan.app.tools.evaluate import check_stacks, evaluate_files, stage_model

    if args.trials < 1:
        raise CliError("focus eval: --trials must be at least 1")
    if not (math.isfinite(args.hint_range) and args.hint_range >= 0):
        raise CliError("focus eval: --hint-range must be a number >= 0")
    if args.stage is not None:
        from slidescan.hardware.replay import stage_preset_names

        if args.stage not in stage_preset_names():
            known = ", ".join(stage_preset_names())
            raise CliError(f"focus eval: unknown --stage {args.stage!r}; known presets: {known}")
    params = focus_params(args.mode, args.param, "focus eval: --param")
    params |= _flag_params(args)
    method = make_method(args.mode, params)  # a bad mode or parameter: refused before any file
    if isinstance(method, ImageMaker):
        return _eval_images(args, method)
    paths, pooled = stack_paths(args.stacks)
    pooled = pooled or args.markdown
    labels = file_labels([str(p) for p in paths])
    with ExitStack() as files:
        opened = []
        # Every file is opened and checked before any trial runs, so a bad file late in the
        # list does not cost the evaluation of the others.
        for path, label in zip(paths, labels, strict=True):
            try:
                stacks = files.enter_context(open_stacks(path))
            except StackFileError as exc:
                raise CliError(str(exc), code=1) from None
            try:
                check_stacks(stacks, args.hint_range)
                stage_kw = stage_model(args.stage, stacks)
            except ValueError as exc:
                where = f"{label}: " if len(paths) > 1 else ""
                raise CliError(f"focus eval: {where}{exc}", code=1) from None
            opened.append((label, stacks, stage_kw))
        if pooled:
            try:
                check_poolable(
                    [(label, s.optics.na, s.optics.immersion_n) for label, s, _ in opened]
                )
            except ValueError as exc:
                raise CliError(f"focus eval: {exc}", code=1) from None
        reports = _run_files(args, params, method, opened, evaluate_files)
    if pooled:
        report = PooledReport.of(reports, labels)
        if args.json:
            print_json(report.to_dict())
        elif args.markdown:
            print(report.format_markdown())
        else:
            print(report.format_table())
    elif args.json:
        print_json(reports[0].to_dict())
    else:
        print(reports[0].format_table())
    return 0


def _flag_params(args: argparse.Namespace) -> dict[str, Any]:
    """--calibration and --max-frames as the method's parameters, refused by a method that
    has no such parameter."""
    from slidescan.focus.registry import UnknownMethodError, params_model

    try:
        fields = params_model(args.mode).model_fields
    except UnknownMethodError as exc:
        raise CliError(f"focus eval: {exc}") from None
    out: dict[str, Any] = {}
    for flag, name, value in (
        ("--calibration", "calibration", args.calibration),
        ("--max-frames", "max_frames", args.max_frames),
    ):
        if value is None:
            continue
        if name not in fields:
            raise CliError(f"focus eval: {flag} does not apply to focus method {args.mode!r}")
        out[name] = str(value) if isinstance(value, Path) else value
    if args.max_frames is not None and "recover" in fields:
        out["recover"] = False  # a budget is a hard cap: no recovery frames beyond it
    return out


def _eval_images(args: argparse.Namespace, method: Any) -> int:
    """The image yardstick (`app/tools/evaluate_images.py`) for a method that makes images."""
    from slidescan.app.tools.evaluate_images import evaluate_images, format_table
    from slidescan.focus.learned.checkpoint import shipped_path
    from slidescan.focus.learned.tsva import DEFAULT_OBJECTIVE, load_fuser
    from slidescan.focus.protocol import FocusError

    spacing = args.spacing if args.spacing is not None else method.params.spacing_um
    if not (math.isfinite(spacing) and spacing > 0):
        raise CliError("focus eval: --spacing must be a positive number")
    single_path = args.single_weights or shipped_path("unet_single", DEFAULT_OBJECTIVE)
    try:
        single, _ = load_fuser(single_path, method.params.threads, method.params.device)
    except FocusError as exc:
        raise CliError(f"focus eval: the single-input baseline: {exc}", code=1) from None
    paths, _ = stack_paths(args.stacks)
    bar = None
    if not args.json:
        from tqdm import tqdm

        bar = tqdm(desc=f"eval {args.mode}", unit="pair", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.refresh()

    with ExitStack() as files:
        opened = []
        for path in paths:
            try:
                opened.append((str(path), files.enter_context(open_stacks(path))))
            except StackFileError as exc:
                raise CliError(str(exc), code=1) from None
        try:
            report = evaluate_images(
                opened,
                lambda a, b: method.fuser.fuse(a, b),
                lambda a: single.fuse(a),
                spacing,
                progress=progress,
            )
        except ValueError as exc:
            raise CliError(f"focus eval: {exc}", code=1) from None
        finally:
            if bar is not None:
                bar.close()
    if args.json:
        print_json(report)
    else:
        print(format_table(report))
    return 0


def stack_paths(items: list[str]) -> tuple[list[Path], bool]:
    """The files `--stacks` names, in order: a file as given, a folder as every `*.h5` in it
    sorted by name; and whether the output is pooled (more than one file, or any folder, so a
    folder's report has the same shape however many files it holds). A folder without `.h5`
    files, or a file named twice, is refused (it would be counted twice in the pool)."""
    paths: list[Path] = []
    folder = False
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.glob("*.h5") if p.is_file())
            if not found:
                raise CliError(f"focus eval: folder {path} holds no .h5 files", code=1)
            paths += found
            folder = True
        else:
            paths.append(path)  # a missing or bad file is named when it is opened
    seen: dict[Path, Path] = {}
    for path in paths:
        key = path.resolve()
        if key in seen:
            raise CliError(f"focus eval: {path} is named twice in --stacks (as {seen[key]})")
        seen[key] = path
    return paths, folder or len(paths) > 1


def _run_files(
    args: argparse.Namespace,
    params: dict[str, Any],
    method: Any,
    opened: list[tuple[str, Any, dict[str, Any]]],
    evaluate_files: Any,
) -> list[Any]:
    """The tool's `evaluate_files` with a progress bar; a bad file is one line."""
    bar = None
    if not (args.json or args.markdown):
        from tqdm import tqdm

        total = sum(len(stacks) for _, stacks, _ in opened) * args.trials
        bar = tqdm(total=total, desc=f"eval {args.mode}", unit="trial", file=sys.stderr)
    try:
        return evaluate_files(
            method,
            lambda: make_method(args.mode, params),
            opened,
            args.hint_range,
            args.trials,
            args.seed,
            params=params,
            progress=None if bar is None else lambda n: bar.update(n - bar.n),
        )
    except ValueError as exc:
        raise CliError(f"focus eval: {exc}", code=1) from None
    finally:
        if bar is not None:
            bar.close()
