"""`slidescan focus eval`: score a focus method on a focus-stack file (see app/evaluate.py)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from slidescan.app.cli import CliError, print_json
from slidescan.hardware.stackfile import StackFileError, open_stacks


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "focus",
        help="focus methods: evaluate on recorded or simulated stacks",
        description="Focus methods: evaluate them on focus-stack files.",
    )
    p.set_defaults(func=_no_action)
    sub = p.add_subparsers(dest="focus_action", metavar="ACTION", parser_class=type(p))

    e = sub.add_parser(
        "eval",
        help="score a focus method on every stack of a focus-stack file",
        description=(
            "Run focus method MODE on every stack of a focus-stack file through the stack-replay "
            "microscope. Each trial starts at a hint = true focus + uniform(-range, +range) um "
            "(seeded). Reports |error| statistics (error = returned z - true focus, never "
            "clipped), the fraction within half the depth of field, failures, frames and "
            "hardware (virtual clock) and compute (wall) seconds per trial. With --stage the "
            "replayed Z drive has the steps, backlash, repeatability and motion timing of a "
            "simulator stage preset, and a trial is scored at the true z of its final image."
        ),
    )
    e.add_argument("--mode", required=True, help="focus method name (see the error for a list)")
    e.add_argument("--stacks", required=True, help="focus-stack file (.h5)")
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
    e.add_argument("--json", action="store_true", help="print the full report as JSON")
    e.set_defaults(func=_eval)


def _no_action(args: argparse.Namespace) -> int:
    raise CliError("focus: choose an action: eval (see slidescan focus --help)")


def parse_params(items: list[str]) -> dict[str, Any]:
    """`["k=3", "name=brenner", "fast=true"]` -> `{"k": 3, "name": "brenner", "fast": True}`."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise CliError(f"focus eval: --param expects KEY=VALUE, got {item!r}")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params[key] = value
    return params


def make_method(name: str, params: dict[str, Any]) -> Any:
    """The focus method `name` from the registry, with a one-line error for a bad name/param."""
    try:
        from slidescan.focus.registry import available_methods, get_method
    except ImportError as exc:
        raise CliError(f"focus methods are not available: {exc}", code=1) from None
    known = list(available_methods())
    if name not in known:
        raise CliError(f"focus eval: unknown mode {name!r}; available: {', '.join(known)}")
    try:
        return get_method(name, **params)
    except (TypeError, ValueError, KeyError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CliError(f"focus eval: mode {name!r} rejected the parameters: {text}") from None


def _eval(args: argparse.Namespace) -> int:
    from slidescan.app.evaluate import check_stacks, evaluate_method

    if args.trials < 1:
        raise CliError("focus eval: --trials must be at least 1")
    if not (math.isfinite(args.hint_range) and args.hint_range >= 0):
        raise CliError("focus eval: --hint-range must be a number >= 0")
    if args.stage is not None:
        from slidescan.hardware.replay import stage_preset_names

        if args.stage not in stage_preset_names():
            known = ", ".join(stage_preset_names())
            raise CliError(f"focus eval: unknown --stage {args.stage!r}; known presets: {known}")
    params = parse_params(args.param)
    method = make_method(args.mode, params)
    try:
        stacks = open_stacks(args.stacks)
    except StackFileError as exc:
        raise CliError(str(exc), code=1) from None
    with stacks:
        try:
            check_stacks(stacks, args.hint_range)
            stage_kw = _stage_model(args.stage, stacks)
        except ValueError as exc:
            raise CliError(f"focus eval: {exc}", code=1) from None
        total = len(stacks) * args.trials
        bar = None
        if not args.json:
            from tqdm import tqdm

            bar = tqdm(total=total, desc=f"eval {args.mode}", unit="trial", file=sys.stderr)
        try:
            report = evaluate_method(
                method,
                stacks,
                args.hint_range,
                args.trials,
                args.seed,
                params=params,
                progress=None if bar is None else lambda n: bar.update(n - bar.n),
                **stage_kw,
            )
        except ValueError as exc:
            raise CliError(f"focus eval: {exc}", code=1) from None
        finally:
            if bar is not None:
                bar.close()
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.format_table())
    return 0


def _stage_model(preset: str | None, stacks: Any) -> dict[str, Any]:
    """`evaluate_method` keywords for `--stage`: none for the default ideal stage; else the
    preset's Z mechanics and Z/light timing over the camera timing the file recorded."""
    if preset is None:
        return {}
    from slidescan.hardware.replay import ReplayMechanics, ReplayTiming, timing_for

    recorded, source = timing_for(stacks)
    return {
        "timing": ReplayTiming.from_stage_preset(preset, base=recorded),
        "timing_source": f"{preset} stage, {source} camera",
        "mechanics": ReplayMechanics.from_stage_preset(preset),
        "stage": preset,
    }
