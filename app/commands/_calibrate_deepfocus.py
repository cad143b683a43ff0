"""`slidescan focus calibrate --mode deepfocus`: the instrument's curve of DeepFocus's blur score
against z, from a recorded focus stack or from the connected microscope (the work is in
focus/learned/deepfocus_calibrate.py; the file format in focus/deepfocus_calibration.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from slidescan.app.cli import CliError, print_json


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "calibrate",
        help="calibrate DeepFocus for one objective: its blur-score curve against z",
        description=(
            "Score every plane of a z-stack of a flat textured object with DeepFocus's network "
            "and fit the instrument's curve (Moffat + Gaussian + linear). From a recorded stack "
            "(--stacks FILE --stack ID), or on the microscope of --profile: a stack of 81 planes "
            "over +/-1.2 x the defocus where the score saturates, around the current z (focus "
            "roughly on the object first; the simulator starts at its true focus). Written to "
            "--out, or for a microscope to the config folder where scans find it, with a PNG "
            "plot beside it."
        ),
    )
    c.add_argument("--mode", required=True, choices=("deepfocus",), help="the method to calibrate")
    c.add_argument("--stacks", type=Path, default=None, metavar="FILE", help="a focus-stack file")
    c.add_argument("--stack", default=None, metavar="ID", help="which stack of FILE (default: 0)")
    c.add_argument("--profile", default="simulator", help="hardware profile (default simulator)")
    c.add_argument("--objective", default=None, help="objective (default: the profile's)")
    c.add_argument(
        "--weights", type=Path, default=None, help="network checkpoint (default shipped)"
    )
    c.add_argument(
        "--out", type=Path, default=None, metavar="CAL", help="calibration file to write"
    )
    c.add_argument("--json", action="store_true", help="print a JSON summary")
    c.set_defaults(func=_calibrate)


def _calibrate(args: argparse.Namespace) -> int:
    from slidescan.focus.deepfocus_calibration import default_path, write_plot
    from slidescan.focus.learned.deepfocus_model import load_sharpness
    from slidescan.focus.learned.deepfocus_params import DeepFocusParams
    from slidescan.focus.protocol import FocusError

    bar = None
    if not args.json:
        from tqdm import tqdm

        bar = tqdm(desc="calibrate", unit="plane", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.refresh()

    try:
        net = load_sharpness(args.weights)
        if args.stacks is not None:
            cal, out = _from_stack(args, net, progress)
        else:
            if args.stack is not None:
                raise CliError("focus calibrate: --stack needs --stacks FILE")
            cal, out = _on_microscope(args, net, progress, default_path)
    except (FocusError, ValueError, OSError) as exc:
        raise CliError(f"focus calibrate: {exc}", code=1) from None
    finally:
        if bar is not None:
            bar.close()
    cal.save(out)
    plot = write_plot(cal, out.with_suffix(".png"))
    summary: dict[str, Any] = {
        "calibration": str(out),
        "plot": str(plot),
        "objective": cal.objective,
        "pixel_size_um": cal.pixel_size_um,
        "fwhm_um": cal.fwhm_um,
        "fit_rms": cal.fit_rms,
        "planes": len(cal.z_um),
        "focus_z_um": cal.focus_z_um,
        "noise_sigma": cal.noise_sigma,
        "noise_floor": cal.noise_floor,
        "valid_fraction": float(sum(cal.valid_fraction) / max(len(cal.valid_fraction), 1)),
        "source": cal.source,
    }
    if args.json:
        print_json(summary)
    else:
        print(
            f"wrote {out} and {plot}: {cal.objective}, FWHM {cal.fwhm_um:.2f} um (first search "
            f"frames {DeepFocusParams().search_fwhm * cal.fwhm_um:.1f} um apart), fit rms {cal.fit_rms:.3f}, {len(cal.z_um)} planes, "
            f"focus at z = {cal.focus_z_um:.2f} um, camera noise {cal.noise_sigma:.2f} grey levels "
            f"(frames scored at {cal.noise_floor:.2f})"
        )
    return 0


def _from_stack(args: argparse.Namespace, net: Any, progress: Any):
    from slidescan.focus.learned.deepfocus_calibrate import calibrate_stack
    from slidescan.hardware.stackfile import StackFileError, open_stacks

    if args.out is None:
        raise CliError("focus calibrate: give --out CAL for a calibration from a stack file")
    try:
        with open_stacks(args.stacks) as stacks:
            key: int | str = args.stack if args.stack is not None else 0
            if isinstance(key, str) and key.isdigit() and key not in stacks.ids:
                key = int(key)
            try:
                stack = stacks[key]
            except (KeyError, IndexError):
                raise CliError(
                    f"focus calibrate: {args.stacks} has no stack {args.stack!r}; it has: "
                    + ", ".join(stacks.ids),
                    code=1,
                ) from None
            source = f"{args.stacks.name} stack {stack.id}"
            return calibrate_stack(net, stack, stacks.optics, source, progress=progress), args.out
    except StackFileError as exc:
        raise CliError(str(exc), code=1) from None


def _on_microscope(args: argparse.Namespace, net: Any, progress: Any, default_path: Any):
    from slidescan.app.commands.scan import _slide_centre, open_scope
    from slidescan.focus.drive import FocusDrive
    from slidescan.focus.learned.deepfocus_calibrate import calibrate_on_drive

    scope, profile = open_scope(args.profile, args.objective)
    try:
        if scope.truth is not None:  # the simulator: over tissue, at its focus
            x, y = _slide_centre(scope)
            scope.move_xy(x, y)
            centre = float(scope.truth.true_focus_um(x, y))
        else:
            centre = float(scope.get_z())
        drive = FocusDrive(scope)
        source = f"profile {profile.get('name', args.profile)}, z {centre:.2f} um"
        cal = calibrate_on_drive(net, drive, centre, source, progress=progress)
    finally:
        scope.close()
    out = args.out or default_path(str(profile.get("name", args.profile)), cal.objective)
    return cal, out
