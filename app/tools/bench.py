"""Benchmarks for `slidescan bench`: scans on the simulator, and the scan-file writer.

Each sub-benchmark is a function returning JSON-ready dicts; `BENCHMARKS` maps the names the
command accepts to them, so adding one (the simulator's "render") is one function and one entry.

Scan benchmark (`run_scan_bench`): per focus method and stage timing profile, a scan of a few
dozen tiles on the simulator (tissue detection off, so every tile is focused). Figures:

- tiles/s in simulated hardware time (the virtual clock: moves, settling, exposures), and its
  ratio to the profile's physical bound. The bound is the least hardware time a tile can take
  with no focusing at all: one XY move of one tile step plus one exposure,
  ``t_bound = t_move(step) + t_exposure``, where ``t_move`` is the stage preset's own timing
  model (trapezoidal velocity profile plus settling; axes move together) applied to the grid
  step and ``t_exposure`` the camera's frame time. ``ratio = (tiles/s) / (1 / t_bound)`` <= 1; it says how
  much of the stage's speed the focus method leaves. Precisely: t_move is averaged over the
  actual serpentine path (mostly one x step, one y step per row), and t_exposure is one frame's
  clock cost (exposure, or the strobe pulse with strobed light, plus readout).
- for methods that take a frame pair and a final frame, the ratio of hardware time per tile to
  the three-exposure bound (`three_exposure_bound_s`): the XY move, three exposures and two Z
  steps of the pair spacing, as if Z had no play ("strict"); "backlash": the same with the
  Z reversal between tiles that takes up a drive's play run inside the XY move (the least
  any method that knows where its frames were taken can do on such a stage); "play": the
  take-up as a move of its own after the XY move.
- compute per tile (wall-clock seconds of everything the scan did per tile, minus nothing:
  rendering the simulator's frames is included, so it is an upper bound on our own cost, and
  the focus method's own compute, reported separately), focus MAE against the simulator's
  truth, frames per tile, and peak memory (tracemalloc: Python and numpy allocations).

Writer benchmark (`run_writer_bench`): synthetic uncompressed tiles written through
`ScanWriter.append` (thumbnail, checksum, append, two flushes per tile, exactly as in a scan),
then fsync; MB/s of image data over the whole time including the fsync. For scale, the same
bytes are then written with plain `write` calls and one fsync (`raw_disk_mb_per_s`): the disk's
speed at that moment, which the writer cannot beat (`fraction_of_raw`).
"""

from __future__ import annotations

import gc
import math
import os
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slidescan.app.events import FinishReason
from slidescan.app.plan import ScanPlan, TissueSettings
from slidescan.app.store import ScanReader


class _NullObserver:
    """Keeps nothing (an event log would grow with the tile count and spoil the memory peak)."""

    def on_event(self, event: object) -> None:
        pass


class _ImageWatcher:
    """Keeps running sums of the images a method made after its tiles (TSVA's fusion): how
    long each took, the largest backlog, and the backlog left when the last tile was done."""

    def __init__(self) -> None:
        self.made = 0
        self.seconds = 0.0
        self.max_backlog = 0
        self.after_last_tile = 0

    def on_event(self, event: object) -> None:
        from slidescan.app.events import BacklogProgress, ImageMade

        if isinstance(event, ImageMade):
            self.made += 1
            self.seconds += event.seconds
            self.max_backlog = max(self.max_backlog, event.backlog)
        elif isinstance(event, BacklogProgress) and event.done == 0:
            self.after_last_tile = event.total

    def figures(self) -> dict[str, Any]:
        if not self.made:
            return {}
        return {
            "images_made": self.made,
            "make_image_s_per_tile": self.seconds / self.made,
            "images_waiting_after_last_tile": self.after_last_tile,
        }


