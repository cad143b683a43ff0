"""`slidescan refocus SCAN.h5 [--weights W]`: remake a scan's images from its raw shots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from slidescan.app.cli import CliError, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "refocus",
        help="remake a scan's images from its raw shots (TSVA: fuse the two shots again)",
        description=(
            "For a scan whose focus method makes each tile's image from raw shots (tsva), "
            "make the images again, with the scan's own weights or --weights, and store each "
            "as the tile's next version (the old ones stay, superseded). --pending makes only "
            "the images a scan left unmade (a killed scan's; a resume also does this)."
        ),
    )
    p.add_argument("file", help="scan file (.h5)")
    p.add_argument("--weights", type=Path, default=None, help="network weights to use instead")
    p.add_argument("--pending", action="store_true", help="only tiles whose image is not made")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from slidescan.app.refocus import refocus
    from slidescan.app.store import ScanFileError
    from slidescan.focus.protocol import FocusError

    if not Path(args.file).is_file():
        raise CliError(f"refocus: {args.file}: no such scan file", code=1)
    params = {} if args.weights is None else {"weights": str(args.weights)}
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if args.json:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="tile", desc="refocus", file=sys.stderr)
        bar.n = done
        bar.refresh()

    try:
        result = refocus(args.file, params, pending_only=args.pending, progress=progress)
    except (ScanFileError, FocusError, ValueError) as exc:
        raise CliError(f"refocus: {str(exc).splitlines()[0]}", code=1) from None
    except KeyboardInterrupt:
        raise CliError(
            "refocus: interrupted; every tile remade so far is stored", code=130
        ) from None
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print_json(result.as_dict())
    else:
        print(
            f"{result.path}: {result.tiles} image(s) remade with {result.method} in "
            f"{result.seconds:.1f} s ({result.seconds_per_tile:.2f} s per tile)"
        )
    return 0
