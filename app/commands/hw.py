"""`slidescan hw list` and `slidescan hw check`: find and try the hardware.

`hw list` shows serial ports, cameras that deliver frames (OpenCV indices, and the cameras
of each kind that can list its own: Basler through pylon), the built-in fake controllers and
the hardware profiles. `hw check` connects a stage (from a profile, or a bare `--stage` and
`--port`), reports its firmware and position, makes a small move on each axis and back, reads
the position again, and snaps a frame; `hw check --camera basler [--serial S]` checks a camera
alone (connect, snap, report). Any failure is one line and a non-zero exit.

Without hardware: `slidescan hw check --stage grbl --port fakegrbl://` (or fakeprior://,
fakeasi://; add `?fault=alarm` and the like to see how failures look); with pypylon,
`PYLON_CAMEMU=1 slidescan hw check --camera basler` checks pylon's emulated camera. The stage
and camera types and their fakes are the registry's (`slidescan.hardware.registry`).
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from typing import Any

from slidescan.app.cli import CliError, print_json
from slidescan.app.commands import _calibrate_camera
from slidescan.hardware.registry import (
    CameraKind,
    camera_kind,
    camera_kinds,
    serial_driver,
    serial_stage_kinds,
    stage_kind,
    stage_kinds,
)


def fake_ports() -> list[str]:
    """The built-in fake controllers' ports (`fakegrbl://` and friends)."""
    return [k.serial.fake_port for k in serial_stage_kinds() if k.serial is not None]


def _listing_kinds() -> list[CameraKind]:
    """The camera kinds that list their own connected cameras (Basler through pylon)."""
    return [k for k in camera_kinds() if k.find is not None]


def _openable_camera_kinds() -> list[str]:
    return [k.name for k in camera_kinds() if k.open is not None]


