"""`slidescan hw list` and `slidescan hw check`: find and try the hardware.

`hw list` shows serial ports, cameras that deliver frames, the built-in fake controllers and
the hardware profiles. `hw check` connects a stage (from a profile, or a bare `--stage` and
`--port`), reports its firmware and position, makes a small move on each axis and back, reads
the position again, and snaps a frame. Any failure is one line and a non-zero exit.

Without hardware: `slidescan hw check --stage grbl --port fakegrbl://` (or fakeprior://,
fakeasi://; add `?fault=alarm` and the like to see how failures look). The stage types and
their fakes are the registry's (`slidescan.hardware.registry`).
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

from slidescan.app.cli import CliError, print_json
from slidescan.app.commands import _calibrate_camera
from slidescan.hardware.registry import serial_driver, serial_stage_kinds, stage_kind, stage_kinds


def fake_ports() -> list[str]:
    """The built-in fake controllers' ports (`fakegrbl://` and friends)."""
    return [k.serial.fake_port for k in serial_stage_kinds() if k.serial is not None]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "hw",
        help="list serial ports and cameras, or check a stage and camera",
        description=(
            "Find and try the hardware. 'hw list' shows serial ports, cameras and profiles; "
            "'hw check' connects a stage and camera and makes a small test move."
        ),
    )
    p.set_defaults(func=_no_subcommand)
    sub = p.add_subparsers(
        dest="hw_command", metavar="{list,check,calibrate-camera}", parser_class=type(p)
    )

    ls = sub.add_parser(
        "list",
        help="serial ports, cameras, fake controllers and hardware profiles",
        description=(
            "List serial ports (pyserial), cameras that open and deliver a frame (OpenCV, "
            "probed quietly with a time limit), the built-in fake controllers and the "
            "hardware profiles."
        ),
    )
    ls.add_argument(
        "--cameras", type=int, default=4, metavar="N", help="camera indices to probe (4)"
    )
    ls.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="give up probing cameras after S s (5)",
    )
    ls.add_argument("--json", action="store_true", help="print the findings as JSON")
    ls.set_defaults(func=run_list)

    ck = sub.add_parser(
        "check",
        help="connect a stage and camera, move a little and back, snap a frame",
        description=(
            "Connect the stage of a profile (--profile) or a bare controller (--stage and "
            "--port), report firmware and position, move each axis by a small step and back "
            "(inside the soft limits), read the position again, and snap a frame from the "
            "camera. Exits non-zero with the reason on any failure."
        ),
    )
    ck.add_argument("--profile", help="hardware profile name or .toml path")
    ck.add_argument("--stage", choices=[k.name for k in stage_kinds()], help="bare controller type")
    ck.add_argument("--port", help="serial port or URL: /dev/ttyUSB0, COM3, fakegrbl://")
    ck.add_argument("--baud", type=int, help="baud rate (default: the controller's)")
    ck.add_argument("--objective", help="objective of the profile (default: its default)")
    ck.add_argument(
        "--camera", type=int, metavar="INDEX", help="with --stage: also try this camera"
    )
    ck.add_argument("--no-camera", action="store_true", help="check the stage only")
    ck.add_argument("--step-um", type=float, default=100.0, help="X/Y test step in um (100)")
    ck.add_argument("--z-step-um", type=float, default=10.0, help="Z test step in um (10)")
    ck.add_argument("--json", action="store_true", help="print the report as JSON")
    ck.set_defaults(func=run_check)
    _calibrate_camera.add_parser(sub)


def _no_subcommand(args: argparse.Namespace) -> int:
    raise CliError(
        "hw: choose a subcommand: 'hw list', 'hw check' or 'hw calibrate-camera' "
        "(see slidescan hw --help)"
    )


# -- hw list ---------------------------------------------------------------------------------------
def _serial_ports() -> list[dict[str, str]]:
    from serial.tools import list_ports

    return [
        {"device": p.device, "description": p.description or "", "hwid": p.hwid or ""}
        for p in sorted(list_ports.comports(), key=lambda p: p.device)
    ]


