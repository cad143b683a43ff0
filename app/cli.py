"""The `slidescan` command line: one entry point, subcommands discovered in app/commands/.

Every subcommand module defines `register(subparsers)` and sets `func` on its parser; `func`
takes the parsed args and returns an exit code. Errors become one line on stderr and a
non-zero exit, never a traceback (set SLIDESCAN_DEBUG=1 to see it).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import pkgutil
import sys
from collections.abc import Sequence
from typing import Any

from slidescan.app import __version__


class CliError(Exception):
    """A user-facing error: printed as one line, exit code `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, like every other error
        sub = self.prog.removeprefix("slidescan").strip()
        raise CliError(f"{sub}: {message}" if sub else message, code=2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="slidescan",
        description="Whole-slide-imaging scanner with learned autofocus and an optical simulator.",
    )
    parser.add_argument("--version", action="version", version=f"slidescan {__version__}")
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="check this installation: start the desktop application, connect the simulator, "
        "scan 2 x 2 tiles, reopen the file; prints READY and exits 0, or one line and exits 1",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    import slidescan.app.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def parse_key_values(items: Sequence[str], where: str) -> dict[str, Any]:
    """`["k=3", "metric=brenner", "pairs=[3, 4.5]"]` -> `{"k": 3, ...}`: each VALUE read as
    JSON when it parses, else as text. `where` names the flag in errors ("scan: --focus-param")."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise CliError(f"{where} expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def focus_params(method: str, items: Sequence[str], where: str) -> dict[str, Any]:
    """KEY=VALUE items checked against focus method `method`'s parameter model; returns the
    given parameters as JSON values (for a scan plan). An unknown method or parameter, or a
    bad value, is one line naming it."""
    from slidescan.focus.registry import UnknownMethodError, validate_params

    raw = parse_key_values(items, where)
    try:
        validated = validate_params(method, raw)
    except UnknownMethodError as exc:
        raise CliError(f"{where.split(':')[0]}: {exc}") from None
    return validated.model_dump(mode="json", include=set(raw))


def print_json(data: Any) -> None:
    """Machine-readable output for --json: one strict JSON document on stdout (a figure that is
    not finite, an exact match's infinite PSNR or an undefined mean, is written as null: bare
    `Infinity`/`NaN` are not JSON and break jq and most parsers)."""
    text = json.dumps(data, sort_keys=True, default=_json_default)
    text = json.dumps(_finite(json.loads(text)), indent=2, sort_keys=True, allow_nan=False)
    sys.stdout.write(text + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def main(argv: Sequence[str] | None = None) -> int:
    debug = os.environ.get("SLIDESCAN_DEBUG", "") not in ("", "0")
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.self_test:
            if args.command is not None:
                raise CliError("--self-test takes no subcommand")
            from slidescan.app.gui.self_test import main as self_test

            return self_test()
        if not getattr(args, "func", None):
            if args.command is None:
                # No subcommand: the desktop application, as a double-clicked installer expects.
                args = parser.parse_args(["gui"]) if "gui" in _subcommands(parser) else args
            if not getattr(args, "func", None):
                parser.print_help()
                return 2
        return int(args.func(args) or 0)
    except CliError as exc:
        if debug:
            raise
        print(f"slidescan: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("slidescan: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every other failure: one line, no traceback
        if debug:
            raise
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"slidescan: error: {text}", file=sys.stderr)
        return 1


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


if __name__ == "__main__":
    sys.exit(main())
