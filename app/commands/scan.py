"""`slidescan scan`: scan a region into one crash-safe HDF5 file, or resume one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from slidescan.app.cli import CliError, focus_params, print_json
from slidescan.app.events import (
    BacklogProgress,
    FinishReason,
    Progress,
    RunnerState,
    ScanEvent,
    ScanWarning,
    StateChanged,
)
from slidescan.app.plan import FocusSettings, ScanPlan, TissueSettings, parse_region

EXIT_CANCELLED = 130


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "scan",
        help="scan a region of the slide into an HDF5 scan file (or resume one)",
        description=(
            "Scan a grid of tiles (--rows/--cols around the slide centre, or --region) with "
            "autofocus into one crash-safe HDF5 file. Ctrl-C stops after the current tile; "
            "an interrupted or killed scan continues with --resume FILE."
        ),
    )
    p.add_argument("--profile", default="simulator", help="hardware profile (default simulator)")
    p.add_argument(
        "--objective", default=None, help="objective (default: the profile's default objective)"
    )
    p.add_argument("--rows", type=int, help="rows of tiles around the slide centre (3)")
    p.add_argument("--cols", type=int, help="columns of tiles around the slide centre (3)")
    p.add_argument("--region", help="x0,y0,x1,y1 in stage um (instead of --rows/--cols)")
    p.add_argument(
        "--tissue",
        action="store_true",
        help="scan the tissue: take the slide's overview, find the tissue on it and cover it "
        "with tiles (instead of --rows/--cols or --region); the overview is kept in the file",
    )
    p.add_argument(
        "--tissue-margin",
        type=float,
        default=100.0,
        metavar="UM",
        help="glass kept around the tissue found, um (default 100)",
    )
    p.add_argument("--overlap", type=float, default=0.1, help="tile overlap fraction (0.1)")
    p.add_argument("--order", choices=("serpentine", "raster"), default="serpentine")
    p.add_argument(
        "--focus",
        default="zsweep",
        help="focus method (zsweep, brent, none, diffcnn, ...) or 'focusmap' (default zsweep)",
    )
    p.add_argument(
        "--focus-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="focus method parameter (repeatable); VALUE is read as JSON if it parses",
    )
    p.add_argument(
        "--survey-method", default="zsweep", help="focusmap: method at the survey points"
    )
    p.add_argument("--survey-points", type=int, default=9, help="focusmap: survey points (9)")
    p.add_argument(
        "--surface",
        choices=("plane", "quadratic", "tps"),
        default="quadratic",
        help="focusmap: fitted surface (quadratic)",
    )
    p.add_argument("--start-z", type=float, help="z of the first hint, um (default: current z)")
    p.add_argument("--focus-range", type=float, help="search range around each hint, um")
    p.add_argument(
        "--no-tissue-detection",
        action="store_true",
        help="take every tile, even empty glass",
    )
    p.add_argument("--compression", choices=("none", "gzip", "lzf"), default="none")
    p.add_argument("--out", help="output scan file (.h5)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--resume", metavar="FILE", help="continue the scan in FILE")
    p.add_argument("--json", action="store_true", help="print a JSON summary (no progress bar)")
    p.set_defaults(func=run)


def open_scope(profile_name: str, objective: str | None) -> tuple[Any, dict[str, Any]]:
    """The microscope of a hardware profile, and the profile as a JSON-ready dict.

    Module-level so tests can point the CLI at a small simulator.
    """
    from slidescan.hardware.profile import load_profile, open_microscope

    profile = load_profile(profile_name)
    scope = open_microscope(profile, objective=objective)
    return scope, profile.model_dump(mode="json")


def _slide_centre(scope: Any) -> tuple[float, float]:
    """The centre of the simulated slide's tissue; on hardware, where the stage stands."""
    if scope.truth is not None:
        x0, y0, x1, y1 = scope.truth.slide_bounds_um
        return (x0 + x1) / 2, (y0 + y1) / 2
    p = scope.stage.position()
    return p.x, p.y


