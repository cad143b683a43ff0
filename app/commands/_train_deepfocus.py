"""`slidescan train deepfocus`: the sharpness network of DeepFocus (Shajkofci & Liebling), one
model for every objective (the tool is app/tools/train_deepfocus.py)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from slidescan.app.cli import CliError
from slidescan.app.commands._train_common import (
    DEFAULT_TISSUE,
    add_bayer_fraction,
    check_counts,
    check_objective,
    check_shares,
    report_holdout,
    request_fields,
    run_training,
    stderr_log,
    tissue_folder,
)


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser(
        "deepfocus",
        help="DeepFocus's sample-invariant sharpness network (Shajkofci & Liebling)",
        description=(
            "Render patches of many specimens through objectives from 10x/0.30 to 40x/0.95 at "
            "many defoci with the simulator (cached), train the network that reads a patch's "
            "blur (and whether it can be judged), and write the weights and a model card. A "
            "training state is saved after every epoch so --resume continues an interrupted run."
        ),
    )
    t.add_argument("--epochs", type=int, default=12, help="epochs (default 12)")
    t.add_argument("--steps", type=int, default=300, help="optimiser steps per epoch (default 300)")
    t.add_argument("--batch-size", type=int, default=64, help="patches per step (default 64)")
    t.add_argument("--width", type=float, default=0.35, help="MobileNetV2 width (default 0.35)")
    t.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    add_bayer_fraction(t)
    t.add_argument("--scenes", type=int, default=400, help="training scenes (default 400)")
    t.add_argument("--val-scenes", type=int, default=48, help="validation scenes (default 48)")
    t.add_argument("--seed", type=int, default=0, help="seed of data and training (default 0)")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--workers", type=int, default=2, help="processes rendering data (default 2)")
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="torch device")
    t.add_argument("--out", type=Path, default=None, help="folder for weights, card and state")
    t.add_argument("--name", default="deepfocus_any", help="weights file stem")
    t.add_argument("--resume", action="store_true", help="continue from the saved state")
    t.add_argument("--cache", type=Path, default=None, help="folder for the rendered data")
    t.add_argument("--tissue", type=Path, default=None, help="folder of the real tissue PNGs")
    t.add_argument(
        "--holdout-stacks",
        type=Path,
        default=None,
        metavar="DIR",
        help="instead of training: write held-out focus stacks (specimens and optics never "
        "trained on) into DIR, to calibrate on one and run `slidescan focus eval --mode "
        "deepfocus` on the others (the model card's stacks: --positions 3 --size 384, "
        "--objective 20x/0.75 --z-range 20 --z-step 0.25 or 10x/0.30 --z-range 85 --z-step "
        "0.5, --seed 32 to tune, 31 to report)",
    )
    t.add_argument("--objective", default="20x/0.75", help="with --holdout-stacks (20x/0.75)")
    t.add_argument("--positions", type=int, default=3, help="with --holdout-stacks: per file (3)")
    t.add_argument("--size", type=int, default=384, help="with --holdout-stacks: px (384)")
    t.add_argument("--z-range", type=float, default=20.0, help="with --holdout-stacks: +/- um (20)")
    t.add_argument("--z-step", type=float, default=0.25, help="with --holdout-stacks: um (0.25)")
    t.add_argument("--json", action="store_true", help="print a JSON summary")
    t.set_defaults(func=_train)


def _holdout(args: argparse.Namespace) -> int:
    from slidescan.app.tools import simdata

    cmd = "train deepfocus"
    check_objective(cmd, args.objective)
    check_counts(cmd, args, ("positions",))
    if args.size < 128:
        raise CliError(f"{cmd}: --size must be at least 128 px (one patch)")
    if not (0 < args.z_range < math.inf and 0 < args.z_step <= args.z_range):
        raise CliError(f"{cmd}: --z-range and --z-step must be positive, the step within the range")
    steps = args.z_range / args.z_step
    if abs(steps - round(steps)) > 1e-6:
        raise CliError(
            f"{cmd}: --z-range must be a whole number of --z-step (a plane at focus and at each end)"
        )
    summaries = simdata.write_holdout_stacks(
        args.holdout_stacks,
        args.objective,
        tissue_folder(cmd, args.tissue, DEFAULT_TISSUE),
        positions=args.positions,
        seed=args.seed,
        size=args.size,
        z_min=-args.z_range,
        z_max=args.z_range,
        z_step=args.z_step,
        progress=not args.json,
    )
    return report_holdout(summaries, args.json)


def _train(args: argparse.Namespace) -> int:
    from slidescan.app.tools import train_deepfocus as td

    if args.holdout_stacks is not None:
        return _holdout(args)
    cmd = "train deepfocus"
    check_counts(cmd, args, ("epochs", "steps", "batch_size", "scenes", "val_scenes", "workers"))
    if not (args.lr > 0 and args.width > 0):
        raise CliError(f"{cmd}: --lr and --width must be positive")
    check_shares(cmd, args, ("bayer_fraction",))
    tissue = tissue_folder(cmd, args.tissue, DEFAULT_TISSUE)
    req = td.TrainRequest(
        **request_fields(args, "deepfocus", tissue),
        steps_per_epoch=args.steps,
        width=args.width,
        name=args.name,
        scenes=args.scenes,
        val_scenes=args.val_scenes,
        bayer_fraction=args.bayer_fraction,
    )

    def validation(summary: dict) -> str:
        v = summary["val"]
        return (
            f"score MAE {v['score_mae']:.3f} (ln px), validity {100 * v['validity_acc']:.1f} % "
            f"over {summary['val_patches']} patches"
        )

    return run_training(cmd, td.train, req, stderr_log(req.progress), args.json, validation)