def run_writer_bench(
    n_tiles: int = 48,
    tile_shape: Sequence[int] = (2048, 2048, 3),
    folder: str | Path | None = None,
    compression: str = "none",
) -> dict[str, Any]:
    """Write `n_tiles` synthetic tiles through the scan writer; MB/s including the final fsync."""
    from slidescan.app.plan import RectRegion
    from slidescan.app.store import ScanWriter, TileRecord

    shape = tuple(int(s) for s in tile_shape)
    rng = np.random.default_rng(0)
    # A few distinct frames: content does not change uncompressed speed, and generating a
    # fresh random frame per tile would be timed as 'writing'.
    frames = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(4)]
    with tempfile.TemporaryDirectory(dir=folder, prefix="slidescan-bench-") as d:
        path = Path(d) / "writer.h5"
        plan = ScanPlan(
            region=RectRegion(x0=0, y0=0, x1=shape[1] * n_tiles, y1=shape[0]),
            overlap=0.0,
            compression=compression,  # type: ignore[arg-type]
            output=str(path),
        )
        tiles = plan.tiles(shape[1], shape[0])
        writer = ScanWriter.create(path, plan, tiles, shape, np.uint8, pixel_size_um=1.0)
        t0 = time.perf_counter()
        for t in tiles:
            rec = TileRecord(t.index, t.row, t.col, t.x_um, t.y_um, 0.0)
            writer.append(rec, frames[t.index % len(frames)])
        writer.fsync()
        elapsed = time.perf_counter() - t0
        writer.close("completed")
        size = path.stat().st_size
        path.unlink()
        raw_s = _raw_write_s(Path(d) / "raw.bin", frames, n_tiles)
    mb = n_tiles * frames[0].nbytes / 1e6
    return {
        "benchmark": "writer",
        "tiles": n_tiles,
        "tile_shape": list(shape),
        "compression": compression,
        "image_mb": mb,
        "file_mb": size / 1e6,
        "seconds": elapsed,
        "mb_per_s": mb / elapsed,
        "ms_per_tile": 1000 * elapsed / n_tiles,
        "raw_disk_mb_per_s": mb / raw_s,
        "fraction_of_raw": raw_s / elapsed,
    }


def _raw_write_s(path: Path, frames: Sequence[np.ndarray], n_tiles: int) -> float:
    """The same bytes with plain file writes and one fsync: what this disk gives right now."""
    t0 = time.perf_counter()
    with open(path, "wb") as fh:
        for i in range(n_tiles):
            fh.write(frames[i % len(frames)].data)
        fh.flush()
        os.fsync(fh.fileno())
    elapsed = time.perf_counter() - t0
    path.unlink()
    return elapsed


def grid_shape(n_tiles: int) -> tuple[int, int]:
    """(rows, cols) with rows * cols == n_tiles, as square as possible (50 -> 5 x 10)."""
    if n_tiles < 1:
        raise ValueError(f"need at least one tile, got {n_tiles}")
    rows = max(r for r in range(1, math.isqrt(n_tiles) + 1) if n_tiles % r == 0)
    return rows, n_tiles // rows


def frame_time_s(scope: Any) -> float:
    """Hardware-clock cost of one exposure: light (or strobe pulse) plus readout when the
    camera says so, else the exposure time."""
    cam = scope.camera
    ms = getattr(cam, "frame_time_ms", None)
    return float(ms if ms is not None else cam.exposure_ms) / 1000.0


def physical_bound_s(scope: Any, tiles: Sequence[Any]) -> float:
    """Least hardware seconds per tile along this tile path: the stage's own time for each
    move between consecutive tiles (its timing model, settling included), averaged over the
    tiles, plus one exposure. Without a timing model (real stages) the move counts as 0."""
    stage = scope.stage
    timing = getattr(stage, "move_duration_s", None)
    move = 0.0
    if timing is not None and len(tiles) > 1:
        total = sum(
            timing(x=b.x_um - a.x_um, y=b.y_um - a.y_um)
            for a, b in zip(tiles[:-1], tiles[1:], strict=True)
        )
        move = total / len(tiles)
    return move + frame_time_s(scope)


#: Z step between exposures assumed by the three-exposure bound when the method does not say
#: (the difference-image CNN's pair spacing at 20x/0.75).
DEFAULT_PAIR_DZ_UM = 2.0


def three_exposure_bound_s(
    scope: Any, tiles: Sequence[Any], dz_um: float = DEFAULT_PAIR_DZ_UM
) -> dict[str, float]:
    """Least hardware seconds per tile of any method that takes three exposures per tile at
    two or more z (a pair and a final frame): `exposure_bound_s` with three exposures and two
    Z steps of at least `dz_um`."""
    return exposure_bound_s(scope, tiles, 3, dz_um)