def _camera_choice(value: str) -> int | str:
    """`--camera`: an OpenCV index (with --stage) or a camera type."""
    if value.isdigit():
        return int(value)
    kinds = _openable_camera_kinds()
    if value not in kinds:
        raise argparse.ArgumentTypeError(
            f"give a camera index (0, 1, ...) or type ({', '.join(kinds)}), not {value!r}"
        )
    return value


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
            "probed quietly with a time limit), the cameras that camera drivers find (Basler "
            "through pylon, when pypylon is installed), the built-in fake controllers and the "
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
            "camera. --camera TYPE alone checks a camera without a stage (connect, snap, "
            "report). Exits non-zero with the reason on any failure."
        ),
    )
    ck.add_argument("--profile", help="hardware profile name or .toml path")
    ck.add_argument("--stage", choices=[k.name for k in stage_kinds()], help="bare controller type")
    ck.add_argument("--port", help="serial port or URL: /dev/ttyUSB0, COM3, fakegrbl://")
    ck.add_argument("--baud", type=int, help="baud rate (default: the controller's)")
    ck.add_argument("--objective", help="objective of the profile (default: its default)")
    ck.add_argument(
        "--camera",
        type=_camera_choice,
        metavar="INDEX|TYPE",
        help=(
            "with --stage: also try this OpenCV camera index or camera type; alone: check "
            f"a camera of this type ({', '.join(_openable_camera_kinds())}) without a stage"
        ),
    )
    ck.add_argument(
        "--serial", help="with --camera basler: the camera's serial number (default: the first)"
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


class _Probe:
    """One look for devices on a daemon thread, so a driver that hangs cannot hang the
    command: `result`, or the `error` it raised, or neither (still running)."""

    def __init__(self, name: str, find: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._find = find
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"probe-{name}")
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self._find()
        except Exception as exc:  # reported in the listing, never raised in a thread
            self.error = exc

    def join(self, deadline: float) -> bool:
        """Wait until `deadline` (time.monotonic); whether it finished."""
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()


def _listing(kind: CameraKind, probe: _Probe, finished: bool) -> dict[str, Any]:
    """What `hw list` reports for a camera kind that lists its cameras."""
    entry: dict[str, Any] = {
        "label": kind.label,
        "installed": True,
        "cameras": probe.result if finished and probe.error is None else [],
        "error": None,
        "timed_out": not finished,
    }
    if isinstance(probe.error, ImportError) and kind.extra is not None:
        entry["installed"] = False
        entry["error"] = f"not installed (pip install 'slidescan[{kind.extra}]')"
    elif probe.error is not None:
        entry["error"] = str(probe.error).strip().splitlines()[0] or type(probe.error).__name__
    return entry


def run_list(args: argparse.Namespace) -> int:
    from slidescan.hardware.drivers.opencv_camera import probe_cameras
    from slidescan.hardware.profile import list_profiles

    if args.cameras < 0 or args.timeout <= 0:
        raise CliError("hw list: --cameras must be >= 0 and --timeout positive")
    deadline = time.monotonic() + args.timeout
    opencv = _Probe("opencv", lambda: probe_cameras(range(args.cameras)))
    kinds = {k.name: (k, _Probe(k.name, k.find)) for k in _listing_kinds() if k.find}
    ports = _serial_ports()
    timed_out = not opencv.join(deadline)
    report = {
        "serial_ports": ports,
        "cameras": opencv.result if not timed_out and opencv.error is None else [],
        "camera_probe_timed_out": timed_out,
        "camera_probe_error": None if opencv.error is None else str(opencv.error),
        "camera_kinds": {
            name: _listing(kind, probe, probe.join(deadline))
            for name, (kind, probe) in kinds.items()
        },
        "fake_ports": fake_ports(),
        "profiles": list_profiles(),
    }
    cameras = report["cameras"]
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
    if report["camera_probe_error"]:
        print(f"  (probing failed: {report['camera_probe_error']})")
    for entry in report["camera_kinds"].values():
        if not entry["installed"]:
            print(f"{entry['label']}: {entry['error']}")
            continue
        print(f"{entry['label']}:")
        for c in entry["cameras"]:
            busy = "  (in use by another program)" if c.get("in_use") else ""
            print(f"  {c['model']:<20} serial {c['serial']:<14} {c.get('interface', '')}{busy}")
        if entry["error"]:
            print(f"  (listing failed: {entry['error']})")
        elif entry["timed_out"]:
            print(f"  (listing stopped after {args.timeout:g} s)")
        elif not entry["cameras"]:
            print("  (none found)")
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
        try:
            camera = _open_bare_camera(args.camera, args.serial)
        except BaseException:
            stage.close()
            raise
    return stage, camera, {"profile": None, "stage_type": args.stage, "objective": None}


def _open_bare_camera(camera: int | str, serial: str | None) -> Any:
    """An OpenCV camera by index, or the camera type `camera` with its defaults (and
    `serial`), at a nominal 1 um pixel."""
    from slidescan.hardware.registry import CameraConfig

    table: dict[str, Any] = (
        {"type": "opencv", "index": camera} if isinstance(camera, int) else {"type": camera}
    )
    if serial is not None:
        table["serial"] = serial
    kind = camera_kind(table["type"])
    assert kind.open is not None  # `_camera_choice` offers only kinds that open
    return kind.open(CameraConfig.model_validate(table), pixel_size_um=1.0)


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


def _check_camera_alone(args: argparse.Namespace) -> dict[str, Any]:
    """`hw check --camera TYPE` without a stage: connect, snap, report."""
    report: dict[str, Any] = {
        "ok": False,
        "profile": None,
        "stage_type": None,
        "objective": None,
        "stage": None,
        "camera_type": "opencv" if isinstance(args.camera, int) else args.camera,
    }
    t0 = time.monotonic()
    camera = _open_bare_camera(args.camera, args.serial)
    try:
        connect_s = time.monotonic() - t0
        report["camera"] = {**_camera_report(camera), "connect_s": connect_s}
    finally:
        camera.close()
    report["ok"] = True
    return report


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
    snap_s = time.monotonic() - t0
    image = frame.image
    return {
        "shape": list(image.shape),
        "dtype": str(image.dtype),
        "mean": float(image.mean()),
        "min": float(image.min()),
        "max": float(image.max()),
        "pixel_size_um": frame.pixel_size_um,
        "exposure_ms": float(frame.exposure_ms),
        "gain": float(frame.gain),
        "snap_s": snap_s,
        # what the driver says about the camera and frame (model, serial, pixel format, ...)
        "meta": {k: v for k, v in frame.meta.items() if isinstance(v, str | int | float | bool)},
    }


def run_check(args: argparse.Namespace) -> int:
    from slidescan.hardware.errors import HardwareError
    from slidescan.hardware.profile import ProfileError

    if args.profile and args.stage:
        raise CliError("hw check: give --profile or --stage, not both")
    camera_alone = args.camera is not None and not args.profile and not args.stage
    if not args.profile and not args.stage and not camera_alone:
        raise CliError(
            "hw check: give --profile NAME, --stage TYPE with --port PORT, or --camera TYPE"
        )
    if args.profile and args.camera is not None:
        raise CliError("hw check: --camera goes with --stage or alone (a profile names its camera)")
    if camera_alone and isinstance(args.camera, int):
        raise CliError("hw check: a camera index goes with --stage; alone, give --camera opencv")
    if args.serial is not None:
        kind = None if isinstance(args.camera, int) or args.camera is None else args.camera
        if kind is None or "serial" not in camera_kind(kind).config.model_fields:
            takes = [k.name for k in camera_kinds() if "serial" in k.config.model_fields]
            raise CliError(f"hw check: --serial goes with --camera {' or '.join(takes)}")
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
        report = _check_camera_alone(args) if camera_alone else _check(args)
    except (HardwareError, ProfileError) as exc:
        raise CliError(f"hw check: {exc}", code=1) from None
    if args.json:
        print_json(report)
        return 0
    _print_check(report)
    return 0


def _print_check(report: dict[str, Any]) -> None:
    st = report["stage"]
    if st is None:
        meta = report["camera"]["meta"]
        found = " ".join(str(meta[k]) for k in ("model", "serial") if k in meta)
        print(f"{report['camera_type']} camera{': ' + found if found else ''}")
        print(f"connected in {report['camera']['connect_s']:.2f} s")
        _print_camera(report["camera"])
        print("check passed")
        return
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
    if report["camera"]:
        _print_camera(report["camera"])
    print("check passed")


def _print_camera(cam: dict[str, Any]) -> None:
    shape = "x".join(str(v) for v in cam["shape"])
    print(
        f"camera: {shape} {cam['dtype']}, mean {cam['mean']:.1f} (min {cam['min']:.0f}, "
        f"max {cam['max']:.0f}), exposure {cam['exposure_ms']:g} ms, snap "
        f"{cam['snap_s'] * 1000:.0f} ms"
    )


def _xyz(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in values) + ")"
