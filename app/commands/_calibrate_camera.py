"""`slidescan hw calibrate-camera`: measure the pixel size and the camera's rotation and mirror
against the stage (app/camera_calibration.py), and save them in the profile."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from slidescan.app.cli import CliError, print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    cc = sub.add_parser(
        "calibrate-camera",
        help="measure pixel size, rotation and mirroring of the camera against the stage",
        description=(
            "Move the stage by known steps along x and y from where it stands (on in-focus "
            "tissue: the image needs texture), measure how far the image moved, and report "
            "the pixel size, the camera's rotation and whether it is mirrored. With --save "
            "they go into the profile (the objective's pixel_size_um and camera_mount), which "
            "stitching, the tile map and click-to-move then use."
        ),
    )
    cc.add_argument("--profile", default="simulator", help="hardware profile (simulator)")
    cc.add_argument("--objective", help="objective of the profile (default: its default)")
    cc.add_argument("--step-um", type=float, help="stage step, um (default: a fifth of a field)")
    cc.add_argument(
        "--at",
        metavar="X,Y",
        help="stage position to calibrate at, um (default: where it stands; the simulator: "
        "the centre of its slide, in focus)",
    )
    cc.add_argument("--save", action="store_true", help="write the result into the profile")
    cc.add_argument("--json", action="store_true", help="print the result as JSON")
    cc.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from slidescan.app.camera_calibration import calibrate_camera
    from slidescan.hardware.errors import HardwareError
    from slidescan.hardware.profile import ProfileError, load_profile, open_microscope

    if args.step_um is not None and not args.step_um > 0:
        raise CliError("hw calibrate-camera: --step-um must be positive")
    try:
        profile = load_profile(args.profile)
        scope = open_microscope(profile, objective=args.objective)
    except (ProfileError, HardwareError) as exc:
        raise CliError(f"hw calibrate-camera: {exc}", code=1) from None
    try:
        _go_to_start(scope, args.at)
        result = calibrate_camera(
            scope,
            args.step_um,
            progress=None if args.json else lambda text: print(text, file=sys.stderr),
        )
    except ValueError as exc:
        raise CliError(f"hw calibrate-camera: {exc}", code=1) from None
    except HardwareError as exc:
        raise CliError(f"hw calibrate-camera: {exc}", code=1) from None
    finally:
        scope.close()
    report: dict[str, Any] = {
        "profile": profile.name,
        "objective": scope.optics.objective_name,
        "nominal_pixel_size_um": float(scope.optics.pixel_size_um),
        **result.to_dict(),
    }
    if args.save:
        report["saved_to"] = str(_save(profile, scope.optics.objective_name, result))
    if args.json:
        print_json(report)
        return 0
    mirror = ", mirrored" if result.flipped else ""
    print(
        f"{profile.name} {report['objective']}: pixel {result.pixel_size_um:.5f} um (nominal "
        f"{report['nominal_pixel_size_um']:.5f}), camera turned {result.rotation_deg:+.3f} deg"
        f"{mirror}; skew {result.skew:.4f}, correlation peak {result.response:.2f}"
    )
    if args.save:
        print(f"saved in {report['saved_to']}")
    return 0


def _go_to_start(scope: Any, at: str | None) -> None:
    if at is not None:
        try:
            x, y = (float(v) for v in at.split(","))
        except ValueError:
            raise CliError(f"hw calibrate-camera: --at expects X,Y in um, got {at!r}") from None
        scope.move_xy(x, y)
        return
    if scope.truth is not None:  # the simulator: its slide's centre, in focus
        x0, y0, x1, y1 = scope.truth.slide_bounds_um
        x, y = (x0 + x1) / 2, (y0 + y1) / 2
        scope.move_xy(x, y)
        scope.move_z(scope.truth.true_focus_um(x, y))


def _save(profile: Any, objective: str, result: Any) -> Any:
    from slidescan.hardware.profile import CameraMountConfig, save_profile

    objectives = [
        o.model_copy(update={"pixel_size_um": result.pixel_size_um}) if o.name == objective else o
        for o in profile.objectives
    ]
    mount = CameraMountConfig(rotation_deg=result.rotation_deg, flipped=result.flipped)
    updated = profile.model_copy(update={"objectives": objectives, "camera_mount": mount})
    return save_profile(type(profile).model_validate(updated.model_dump()), profile.name)