def _build_plan(args: argparse.Namespace, scope: Any, overview: Any = None) -> ScanPlan:
    if args.overlap < 0 or args.overlap > 0.5:
        raise CliError("scan: --overlap must lie in [0, 0.5]")
    method = args.survey_method if args.focus == "focusmap" else args.focus
    params = focus_params(method, args.focus_param, "scan: --focus-param")
    if args.focus == "focusmap":
        focus = FocusSettings(
            method=args.survey_method,
            params=params,
            strategy="focusmap",
            survey_points=args.survey_points,
            surface=args.surface,
            range_um=args.focus_range,
        )
    else:
        focus = FocusSettings(method=args.focus, params=params, range_um=args.focus_range)
    common: dict[str, Any] = dict(
        objective=scope.optics.objective_name,
        profile=args.profile,
        order=args.order,
        focus=focus,
        tissue=TissueSettings(enabled=not args.no_tissue_detection),
        output=str(Path(args.out).resolve()),
        compression=args.compression,
        start_z_um=args.start_z,
    )
    given = [args.tissue, bool(args.region), args.rows is not None or args.cols is not None]
    if sum(given) > 1:
        raise CliError("scan: give one of --tissue, --region or --rows/--cols")
    if args.tissue:
        return ScanPlan(region=_tissue_region(overview, args.tissue_margin), **common)
    if args.region:
        return ScanPlan(region=parse_region(args.region), overlap=args.overlap, **common)
    rows = 3 if args.rows is None else args.rows
    cols = 3 if args.cols is None else args.cols
    if rows < 1 or cols < 1:
        raise CliError("scan: --rows and --cols must be at least 1")
    shape = scope.camera.shape
    px = float(scope.optics.pixel_size_um)
    fov = (shape[1] * px, shape[0] * px)
    return ScanPlan.grid(rows, cols, _slide_centre(scope), fov, overlap=args.overlap, **common)


def _overview(scope: Any, profile: dict[str, Any]) -> Any:
    """The slide's overview (the simulator's, or a pre-scan of the profile's slide area)."""
    from slidescan.app.slide.overview import acquire_overview

    area = profile.get("slide_area_um")
    try:
        return acquire_overview(scope, area_um=tuple(area) if area else None)
    except ValueError as exc:
        raise CliError(f"scan --tissue: {exc}", code=1) from None


def _tissue_region(overview: Any, margin_um: float) -> Any:
    from slidescan.app.plan import PolygonsRegion
    from slidescan.app.slide.tissue import detect_tissue

    if not margin_um >= 0:
        raise CliError("scan: --tissue-margin must be a number >= 0")
    found = detect_tissue(overview)
    regions = found.regions(margin_um)
    if not regions:
        raise CliError("scan --tissue: no tissue found on the slide's overview", code=1)
    print(
        f"tissue: {len(regions)} region(s), {found.tissue_area_mm2:.1f} mm2 "
        f"(OD threshold {found.od_threshold:.3f})",
        file=sys.stderr,
    )
    return PolygonsRegion(polygons=tuple(tuple(poly) for poly in regions))


def _check_method(plan: ScanPlan) -> Any:
    """The plan's focus method, built before the scan: an unknown method or a bad parameter is
    one line before anything moves (`_prepare` then loads its weights and calibration)."""
    from slidescan.app.runner import build_focus_method

    try:
        return build_focus_method(plan.focus.method, dict(plan.focus.params))
    except (ValueError, TypeError, KeyError) as exc:
        raise CliError(f"scan: {str(exc).strip().splitlines()[0]}") from None


def _prepare(runner: Any) -> None:
    """Load the focus method's weights and calibration before the scan file is made: a missing
    calibration or a damaged weight file is one line, and no empty scan file is left behind."""
    from slidescan.focus.protocol import FocusError

    try:
        runner.prepare_focus()
    except FocusError as exc:
        raise CliError(f"scan: {str(exc).strip().splitlines()[0]}", code=1) from None


class _CliObserver:
    """Progress bar on stderr; a device error (the runner pauses) cancels a CLI scan."""

    def __init__(self, runner: Any, show: bool) -> None:
        self.runner = runner
        self.device_error = ""
        self.warnings = 0
        self.show = show
        self.bar: Any = None
        self.backlog_bar: Any = None

    def on_event(self, event: ScanEvent) -> None:
        if isinstance(event, Progress) and self.show:
            if self.bar is None:  # made on the first tile: a refused scan prints no bar
                from tqdm import tqdm

                self.bar = tqdm(
                    total=event.total, unit="tile", file=sys.stderr, desc="scan", dynamic_ncols=True
                )
            self.bar.total = event.total
            self.bar.n = event.done
            eta = "?" if event.eta_s is None else f"{event.eta_s:.0f}s"
            self.bar.set_postfix_str(f"hw {event.hardware_s:.1f}s, eta {eta}", refresh=False)
            self.bar.refresh()
        elif isinstance(event, BacklogProgress) and self.show:
            if self.backlog_bar is None:
                from tqdm import tqdm

                self._write(f"making the images of {event.total} tile(s) still waiting")
                self.backlog_bar = tqdm(
                    total=event.total,
                    unit="tile",
                    file=sys.stderr,
                    desc="images",
                    dynamic_ncols=True,
                )
            self.backlog_bar.n = event.done
            eta = "?" if event.eta_s is None else f"{event.eta_s:.0f}s"
            self.backlog_bar.set_postfix_str(f"eta {eta}", refresh=False)
            self.backlog_bar.refresh()
        elif isinstance(event, ScanWarning):
            self.warnings += 1
            self._write(f"warning: {event.message}")
        elif isinstance(event, StateChanged) and event.state is RunnerState.PAUSED:
            # Nobody at a terminal can press resume: stop cleanly, the file stays resumable.
            self.device_error = event.message
            self.runner.cancel()

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def close(self) -> None:
        for bar in (self.bar, self.backlog_bar):
            if bar is not None:
                bar.close()