def exposure_bound_s(
    scope: Any, tiles: Sequence[Any], exposures: int, dz_um: float
) -> dict[str, float]:
    """Least hardware seconds per tile of any method that takes `exposures` exposures per tile
    at different z, `dz_um` apart, lowest first (diffcnn: three, a pair and a final frame;
    TSVA: two, 2 dD apart): the XY move of `physical_bound_s` (Z may travel during it), the
    exposures, and the Z steps between them.

    `strict_s` is that, as if the drive had no play. On a drive with play b it cannot be
    reached by a method that knows where its frames were taken:

    - `backlash_s`: the physical bound with the play. Every frame of a tile is taken after an
      upward move (with a step dz < b the steps cannot take up the play), so between tiles Z
      reverses: from the last tile's top frame down past the next first frame by b, then up
      b. Both Z legs run within the XY move (`StageBase.move_via`), which lasts as long as the
      longer of the XY motion and the two legs (the stage's own timing model,
      `move_duration_s(z_via=...)`), then settles. On a stage that cannot run them within the
      XY move (`blends_z_via` false): `with_play_s`.
    - `with_play_s`: `strict_s` plus the take-up as a move of its own after the XY move.

    All three are equal on a stage without play.
    """
    if exposures < 1:
        raise ValueError(f"need at least one exposure, got {exposures}")
    stage = scope.stage
    timing = getattr(stage, "move_duration_s", None)
    steps_z = exposures - 1
    t_dz = timing(z=dz_um) if timing is not None and steps_z else 0.0
    play = getattr(stage, "z_play_um", None) or 0.0
    t_play = timing(z=play) if timing is not None and play > 0 else 0.0
    # physical_bound_s holds one frame already
    base = physical_bound_s(scope, tiles) + steps_z * (frame_time_s(scope) + t_dz)
    backlash = base + t_play
    if timing is not None and play > 0 and len(tiles) > 1 and getattr(stage, "blends_z_via", 0):
        steps = [
            (b.x_um - a.x_um, b.y_um - a.y_um) for a, b in zip(tiles[:-1], tiles[1:], strict=True)
        ]
        plain = sum(timing(x=dx, y=dy) for dx, dy in steps)
        span = steps_z * dz_um
        via = sum(timing(x=dx, y=dy, z=-span, z_via=-(span + play)) for dx, dy in steps)
        backlash = base + (via - plain) / len(tiles)
    return {
        "strict_s": base,
        "backlash_s": backlash,
        "with_play_s": base + t_play,
        "dz_um": dz_um,
        "play_um": play,
        "exposures": exposures,
    }


def exposure_plan(method: Any) -> tuple[int, float]:
    """(exposures per tile, Z step between them) a method's bound assumes: TSVA two shots
    2 dD apart, diffcnn its pair spacing and a final frame, others three `DEFAULT_PAIR_DZ_UM`
    apart."""
    if method is not None and method.name == "tsva":
        return 2, 2.0 * float(method.params.spacing_um)
    if method is not None and method.name == "deepfocus" and method.calibration is not None:
        # its frame budget, search frames search_fwhm x FWHM apart (the final frame's move
        # back down to the focus is counted as one more such step)
        return int(method.params.max_frames), float(
            method.params.search_fwhm * method.calibration.fwhm_um
        )
    return 3, pair_spacing_um(method)


def pair_spacing_um(method: Any) -> float:
    """The Z step between a method's exposures that the three-exposure bound assumes: the
    difference-image CNN's pair spacing, else `DEFAULT_PAIR_DZ_UM`."""
    if method is None or method.name != "diffcnn":  # no torch import for the others
        return DEFAULT_PAIR_DZ_UM
    from slidescan.focus.learned.diffcnn import DiffCNNFocus

    return float(method.delta_um) if isinstance(method, DiffCNNFocus) else DEFAULT_PAIR_DZ_UM


#: A whole slide for the time comparison: 15 x 15 mm of tissue at 20x, and the 156 s quoted
#: for a Hamamatsu NanoZoomer S360 on it (the figure the TSVA issue compares against; not
#: measured here).
SLIDE_MM = 15.0
NANOZOOMER_S360_S = 156.0


def slide_tiles(fov_um: tuple[float, float], overlap: float, side_mm: float = SLIDE_MM) -> int:
    """Tiles that cover a square of `side_mm` with this field of view and overlap."""
    step_x, step_y = fov_um[0] * (1 - overlap), fov_um[1] * (1 - overlap)
    side = side_mm * 1000.0
    return math.ceil((side - fov_um[0]) / step_x + 1) * math.ceil((side - fov_um[1]) / step_y + 1)


