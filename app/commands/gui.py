"""`slidescan gui`: the desktop application (also what `slidescan` alone starts)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "gui",
        help="start the desktop application",
        description="Start the desktop application: live view, stage control, tile map, "
        "focus plots, scanning and review. The hardware wizard runs on the first start.",
    )
    p.add_argument("--profile", help="hardware profile to connect (default: the last one used)")
    p.add_argument("--wizard", action="store_true", help="open the hardware wizard at start")
    p.add_argument("--review", metavar="FILE", help="open a scan file for review at start")
    # the window's stitch and export jobs run in a child process: in a frozen build the
    # executable is this program, which takes them here (app/gui/slide_jobs.py)
    p.add_argument("--slide-job", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from slidescan.app.cli import CliError

    if args.slide_job:
        from slidescan.app.gui.slide_jobs import main as slide_job

        return slide_job(list(args.slide_job))

    if args.review and not Path(args.review).is_file():
        raise CliError(f"gui: no such scan file: {args.review}")
    from slidescan.app.gui.qt_libraries import install_hint, missing_libraries

    missing = missing_libraries()  # before Qt is imported: it would abort without saying why
    if missing:
        raise CliError(f"gui: {install_hint(missing)}", code=1)
    try:
        from slidescan.app.gui.app import main
    except ImportError as exc:  # Qt missing or its system libraries absent
        raise CliError(f"gui: the desktop application cannot start: {exc}", code=1) from None
    return main(profile=args.profile, wizard=args.wizard, review=args.review)
