"""What every `slidescan train MODEL` command does around its tool, once: check the counts and
the tissue folder (one line each), fill the request fields every tool shares, log to stderr
unless --json, write held-out stacks, and run the training, turning its errors into one line and
printing the summary."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from slidescan.app.cli import CliError, print_json

#: The real tissue images in the project's shared data, beside the checkout.
DEFAULT_TISSUE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "tissue"


def user_dir(kind: str, method: str) -> Path:
    """Where weights ("models") or rendered training data ("cache", per method) go by default."""
    import platformdirs

    if kind == "cache":
        return Path(platformdirs.user_cache_dir("slidescan")) / method
    return Path(platformdirs.user_data_dir("slidescan")) / "models"


def request_fields(args: argparse.Namespace, method: str, tissue: Path) -> dict[str, Any]:
    """The TrainRequest fields every training tool shares, from the command line."""
    from slidescan.app.tools.train_diffcnn import describe_command

    return {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "device": args.device,
        "out": args.out or user_dir("models", method),
        "resume": args.resume,
        "seed": args.seed,
        "threads": args.threads,
        "workers": args.workers,
        "cache_dir": args.cache or user_dir("cache", method),
        "tissue_dir": tissue,
        "lr": args.lr,
        "progress": not args.json,
        "command": describe_command(),
    }


def check_counts(command: str, args: argparse.Namespace, names: Iterable[str]) -> None:
    """A `CliError` for the first of `names` that is below 1."""
    for name in names:
        if getattr(args, name) < 1:
            raise CliError(f"{command}: --{name.replace('_', '-')} must be at least 1")


def check_objective(command: str, name: str) -> None:
    """A `CliError` naming the known objectives when `name` is not one of them."""
    from slidescan.hardware.optics import OBJECTIVES

    if name not in OBJECTIVES:
        raise CliError(f"{command}: unknown objective {name!r}; known: {', '.join(OBJECTIVES)}")


def add_bayer_fraction(parser: argparse.ArgumentParser) -> None:
    """The --bayer-fraction option (simdata.sample_scene's `bayer_fraction`)."""
    parser.add_argument(
        "--bayer-fraction",
        type=float,
        default=0.0,
        help="fraction of scenes seen by a one-chip (Bayer) colour camera, demosaiced (default 0)",
    )


def check_shares(command: str, args: argparse.Namespace, names: Iterable[str]) -> None:
    """A `CliError` for the first of `names` (fractions of scenes) outside 0..1."""
    for name in names:
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise CliError(f"{command}: --{name.replace('_', '-')} must be between 0 and 1")


def tissue_folder(command: str, given: Path | None, default: Path) -> Path:
    """The real-tissue folder to draw from: `given`, else the default; one line if missing."""
    tissue = given or default
    if not tissue.is_dir():
        raise CliError(
            f"{command}: real tissue images not found at {tissue} (give --tissue DIR)", code=1
        )
    return tissue


def stderr_log(progress: bool) -> Callable[[str], None]:
    """Progress lines to stderr, or nowhere (--json)."""

    def log(msg: str) -> None:
        if progress:
            print(msg, file=sys.stderr)

    return log


def report_holdout(summaries: list[dict[str, Any]], as_json: bool) -> int:
    """What `--holdout-stacks` wrote: one line per file, or JSON."""
    if as_json:
        print_json({"stacks": summaries})
    else:
        for s in summaries:
            print(f"{s['file']}: {s['stacks']} stacks of {s['planes']} planes ({s['name']})")
    return 0


def run_training(
    command: str,
    train: Callable[..., dict[str, Any]],
    req: Any,
    log: Callable[[str], None],
    as_json: bool,
    validation: Callable[[dict[str, Any]], str],
) -> int:
    """`train(req, log=log)`; its errors as one line, then the summary as JSON or as the
    files written and `validation(summary)`."""
    try:
        summary = train(req, log=log)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        raise CliError(f"{command}: {exc}", code=1) from None
    if as_json:
        print_json(summary)
    else:
        print(
            f"wrote {summary['weights']} ({summary['weights_mb']:.2f} MB) and "
            f"{summary['model_card']}\nheld-out validation: {validation(summary)} "
            f"({summary['total_s']:.0f} s)"
        )
    return 0
