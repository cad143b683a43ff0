"""`slidescan stitch SCAN.h5`: register the tiles, place them, estimate the flat-field, store it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from slidescan.app.cli import CliError, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "stitch",
        help="stitch a scan: register neighbouring tiles, place them, flat-field, store it",
        description=(
            "Register every pair of neighbouring tiles in their overlap, fit all tile "
            "positions at once (outlier pairs removed; tiles the overlaps say nothing about "
            "stay where the stage put them), estimate the flat-field and white balance from "
            "the tiles, and store the result in the scan file as a new stitching run (a run "
            "killed half way leaves the previous one in force). Simulator scans also report "
            "the placement error against the true tile positions."
        ),
    )
    p.add_argument("file", help="scan file (.h5)")
    p.add_argument(
        "--search-um",
        type=float,
        help="registration search radius in um (default: from the stage's stated "
        "repeatability and play)",
    )
    p.add_argument(
        "--no-flatfield",
        action="store_true",
        help="do not estimate a flat-field or white balance (tiles shown as taken)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from slidescan.app.stitch import stored
    from slidescan.app.stitch.stitcher import StitchParams, stitch
    from slidescan.app.store import ScanFileError, ScanReader

    if args.search_um is not None and not args.search_um > 0:
        raise CliError("stitch: --search-um must be positive")
    params = StitchParams(search_um=args.search_um, flatfield=not args.no_flatfield)
    try:
        if Path(args.file).is_file():
            stored.check_can_write(args.file)  # before the work, not after it
        with ScanReader(args.file) as reader:
            if reader.damage is not None:
                raise CliError(f"stitch: {reader.path} is damaged: {reader.damage}", code=1)
            if reader.format_version < 2:
                raise CliError(
                    f"stitch: {reader.path} is a version 1 scan file; resume it with this "
                    "slidescan first (slidescan scan --resume) to upgrade it",
                    code=1,
                )
            with _Progress() as progress:
                result = stitch(reader, params, progress=progress)
            if result.layout.n == 0:
                raise CliError(f"stitch: {reader.path} has no imaged tiles to stitch", code=1)
        generation = stored.save(args.file, result)
    except (ScanFileError, stored.StitchStoreError) as exc:
        raise CliError(f"stitch: {exc}", code=1) from None
    summary = {"path": str(args.file), "generation": generation, **result.figures()}
    summary["white_balance"] = result.white_balance.to_json()
    if args.json:
        print_json(summary)
    else:
        _print(summary)
    return 0


class _Progress:
    """Registration progress on stderr (a bar on a terminal, nothing otherwise)."""

    def __enter__(self) -> _Progress:
        self._bar: Any = None
        return self

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=stage, unit="pair", file=sys.stderr, disable=None)
        self._bar.update(done - self._bar.n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


def _print(s: dict[str, Any]) -> None:
    def num(key: str, fmt: str = "{:.3f}") -> str:
        v = s.get(key)
        return "n/a" if v is None else fmt.format(v)

    refused = ", ".join(f"{n} {why}" for why, n in sorted(s["pairs_refused"].items()))
    print(f"file:       {s['path']}  (stitching run {s['generation']})")
    print(
        f"tiles:      {s['tiles']} placed: {s['tiles_registered']} by their overlaps, "
        f"{s['tiles_stage']} by the stage"
    )
    print(
        f"pairs:      {s['pairs']}: {s['pairs_used']} used, {s['pairs_rejected']} rejected "
        f"({s['pairs_outliers']} outliers" + (f"; refused: {refused}" if refused else "") + ")"
    )
    print(f"residual:   RMS {num('rms_pair_residual_px')} px over the pairs used")
    if "rms_error_px" in s:
        print(
            f"truth:      RMS {num('rms_error_px')} px, max {num('max_error_px')} px from the "
            f"true positions (stage alone: RMS {num('stage_rms_error_px', '{:.2f}')}, max "
            f"{num('stage_max_error_px', '{:.2f}')})"
        )
    if "registered_rms_error_px" in s:
        print(
            f"            tiles placed by their overlaps: RMS {num('registered_rms_error_px')} px, "
            f"max {num('registered_max_error_px')} px"
        )
    gains = " ".join(f"{g:.3f}" for g in s["white_balance"]["gains"])
    print(
        f"colour:     flat-field from {s['flatfield_source']}, white balance from "
        f"{s['white_balance_source']} (gains {gains})"
    )
    print(
        f"time:       {num('seconds', '{:.2f}')} s (registration {num('register_s', '{:.2f}')} s)"
    )