def run(args: argparse.Namespace) -> int:
    from slidescan.app.runner import ScanRunner, read_plan
    from slidescan.app.store import ScanFileError

    if args.resume:
        if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
            raise CliError("scan: --resume continues FILE in place; drop --out")
        try:
            path = _resumable(Path(args.resume))
            plan = read_plan(path)
        except ScanFileError as exc:
            raise CliError(f"scan: {exc}", code=1) from None
        scope, profile = open_scope(plan.profile, plan.objective)
        method = _check_method(plan)
        runner = ScanRunner.for_resume(path, scope, profile=profile, method=method)
    else:
        if not args.out:
            raise CliError("scan: give --out FILE (or --resume FILE)")
        if Path(args.out).exists() and not args.overwrite:
            raise CliError(f"scan: {args.out} exists (use --overwrite to replace it)")
        scope, profile = open_scope(args.profile, args.objective)
        overview = _overview(scope, profile) if args.tissue else None
        try:
            plan = _build_plan(args, scope, overview)
        except ValidationError as exc:
            raise CliError(f"scan: {_validation_line(exc)}") from None
        except ValueError as exc:
            raise CliError(f"scan: {exc}") from None
        method = _check_method(plan)
        runner = ScanRunner(
            plan,
            scope,
            profile=profile,
            overwrite=args.overwrite,
            method=method,
            overview=overview,
        )

    _prepare(runner)
    observer = _CliObserver(runner, show=not args.json)
    runner.add_observer(observer)
    try:
        runner.start()
    except ScanFileError as exc:
        observer.close()
        raise CliError(f"scan: {exc}", code=1) from None
    interrupted = False
    try:
        finished = runner.wait()
    except KeyboardInterrupt:
        interrupted = True
        observer._write("interrupted: finishing the current tile (Ctrl-C again to abort)")
        runner.cancel()
        finished = runner.wait()
    finally:
        observer.close()
    summary = {"reason": finished.reason.value, "message": finished.message, **finished.summary}
    if observer.device_error:
        summary["device_error"] = observer.device_error
    if args.json:
        print_json(summary)
    else:
        _print_summary(summary)
    if finished.reason is FinishReason.ERROR or observer.device_error:
        msg = observer.device_error or finished.message
        raise CliError(f"scan stopped: {msg}; resume with --resume {finished.path}", code=1)
    if finished.reason is FinishReason.CANCELLED:
        print(
            f"scan cancelled; resume with: slidescan scan --resume {finished.path}", file=sys.stderr
        )
        return EXIT_CANCELLED if interrupted else 1
    return 0


def _resumable(path: Path) -> Path:
    """The file to resume: `path`, or, when it is damaged, a new file beside it holding every
    tile it still gives up (the damaged file is only read)."""
    from slidescan.app import repair
    from slidescan.app.store import DamagedScanFile

    if not path.is_file():
        return path  # read_plan says so in one line
    try:
        repair.check_intact(path)
        return path
    except DamagedScanFile as exc:
        damage = str(exc).split(" is damaged: ", 1)[-1].split("; `slidescan", 1)[0]
    rebuilt = repair.salvage(path)
    print(
        f"scan: {path} is damaged ({damage}); salvaged {rebuilt.kept} of "
        f"{rebuilt.kept + rebuilt.lost} committed tiles into {rebuilt.path}; resuming there",
        file=sys.stderr,
    )
    return rebuilt.path


def _validation_line(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def _print_summary(s: dict[str, Any]) -> None:
    def f(key: str, fmt: str = "{:.3f}") -> str:
        v = s.get(key)
        return "n/a" if v is None else fmt.format(v)

    print(f"scan file: {s.get('path')}  ({s.get('status')})")
    print(
        f"tiles: {s.get('tiles_done', 0)}/{s.get('tiles_planned', 0)} done, "
        f"{s.get('tiles_skipped', 0)} empty glass skipped, {s.get('fallbacks', 0)} focus fallbacks"
    )
    print(
        f"focus MAE vs truth: {f('focus_mae_um')} um (max {f('focus_max_err_um')} um); "
        f"frames/tile {f('frames_per_tile', '{:.1f}')}"
    )
    print(
        f"per tile: hardware {f('hardware_s_per_tile')} s, focus compute "
        f"{f('compute_s_per_tile', '{:.4f}')} s; wall {f('wall_s', '{:.1f}')} s this run"
    )