def _cameras(count: int, timeout_s: float) -> tuple[list[dict[str, Any]], bool]:
    """Probe cameras on a daemon thread so a driver that hangs cannot hang the command."""
    from slidescan.hardware.drivers.opencv_camera import probe_cameras

    result: list[list[dict[str, Any]]] = []
    thread = threading.Thread(
        target=lambda: result.append(probe_cameras(range(count))), daemon=True, name="camera-probe"
    )
    thread.start()
    thread.join(timeout_s)
    return (result[0] if result else []), thread.is_alive()


def run_list(args: argparse.Namespace) -> int:
    from slidescan.hardware.profile import list_profiles

    if args.cameras < 0 or args.timeout <= 0:
        raise CliError("hw list: --cameras must be >= 0 and --timeout positive")
    ports = _serial_ports()
    cameras, timed_out = _cameras(args.cameras, args.timeout)
    report = {
        "serial_ports": ports,
        "cameras": cameras,
        "camera_probe_timed_out": timed_out,
        "fake_ports": fake_ports(),
        "profiles": list_profiles(),
    }
    if args.json:
        print_json(report)
        return 0
    print("serial ports:")
    for p in ports:
        print(f"  {p['device']:<16} {p['description']}")
    if not ports:
        print("  (none found)")
    print(f"  built-in fakes: {' '.join(report['fake_ports'])}")
    print("cameras:")
    for c in cameras:
        frame = "x".join(str(v) for v in c["frame"]) if c["frame"] else "no frame (busy?)"
        print(f"  index {c['index']:<3} {c['backend']:<8} {frame}")
    if not cameras:
        print(f"  (none among indices 0-{max(0, args.cameras - 1)})")
    if timed_out:
        print(f"  (probing stopped after {args.timeout:g} s)")
    print("profiles: " + ", ".join(report["profiles"]))
    return 0


# -- hw check --------------------------------------------------------------------------------------
def _open_bare_stage(kind: str, port: str, baud: int | None) -> Any:
    """The serial stage `kind` on `port`, with its driver's defaults (no soft limits)."""
    driver = serial_driver(kind)
    return driver.connect(port, baudrate=baud) if baud else driver.connect(port)


