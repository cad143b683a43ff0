"""`slidescan info FILE`: what a scan file holds."""

from __future__ import annotations

import argparse
from typing import Any

from slidescan.app.cli import CliError, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "info",
        help="show what a scan file holds (plan, tiles done, status, focus figures, size)",
        description=(
            "Summarise a scan file: the plan, tiles done of those planned, status, focus "
            "statistics and size. Works on a file still being written and on one from a "
            "crashed scan."
        ),
    )
    p.add_argument("file", help="scan file (.h5)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def describe(path: str) -> dict[str, Any]:
    """What the file holds; for a damaged file, what is wrong and what is still readable
    (`damaged`: True; see `app.repair.inspect`)."""
    from slidescan.app import repair
    from slidescan.app.store import ScanReader, summarize

    with ScanReader(path) as r:
        damaged = r.damage is not None
    if damaged:
        return repair.inspect(path)
    with ScanReader(path) as r:
        out = summarize(r)
        out.update(
            path=str(r.path),
            plan=r.plan.model_dump(mode="json"),
            plan_summary=r.plan.summary(),
            software_version=r.software_version,
            message=r.message,
            tile_shape=list(r.tile_shape),
            pixel_size_um=r.pixel_size_um,
            fov_um=list(r.fov_um),
            survey_points=int(r.survey().size),
            profile=r.profile.get("name", "") if isinstance(r.profile, dict) else "",
            created=str(r.attrs.get("created", "")),
            writer_pid=int(r.attrs.get("writer_pid", 0)),
        )
        return out


def run(args: argparse.Namespace) -> int:
    from slidescan.app.store import ScanFileError

    try:
        info = describe(args.file)
    except ScanFileError as exc:
        raise CliError(f"info: {exc}", code=1) from None
    if info.get("damaged"):
        return _print_damage(info, args.json)
    if args.json:
        print_json(info)
        return 0

    def num(key: str, fmt: str = "{:.3f}") -> str:
        v = info.get(key)
        return "n/a" if v is None else fmt.format(v)

    status = info["status"]
    if status == "running":
        status = "running (or interrupted: resume with slidescan scan --resume FILE)"
    h, w = info["tile_shape"][:2]
    print(f"file:     {info['path']}  ({info['file_bytes'] / 1e6:.1f} MB)")
    print(f"status:   {status}" + (f" - {info['message']}" if info["message"] else ""))
    print(f"plan:     {info['plan_summary']}")
    print(
        f"tiles:    {info['tiles_done']}/{info['tiles_planned']} done "
        f"({info['tiles_imaged']} imaged, {info['tiles_skipped']} empty glass skipped, "
        f"{info['rows_written'] - info['tiles_done']} superseded by rescans); "
        f"{w} x {h} px at {info['pixel_size_um']:.4f} um"
    )
    print(
        f"focus:    MAE {num('focus_mae_um')} um vs truth (max {num('focus_max_err_um')}), "
        f"{info['fallbacks']} fallbacks, frames/tile {num('frames_per_tile', '{:.1f}')}"
        + (
            f", {info['calibration_tiles']} per-slide calibration"
            if info["calibration_tiles"]
            else ""
        )
    )
    if info["made_images"]:
        print(
            f"images:   {info['made_images']} made by the focus method from its shots "
            "(virtual focus; raw shots kept), the rest captured at their z"
        )
    print(
        f"time:     hardware {num('hardware_s_per_tile')} s/tile, focus compute "
        f"{num('compute_s_per_tile', '{:.4f}')} s/tile"
    )
    print(f"software: slidescan {info['software_version']}, created {info['created']}")
    return 0


def _print_damage(info: dict[str, Any], as_json: bool) -> int:
    """A damaged file: what is wrong, what is readable, what to do. Exit code 1."""
    if as_json:
        print_json(info)
        return 1
    committed = info.get("tiles_committed", "?")
    print(f"file:     {info['path']}")
    print(f"status:   DAMAGED - {info['damage']}")
    print(
        f"readable: {info['readable_tiles']} of {committed} committed tiles intact (records, "
        f"images and checksums), {info.get('tiles_planned', '?')} planned"
    )
    for reason in info.get("reasons", [])[:5]:
        print(f"lost:     {reason}")
    print(
        f"repair:   slidescan scan --resume {info['path']} salvages the intact tiles into a new "
        "file beside it and finishes the scan there (this file is left as it is)"
    )
    return 1