def run_scan_bench(
    methods: Sequence[str] = ("zsweep", "brent", "none"),
    profiles: Sequence[str] = ("commercial", "lowcost"),
    n_tiles: int = 36,
    objective: str = "20x/0.75",
    seed: int = 0,
    camera_shape: tuple[int, int] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """One simulated scan per (method, profile); a row of figures each."""
    from slidescan.hardware.sim import STAGE_PRESETS, SimConfig, build_simulator

    rows: list[dict[str, Any]] = []
    grid = grid_shape(n_tiles)
    for profile in profiles:
        if profile not in STAGE_PRESETS:
            raise ValueError(
                f"unknown timing profile {profile!r}; known: {', '.join(STAGE_PRESETS)}"
            )
        for method in methods:
            if progress:
                progress(f"{method} on {profile}")
            cfg_kw: dict[str, Any] = dict(objective=objective, seed=seed, stage=profile)
            if camera_shape is not None:
                cfg_kw["camera"] = {"width": camera_shape[1], "height": camera_shape[0]}
            scope = build_simulator(SimConfig(**cfg_kw))
            rows.append(_one_scan(scope, method, profile, grid))
    return rows


def deepfocus_calibration(scope: Any, folder: Path) -> Path:
    """DeepFocus needs its instrument calibration before it can scan: made here on the
    simulated microscope as a user would (`slidescan focus calibrate`), over the slide's
    centre, and written into `folder`."""
    from slidescan.focus.drive import FocusDrive
    from slidescan.focus.learned.deepfocus_calibrate import calibrate_on_drive
    from slidescan.focus.learned.deepfocus_model import load_sharpness

    x0, y0, x1, y1 = scope.truth.slide_bounds_um
    x, y = (x0 + x1) / 2, (y0 + y1) / 2
    scope.move_xy(x, y)
    cal = calibrate_on_drive(
        load_sharpness(), FocusDrive(scope), float(scope.truth.true_focus_um(x, y)), "bench"
    )
    return cal.save(folder / "deepfocus_bench.json")


def _one_scan(scope: Any, method: str, profile: str, grid: tuple[int, int]) -> dict[str, Any]:
    from slidescan.app.runner import ScanRunner

    shape = scope.camera.shape
    px = float(scope.optics.pixel_size_um)
    fov = (shape[1] * px, shape[0] * px)
    x0, y0, x1, y1 = scope.truth.slide_bounds_um
    with tempfile.TemporaryDirectory(prefix="slidescan-bench-") as d:
        focus: dict[str, Any] = {"method": method}
        if method == "deepfocus":
            focus["params"] = {"calibration": str(deepfocus_calibration(scope, Path(d)))}
        plan = ScanPlan.grid(
            grid[0],
            grid[1],
            ((x0 + x1) / 2, (y0 + y1) / 2),
            fov,
            overlap=0.1,
            focus=focus,
            tissue=TissueSettings(enabled=False),
            output=str(Path(d) / "bench.h5"),
        )
        tiles = plan.tiles(*fov)
        bound = physical_bound_s(scope, tiles)
        gc.collect()
        tracemalloc.start()
        t0 = time.perf_counter()
        watcher = _ImageWatcher()
        runner = ScanRunner(plan, scope, watcher)
        runner.start()
        fin = runner.wait()
        wall = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        if fin.reason is FinishReason.COMPLETED:
            with ScanReader(plan.output) as reader:
                records = reader.current()
    if fin.reason is not FinishReason.COMPLETED:
        raise RuntimeError(f"bench scan {method}/{profile} ended {fin.reason.value}: {fin.message}")
    s = fin.summary
    images = watcher.figures()
    hw_per_tile = s["hardware_s_per_tile"]
    tiles_per_s = 1.0 / hw_per_tile if hw_per_tile > 0 else float("inf")
    exposures, dz = exposure_plan(runner.focus_method)
    bound3 = exposure_bound_s(scope, tiles, exposures, dz)
    # Per-slide calibration tiles (diffcnn's first few, also swept) are a one-off per slide:
    # the "steady" figures are over every other tile, fallbacks included.
    calibrating = records["calibration"]
    steady = records[~calibrating]
    steady_hw = float(steady["tile_hardware_s"].mean()) if steady.size else math.nan
    return {
        "benchmark": "scan",
        "method": method,
        "profile": profile,
        "tiles": len(tiles),
        "tiles_per_s_hw": tiles_per_s,
        "bound_s_per_tile": bound,
        "ratio_to_bound": tiles_per_s * bound,
        "hardware_s_per_tile": hw_per_tile,
        "bound3_s_per_tile": bound3["strict_s"],
        "bound3_backlash_s_per_tile": bound3["backlash_s"],
        "bound3_play_s_per_tile": bound3["with_play_s"],
        "hw_over_bound3": hw_per_tile / bound3["strict_s"],
        "hw_over_bound3_backlash": hw_per_tile / bound3["backlash_s"],
        "hw_over_bound3_play": hw_per_tile / bound3["with_play_s"],
        "wall_s_per_tile": wall / len(tiles),
        "focus_compute_s_per_tile": s.get("compute_s_per_tile"),
        "focus_mae_um": s.get("focus_mae_um"),
        "focus_max_err_um": s.get("focus_max_err_um"),
        "frames_per_tile": s.get("frames_per_tile"),
        "fallbacks": s.get("fallbacks"),
        "calibration_tiles": int(calibrating.sum()),
        "steady_frames_per_tile": float(steady["tile_frames"].mean()) if steady.size else math.nan,
        "steady_hardware_s_per_tile": steady_hw,
        "steady_hw_over_bound3": steady_hw / bound3["strict_s"],
        "steady_hw_over_bound3_backlash": steady_hw / bound3["backlash_s"],
        "steady_hw_over_bound3_play": steady_hw / bound3["with_play_s"],
        "steady_compute_s_per_tile": (
            float(np.median(steady["compute_s"])) if steady.size else math.nan
        ),
        "peak_memory_mb": peak / 1e6,
        "bound_exposures": exposures,
        "bound_dz_um": dz,
        "slide_15mm_tiles": slide_tiles(fov, 0.1),
        "slide_15mm_hw_s": slide_tiles(fov, 0.1) * steady_hw,
        "nanozoomer_s360_s": NANOZOOMER_S360_S,
        **images,
    }


def run_memory_bench(
    tile_counts: Sequence[int] = (50, 500),
    camera_shape: tuple[int, int] = (64, 64),
    method: str = "none",
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Peak memory of scans of increasing length on the simulator with small frames.

    The runner keeps running sums, the queue is bounded and the writer appends, so the peak
    must not grow with the tile count. `tracemalloc` counts Python and numpy allocations over
    the whole scan; `rss_high_water_mb` is the process's resident high-water mark after each
    scan (monotonic, so growth shows as a rise). Method "none" keeps the focus method's own
    costs out of the measurement.
    """
    import resource

    from slidescan.hardware.sim import SimConfig, build_simulator

    rows = []
    warm = build_simulator(SimConfig(seed=seed, camera={"width": 64, "height": 64}))
    _one_scan(warm, method, "commercial", (2, 2))  # lazy imports and one-off caches
    for n in tile_counts:
        grid = grid_shape(n)
        scope = build_simulator(
            SimConfig(
                seed=seed,
                camera={"width": camera_shape[1], "height": camera_shape[0]},
            )
        )
        row = _one_scan(scope, method, "commercial", grid)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
        rows.append(
            {
                "benchmark": "memory",
                "tiles": row["tiles"],
                "camera": f"{camera_shape[1]}x{camera_shape[0]}",
                "method": method,
                "peak_traced_mb": row["peak_memory_mb"],
                "rss_high_water_mb": rss,
                "wall_s_per_tile": row["wall_s_per_tile"],
            }
        )
    return rows


def _scan_entry(**kw: Any) -> list[dict[str, Any]]:
    return run_scan_bench(**kw)


def _writer_entry(**kw: Any) -> list[dict[str, Any]]:
    return [run_writer_bench(**kw)]


def _render_entry(**kw: Any) -> list[dict[str, Any]]:
    """Simulator render time per 1024x1024 RGB frame (hardware/sim/benchmark.py)."""
    from slidescan.hardware.sim.benchmark import render_benchmark

    return [{"benchmark": "render", **render_benchmark(**kw)}]


#: name -> function(**options) -> rows. "all" runs them in this order.
BENCHMARKS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "scan": _scan_entry,
    "writer": _writer_entry,
    "memory": run_memory_bench,
    "render": _render_entry,
}