def _open(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """(stage, camera or None, what was opened)."""
    from slidescan.hardware.profile import load_profile, open_camera, open_microscope, open_stage

    if args.profile or stage_kind(args.stage).simulated:
        prof = load_profile(args.profile or "simulator")
        what = {"profile": prof.name, "stage_type": prof.stage.type, "objective": None}
        what["objective"] = prof.objective(args.objective).name
        if prof.is_simulated:
            scope = open_microscope(prof, objective=args.objective)
            return scope.stage, (None if args.no_camera else scope.camera), what
        stage = open_stage(prof.stage)
        if args.no_camera:
            return stage, None, what
        try:
            camera = open_camera(prof, args.objective, position_source=stage.cached_position)
        except BaseException:
            stage.close()
            raise
        return stage, camera, what
    stage = _open_bare_stage(args.stage, args.port, args.baud)
    camera = None
    if args.camera is not None and not args.no_camera:
        from slidescan.hardware.drivers.opencv_camera import OpenCVCamera

        try:
            camera = OpenCVCamera(args.camera, pixel_size_um=1.0)
        except BaseException:
            stage.close()
            raise
    return stage, camera, {"profile": None, "stage_type": args.stage, "objective": None}


def _axis_check(stage: Any, axis: str, step: float) -> dict[str, Any]:
    start = stage.position().get(axis)
    target = next((t for t in (start + step, start - step) if stage.limits.contains(axis, t)), None)
    if target is None:
        return {"axis": axis, "skipped": f"no room for a {step:g} um step inside the soft limits"}
    t0 = time.monotonic()
    stage.move_to(**{axis: target})
    reached = stage.position().get(axis)
    stage.move_to(**{axis: start})
    back = stage.position().get(axis)
    return {
        "axis": axis,
        "start_um": start,
        "target_um": target,
        "reached_um": reached,
        "back_um": back,
        "error_at_target_um": reached - target,
        "error_back_um": back - start,
        "seconds": time.monotonic() - t0,
    }


def _check(args: argparse.Namespace) -> dict[str, Any]:
    from tqdm import tqdm

    report: dict[str, Any] = {"ok": False}
    with tqdm(total=6, desc="hw check", disable=args.json, leave=False) as bar:
        t0 = time.monotonic()
        stage, camera, what = _open(args)
        report.update(what)
        bar.update(1)
        try:
            info = stage.describe() if hasattr(stage, "describe") else {"kind": "sim"}
            info["connect_s"] = time.monotonic() - t0
            info["position_um"] = list(stage.position().as_tuple())
            bar.update(1)
            moves = []
            for axis in ("x", "y", "z"):
                step = args.z_step_um if axis == "z" else args.step_um
                moves.append(_axis_check(stage, axis, step))
                bar.update(1)
            info["moves"] = moves
            info["final_position_um"] = list(stage.position().as_tuple())
            errors = [abs(m["error_back_um"]) for m in moves if "error_back_um" in m]
            info["max_return_error_um"] = max(errors) if errors else None
            report["stage"] = info
            report["camera"] = _camera_report(camera) if camera is not None else None
            bar.update(1)
        finally:
            for dev in (camera, stage):
                if dev is not None:
                    dev.close()
    report["ok"] = True
    return report


def _camera_report(camera: Any) -> dict[str, Any]:
    t0 = time.monotonic()
    frame = camera.snap()
    image = frame.image
    return {
        "shape": list(image.shape),
        "dtype": str(image.dtype),
        "mean": float(image.mean()),
        "min": float(image.min()),
        "max": float(image.max()),
        "pixel_size_um": frame.pixel_size_um,
        "snap_s": time.monotonic() - t0,
    }


def run_check(args: argparse.Namespace) -> int:
    from slidescan.hardware.errors import HardwareError
    from slidescan.hardware.profile import ProfileError

    if args.profile and args.stage:
        raise CliError("hw check: give --profile or --stage, not both")
    if not args.profile and not args.stage:
        raise CliError("hw check: give --profile NAME, or --stage TYPE with --port PORT")
    serial = stage_kind(args.stage).serial if args.stage else None
    if serial is not None and not args.port:
        raise CliError(
            f"hw check: --stage {args.stage} needs --port (e.g. /dev/ttyUSB0, COM3 or "
            f"{serial.fake_port})"
        )
    if args.port and not args.stage:
        raise CliError("hw check: --port goes with --stage (a profile names its own port)")
    if args.step_um <= 0 or args.z_step_um <= 0:
        raise CliError("hw check: --step-um and --z-step-um must be positive")
    try:
        report = _check(args)
    except (HardwareError, ProfileError) as exc:
        raise CliError(f"hw check: {exc}", code=1) from None
    if args.json:
        print_json(report)
        return 0
    _print_check(report)
    return 0


def _print_check(report: dict[str, Any]) -> None:
    st = report["stage"]
    source = (
        f"profile {report['profile']}" if report["profile"] else f"{report['stage_type']} stage"
    )
    if stage_kind(report["stage_type"]).simulated:
        print(f"{source}: the optical simulator")
    else:
        print(f"{source}: {st.get('firmware') or st.get('kind')} on {st.get('port')}")
    print(f"connected in {st['connect_s']:.2f} s; position {_xyz(st['position_um'])} um")
    for m in st["moves"]:
        if "skipped" in m:
            print(f"  {m['axis']}: skipped ({m['skipped']})")
            continue
        print(
            f"  {m['axis']}: {m['start_um']:.2f} -> {m['target_um']:.2f} (reached "
            f"{m['reached_um']:.2f}) -> back {m['back_um']:.2f} um in {m['seconds']:.2f} s"
        )
    print(f"final position {_xyz(st['final_position_um'])} um", end="")
    if st["max_return_error_um"] is not None:
        print(f"; max return error {st['max_return_error_um']:.3f} um")
    else:
        print()
    cam = report["camera"]
    if cam:
        shape = "x".join(str(v) for v in cam["shape"])
        print(
            f"camera: {shape} {cam['dtype']}, mean {cam['mean']:.1f} (min {cam['min']:.0f}, "
            f"max {cam['max']:.0f}), snap {cam['snap_s'] * 1000:.0f} ms"
        )
    print("check passed")


def _xyz(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in values) + ")"
