"""`slidescan train diffcnn|tsva|deepfocus ...`: train a learned focus model on simulator data.

Each learned method that can be trained adds one sub-command here: diffcnn is the
difference-image CNN (slidescan.app.tools.train_diffcnn), tsva the two-shot virtual autofocus
network and its single-input ablation (slidescan.app.tools.train_tsva), deepfocus the
sharpness network of DeepFocus (app/commands/_train_deepfocus.py).
"""

from __future__ import annotations

import argparse
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


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a learned focus model on simulator data",
        description="Train a learned focus model on data rendered by the optical simulator.",
    )
    p.set_defaults(func=_no_model)
    sub = p.add_subparsers(dest="train_model", metavar="MODEL", parser_class=type(p))
    d = sub.add_parser(
        "diffcnn",
        help="the difference-image CNN (Dastidar & Ethirajan)",
        description=(
            "Render frame pairs with the simulator (randomised specimens, optics and camera; "
            "cached), train the difference-image MobileNetV2 in two phases (std-weighted, then "
            "also distance-weighted smooth L1), and write the weights and a model card. "
            "Progress goes to stderr; a training state is saved after every epoch so --resume "
            "continues an interrupted run."
        ),
    )
    d.add_argument("--objective", default="20x/0.75", help="objective (default 20x/0.75)")
    d.add_argument("--epochs", type=int, default=14, help="training epochs (default 14)")
    d.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="torch device")
    d.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the weights, model card and training state "
        "(default: the user data folder's slidescan/models)",
    )
    d.add_argument("--resume", action="store_true", help="continue from the saved state")
    d.add_argument("--samples", type=int, default=4000, help="training frame pairs (default 4000)")
    d.add_argument(
        "--val-samples", type=int, default=400, help="validation frame pairs (default 400)"
    )
    d.add_argument("--seed", type=int, default=0, help="seed of data and training (default 0)")
    d.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    d.add_argument("--workers", type=int, default=2, help="processes rendering data (default 2)")
    d.add_argument("--batch-size", type=int, default=128, help="training batch size (default 128)")
    d.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    d.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="folder for the rendered data cache (default: the user cache folder)",
    )
    d.add_argument(
        "--tissue",
        type=Path,
        default=None,
        help=f"folder of the real tissue PNGs (default {DEFAULT_TISSUE})",
    )
    d.add_argument(
        "--holdout-stacks",
        type=Path,
        default=None,
        metavar="DIR",
        help="instead of training: write held-out evaluation focus stacks (specimens and "
        "optics never trained on) into DIR, for `slidescan focus eval`",
    )
    d.add_argument(
        "--stage-preset", default=None, help="with --holdout-stacks: simulated stage preset"
    )
    d.add_argument(
        "--positions", type=int, default=4, help="with --holdout-stacks: stacks per file"
    )
    d.add_argument(
        "--na",
        type=float,
        default=None,
        help="with --holdout-stacks: numerical aperture of this particular objective "
        "(default: the objective's catalogue NA), e.g. 0.85 for a setting never trained on",
    )
    d.add_argument("--json", action="store_true", help="print a JSON summary")
    d.set_defaults(func=_diffcnn)
    _register_tsva(sub)
    from slidescan.app.commands import _train_deepfocus

    _train_deepfocus.register(sub)


def _register_tsva(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser(
        "tsva",
        help="two-shot virtual autofocus (Li et al.) or its single-input ablation",
        description=(
            "Render two shots around a mispredicted focus and the noise-free in-focus target "
            "with the simulator (randomised specimens, optics and camera; cached), train the "
            "two-shot U-Net (or with --shots 1 the single-input U-Net of the same width), and "
            "write the weights and a model card. A training state is saved after every epoch "
            "so --resume continues an interrupted run."
        ),
    )
    t.add_argument("--objective", default="20x/0.75", help="objective (default 20x/0.75)")
    t.add_argument("--shots", type=int, choices=(1, 2), default=2, help="2: TSVA, 1: the ablation")
    t.add_argument("--loss", choices=("mse", "l1", "ssim"), default="mse", help="training loss")
    t.add_argument("--epochs", type=int, default=12, help="epochs (default 12)")
    t.add_argument("--steps", type=int, default=400, help="optimiser steps per epoch (default 400)")
    t.add_argument("--batch-size", type=int, default=12, help="crops per step (default 12)")
    t.add_argument("--patch", type=int, default=128, help="crop side in pixels (default 128)")
    t.add_argument("--base", type=int, default=8, help="channels at the first level (default 8)")
    t.add_argument("--depth", type=int, default=4, help="levels (default 4)")
    t.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 2e-3)")
    t.add_argument(
        "--thin-fraction",
        type=float,
        default=0.3,
        help="fraction of scenes with a thin section, 0.2-1.5 um instead of 2-6 um (default "
        "0.3, as the shipped weights)",
    )
    add_bayer_fraction(t)
    t.add_argument("--samples", type=int, default=4000, help="training samples (default 4000)")
    t.add_argument("--val-samples", type=int, default=320, help="validation samples (default 320)")
    t.add_argument("--seed", type=int, default=0, help="seed of data and training (default 0)")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--workers", type=int, default=2, help="processes rendering data (default 2)")
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="torch device")
    t.add_argument("--out", type=Path, default=None, help="folder for weights, card and state")
    t.add_argument("--name", default=None, help="weights file stem (default from the settings)")
    t.add_argument("--resume", action="store_true", help="continue from the saved state")
    t.add_argument(
        "--init-from",
        type=Path,
        default=None,
        metavar="WEIGHTS",
        help="start from these weights (TSVA or single-input, same width) instead of from "
        "scratch; single-input weights start TSVA with the second shot's weights at zero",
    )
    t.add_argument("--cache", type=Path, default=None, help="folder for the rendered data")
    t.add_argument("--tissue", type=Path, default=None, help="folder of the real tissue PNGs")
    t.add_argument(
        "--holdout-stacks",
        type=Path,
        default=None,
        metavar="DIR",
        help="instead of training: write held-out focus stacks with their noise-free reference "
        "(specimens and optics never trained on; -6..+6 um around focus, 0.25 um steps) into "
        "DIR, for `slidescan focus eval --mode tsva`",
    )
    t.add_argument("--positions", type=int, default=4, help="with --holdout-stacks: per file")
    t.add_argument("--json", action="store_true", help="print a JSON summary")
    t.set_defaults(func=_tsva)


def _tsva(args: argparse.Namespace) -> int:
    from slidescan.app.tools import train_tsva as tt

    cmd = "train tsva"
    check_counts(
        cmd, args, ("epochs", "steps", "batch_size", "samples", "val_samples", "workers", "base")
    )
    if args.depth < 2:
        raise CliError("train tsva: --depth must be at least 2")
    if args.patch < 2**args.depth or args.patch % 2 ** (args.depth - 1):
        raise CliError(f"train tsva: --patch must be a multiple of {2 ** (args.depth - 1)}")
    if not args.lr > 0:
        raise CliError("train tsva: --lr must be positive")
    check_shares("train tsva", args, ("thin_fraction", "bayer_fraction"))
    tissue = tissue_folder(cmd, args.tissue, DEFAULT_TISSUE)
    progress = not args.json

    if args.holdout_stacks is not None:
        from slidescan.app.tools import simdata

        summaries = simdata.write_holdout_stacks(
            args.holdout_stacks,
            args.objective,
            tissue,
            positions=args.positions,
            seed=args.seed,
            z_min=-6.0,
            z_max=6.0,
            z_step=0.25,
            progress=progress,
        )
        return report_holdout(summaries, args.json)

    req = tt.TrainRequest(
        **request_fields(args, "tsva", tissue),
        objective=args.objective,
        steps_per_epoch=args.steps,
        patch_px=args.patch,
        base=args.base,
        depth=args.depth,
        shots=args.shots,
        loss=args.loss,
        thin_fraction=args.thin_fraction,
        bayer_fraction=args.bayer_fraction,
        init_from=args.init_from,
        name=args.name,
        samples=args.samples,
        val_samples=args.val_samples,
    )

    def validation(summary: dict) -> str:
        v = summary["val"]
        return (
            f"PSNR {v['psnr_db']:.2f} dB (sharper shot {v['sharper_shot_psnr_db']:.2f} dB) "
            f"over {summary['val_samples']} fields"
        )

    return run_training(cmd, tt.train, req, stderr_log(progress), args.json, validation)


def _no_model(args: argparse.Namespace) -> int:
    raise CliError(
        "train: choose a model to train: diffcnn, tsva or deepfocus (see slidescan train --help)"
    )


def _diffcnn(args: argparse.Namespace) -> int:
    from slidescan.app.tools import simdata
    from slidescan.app.tools import train_diffcnn as td
    from slidescan.hardware.optics import OBJECTIVES

    cmd = "train diffcnn"
    check_objective(cmd, args.objective)
    check_counts(
        cmd, args, ("epochs", "samples", "val_samples", "workers", "batch_size", "positions")
    )
    if args.threads is not None and args.threads < 1:
        raise CliError("train diffcnn: --threads must be at least 1")
    if not args.lr > 0:
        raise CliError("train diffcnn: --lr must be positive")
    if args.na is not None and not 0 < args.na < OBJECTIVES[args.objective].immersion_n:
        raise CliError(
            f"train diffcnn: --na must lie between 0 and the immersion index "
            f"{OBJECTIVES[args.objective].immersion_n:g}, got {args.na:g}"
        )
    tissue = tissue_folder(cmd, args.tissue, DEFAULT_TISSUE)
    progress = not args.json

    if args.holdout_stacks is not None:
        summaries = simdata.write_holdout_stacks(
            args.holdout_stacks,
            args.objective,
            tissue,
            positions=args.positions,
            seed=args.seed,
            stage=args.stage_preset,
            na=args.na,
            progress=progress,
        )
        return report_holdout(summaries, args.json)

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise CliError("train diffcnn: --device cuda, but torch sees no CUDA GPU", code=1)
    req = td.TrainRequest(
        **request_fields(args, "diffcnn", tissue),
        objective=args.objective,
        samples=args.samples,
        val_samples=args.val_samples,
    )

    def validation(summary: dict) -> str:
        v = summary["val"]
        return (
            f"tile MAE {v['tile_mae_um']:.3f} um, p95 {v['tile_p95_um']:.3f} um over "
            f"{v['tiles']} pairs"
        )

    return run_training(cmd, td.train, req, stderr_log(progress), args.json, validation)
