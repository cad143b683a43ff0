"""The scan runner: one scan thread, one writer thread, an explicit state machine, events.

States (app/events.py `RunnerState`)::

    IDLE --start()--> RUNNING --pause() / device error--> PAUSED --resume()--> RUNNING
    RUNNING | PAUSED --last tile / cancel() / error--> FINISHING --Finished emitted--> IDLE

Pause and cancel are requests; the scan thread honours them between tiles. Every run ends with
exactly one `Finished` event whose reason is completed, cancelled or error; after it the scan
file is closed with the matching status and can be resumed (`ScanRunner.for_resume`).

One tile: move XY (the stage's backlash compensation approaches every target from one side)
-> hint from the focus predictor (fit to the tiles taken so far) -> optional quick look at the
hint for tissue detection (empty glass: recorded as skipped, nothing else done) -> focus method
(or the focus-map surface) -> final frame -> bounded queue -> writer thread (thumbnail, HDF5
append + flush, FrameWritten and Progress events). The queue bound is the back-pressure that
keeps memory flat, and the next tile's stage move overlaps the previous tile's writing.

Failures:
- focus failure (an exception, ok=False, or confidence below the plan's minimum): a
  `ScanWarning`, and the tile is taken at the predicted z (fallback "predicted");
- device failure (`HardwareError`): the scan pauses with the message; `resume()` retries the
  tile, `cancel()` ends the scan;
- storage failure (disk full, I/O error): the scan stops with reason error; every tile
  committed before stays in the file.

Events are delivered from the runner's threads (scan and writer), one at a time under a lock.
Every Z move the runner makes goes through `ZGuard`, which clamps to the soft limits.
"""

from __future__ import annotations

import enum
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slidescan.app.events import (
    Finished,
    FinishReason,
    FocusDone,
    FrameWritten,
    Progress,
    RunnerState,
    ScanEvent,
    ScanObserver,
    ScanWarning,
    StateChanged,
    TileStarted,
)
from slidescan.app.plan import ScanPlan, Tile
from slidescan.app.store import (
    ScanFileError,
    ScanReader,
    ScanWriter,
    StorageError,
    TileRecord,
    check_writable,
    estimate_bytes,
    summarize,
)
from slidescan.app.tissue import thumbnail as make_thumbnail
from slidescan.app.tissue import tissue_fraction
from slidescan.focus.protocol import FocusHint, FocusMethod, FocusResult, ZApproach
from slidescan.focus.safety import ZGuard
from slidescan.hardware.errors import HardwareError
from slidescan.hardware.microscope import Microscope

log = logging.getLogger(__name__)

_ALLOWED = {
    RunnerState.IDLE: {RunnerState.RUNNING},
    RunnerState.RUNNING: {RunnerState.PAUSED, RunnerState.FINISHING},
    RunnerState.PAUSED: {RunnerState.RUNNING, RunnerState.FINISHING},
    RunnerState.FINISHING: {RunnerState.IDLE},
}


class _Stop(enum.Enum):
    CANCELLED = "cancelled"
    STORAGE = "storage"


class _StopScan(Exception):
    def __init__(self, why: _Stop) -> None:
        super().__init__(why.value)
        self.why = why


_SENTINEL = object()


@dataclass
class _Item:
    """One tile on its way to the writer thread."""

    tile: Tile
    record: TileRecord
    image: np.ndarray | None
    look: np.ndarray | None  # the quick-look frame of a skipped tile (for its thumbnail)
    fov_um: tuple[float, float]


@dataclass
class _SessionStats:
    """Running sums for this run (constant memory, whatever the tile count)."""

    taken: int = 0
    skipped: int = 0
    fallbacks: int = 0
    frames: int = 0
    hardware_s: float = 0.0
    compute_s: float = 0.0
    abs_err_sum: float = 0.0
    abs_err_max: float = 0.0
    n_err: int = 0
    warnings: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, rec: TileRecord, frames: int, tile_hw_s: float, compute_s: float) -> None:
        self.taken += 1
        self.frames += frames
        self.hardware_s += tile_hw_s
        self.compute_s += compute_s
        if rec.skipped:
            self.skipped += 1
            return
        if rec.fallback:
            self.fallbacks += 1
        if math.isfinite(rec.true_focus_um):
            err = abs(rec.z_um - rec.true_focus_um)
            self.abs_err_sum += err
            self.abs_err_max = max(self.abs_err_max, err)
            self.n_err += 1


def build_focus_method(name: str, params: dict[str, Any]) -> FocusMethod:
    """The focus method named in a plan, from the focus registry."""
    from slidescan.focus.registry import get_method

    return get_method(name, **params)


class ScanRunner:
    """Runs one scan on its own thread. Single use: make a new runner for the next run."""

    def __init__(
        self,
        plan: ScanPlan,
        microscope: Microscope,
        observer: ScanObserver | None = None,
        *,
        mode: str = "new",
        rescan: Sequence[int] = (),
        overwrite: bool = False,
        profile: dict[str, Any] | None = None,
        method: FocusMethod | None = None,
        predictor_factory: Callable[[], Any] | None = None,
        queue_size: int = 2,
    ) -> None:
        if mode not in ("new", "resume", "rescan"):
            raise ValueError(f"mode must be new, resume or rescan, got {mode!r}")
        if not plan.output:
            raise ValueError("the plan has no output file")
        self.plan = plan
        self.microscope = microscope
        self.mode = mode
        self.rescan_indices = [int(i) for i in rescan]
        self.overwrite = overwrite
        self.profile = profile
        self.path = Path(plan.output)
        self._method = method
        self._predictor_factory = predictor_factory
        self._observers: list[ScanObserver] = [observer] if observer is not None else []
        self._emit_lock = threading.Lock()
        self._state = RunnerState.IDLE
        self._state_lock = threading.Condition()
        self._pause_requested = False
        self._cancel_requested = False
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_size))
        self._write_error: BaseException | None = None
        self._writer: ScanWriter | None = None
        self._thread: threading.Thread | None = None
        self._writer_thread: threading.Thread | None = None
        self._finished: Finished | None = None
        self._finished_event = threading.Event()
        self._started = False
        self._stats = _SessionStats()
        self._written = 0
        self._done_before = 0
        self._total = 0
        self._t0_wall = 0.0
        self._t0_hw = 0.0
        self.guard = ZGuard(microscope)
        self._planned: list[Tile] = []
        self.start_z = 0.0

    # -- construction helpers ----------------------------------------------------------------
    @classmethod
    def for_resume(
        cls,
        path: str | Path,
        microscope: Microscope,
        observer: ScanObserver | None = None,
        **kwargs: Any,
    ) -> ScanRunner:
        """Continue the scan in `path`: its plan, skipping every tile already committed."""
        plan = read_plan(path)
        return cls(plan, microscope, observer, mode="resume", **kwargs)

    @classmethod
    def for_rescan(
        cls,
        path: str | Path,
        microscope: Microscope,
        indices: Sequence[int],
        observer: ScanObserver | None = None,
        **kwargs: Any,
    ) -> ScanRunner:
        """Take the planned tiles `indices` again; the new versions supersede the old ones."""
        plan = read_plan(path)
        return cls(plan, microscope, observer, mode="rescan", rescan=indices, **kwargs)

    # -- public control ----------------------------------------------------------------------
    def prepare_focus(self) -> FocusMethod:
        """Build the plan's focus method now, in the calling thread, and keep it for the scan.

        A learned method imports torch and loads its weights: seconds in which the importing
        thread holds the GIL. The GUI calls this under a wait cursor before starting, so that
        happens at the click (and a bad weight file is an error there) rather than as an
        event-loop stall during the first tile; a method with `warm_up()` also runs it once.
        Raises what the registry raises."""
        if self._method is None:
            self._method = build_focus_method(self.plan.focus.method, dict(self.plan.focus.params))
            warm_up = getattr(self._method, "warm_up", None)
            if callable(warm_up):
                warm_up()
        return self._method

    @property
    def state(self) -> RunnerState:
        return self._state

    @property
    def finished(self) -> Finished | None:
        return self._finished

    def add_observer(self, observer: ScanObserver) -> None:
        with self._emit_lock:
            self._observers.append(observer)

    def start(self) -> None:
        """Check and open the output file, then start the scan thread.

        Raises (before any stage move) `ScanFileError`/`StorageError` for an existing file
        without overwrite, an unwritable folder, not enough free space, or a file that does
        not match this microscope; `HardwareError` if the focus drive cannot be read.
        """
        if self._started:
            raise RuntimeError("this runner has already run; make a new one")
        self._started = True
        # Read the drive before touching the file: a dead device leaves no empty scan file.
        self.start_z = self.guard.clamp(
            self.plan.start_z_um
            if self.plan.start_z_um is not None
            else float(self.microscope.get_z())
        )[0]
        tiles = self._open_file()
        self._set_state(RunnerState.RUNNING)
        self._thread = threading.Thread(
            target=self._run, args=(tiles,), name="scan-runner", daemon=True
        )
        self._writer_thread = threading.Thread(
            target=self._write_loop, name="scan-writer", daemon=True
        )
        self._writer_thread.start()
        self._thread.start()

    def pause(self) -> None:
        """Pause after the current tile."""
        with self._state_lock:
            if self._state in (RunnerState.RUNNING, RunnerState.PAUSED):
                self._pause_requested = True

    def resume(self) -> None:
        """Continue a paused scan (after a device error: retry the tile)."""
        with self._state_lock:
            self._pause_requested = False
            self._state_lock.notify_all()

    def cancel(self) -> None:
        """Stop after the current tile; the file stays resumable."""
        with self._state_lock:
            self._cancel_requested = True
            self._state_lock.notify_all()

    def wait(self, timeout: float | None = None) -> Finished:
        """Block until the run has finished; raises TimeoutError after `timeout` seconds."""
        if not self._finished_event.wait(timeout):
            raise TimeoutError(f"scan still {self._state.value} after {timeout} s")
        assert self._finished is not None
        return self._finished

    # -- internals: state and events -----------------------------------------------------------
    def _set_state(self, new: RunnerState, message: str = "") -> None:
        with self._state_lock:
            old = self._state
            if new == old:
                return
            if new not in _ALLOWED[old]:
                raise RuntimeError(f"runner cannot go from {old.value} to {new.value}")
            self._state = new
            self._state_lock.notify_all()
        self._emit(StateChanged(new, message))

    def _emit(self, event: ScanEvent) -> None:
        with self._emit_lock:
            observers = list(self._observers)
            for obs in observers:
                try:
                    obs.on_event(event)
                except Exception:  # an observer's bug must not stop the scan
                    log.exception("scan observer %r failed on %s", obs, type(event).__name__)

    def _warn(self, message: str, index: int | None = None) -> None:
        self._stats.warnings += 1
        log.warning("%s", message)
        self._emit(ScanWarning(message, index))

    # -- internals: file -----------------------------------------------------------------------
    def _open_file(self) -> list[Tile]:
        cam = self.microscope.camera
        shape = tuple(int(s) for s in cam.shape)
        pixel = float(self.microscope.optics.pixel_size_um)
        if self.mode == "new":
            fov_w, fov_h = shape[1] * pixel, shape[0] * pixel
            tiles = self.plan.tiles(fov_w, fov_h)
            self._planned = tiles
            if self.path.exists() and not self.overwrite:
                raise ScanFileError(f"{self.path} exists (use --overwrite to replace it)")
            need = estimate_bytes(len(tiles), shape, cam.dtype, self.plan.compression)
            check_writable(self.path, need)
            self._writer = ScanWriter.create(
                self.path,
                self.plan,
                tiles,
                shape,
                cam.dtype,
                pixel_size_um=pixel,
                profile=self.profile,
                overwrite=self.overwrite,
            )
            self._done_before = 0
        else:
            self._writer = ScanWriter.open(self.path)
            with ScanReader(self.path) as r:
                tiles = self._planned = r.planned_tiles
                file_shape = r.tile_shape
            if file_shape != shape:
                self._writer.close()
                raise ScanFileError(
                    f"{self.path} holds {file_shape} tiles but this camera gives {shape}"
                )
            done = self._writer.done_indices()
            if self.mode == "rescan":
                unknown = sorted(set(self.rescan_indices) - {t.index for t in tiles})
                if unknown:
                    self._writer.close()
                    raise ScanFileError(f"no planned tiles with index {unknown}")
                wanted = set(self.rescan_indices)
                self._done_before = len(done - wanted)
                tiles = [t for t in tiles if t.index in wanted]
            else:
                self._done_before = len(done)
                tiles = [t for t in tiles if t.index not in done]
        self._total = self._writer.n_planned
        return tiles

    # -- internals: the scan thread ------------------------------------------------------------
    def _run(self, tiles: list[Tile]) -> None:
        reason, message = FinishReason.COMPLETED, ""
        self._t0_wall = time.perf_counter()
        self._t0_hw = float(self.microscope.now())
        try:
            self._scan(tiles)
        except _StopScan as stop:
            if stop.why is _Stop.CANCELLED:
                reason, message = FinishReason.CANCELLED, "cancelled by the user"
            else:
                reason, message = FinishReason.ERROR, str(self._write_error)
        except Exception as exc:  # a bug or an unexpected failure: report, keep the file
            log.exception("scan failed")
            reason, message = FinishReason.ERROR, f"{type(exc).__name__}: {exc}"
        self._finish(reason, message)

    def _finish(self, reason: FinishReason, message: str) -> None:
        self._set_state(RunnerState.FINISHING, message)
        self._queue.put(_SENTINEL)
        assert self._writer_thread is not None
        self._writer_thread.join()
        if self._write_error is not None and reason is not FinishReason.ERROR:
            reason, message = FinishReason.ERROR, str(self._write_error)
        writer = self._writer
        assert writer is not None
        status = reason.value
        if reason is FinishReason.COMPLETED and len(writer.done_indices()) < writer.n_planned:
            status = "cancelled"  # a rescan of some tiles of an unfinished scan
        try:
            writer.close(status, message)
        except StorageError as exc:
            reason, message = FinishReason.ERROR, str(exc)
        summary = self._summary()
        self._finished = Finished(reason, message, str(self.path), summary)
        self._set_state(RunnerState.IDLE)
        self._emit(self._finished)
        self._finished_event.set()

    def _summary(self) -> dict[str, Any]:
        s = self._stats
        wall = time.perf_counter() - self._t0_wall
        out: dict[str, Any] = {
            "path": str(self.path),
            "tiles_planned": self._total,
            "tiles_this_run": s.taken,
            "skipped_this_run": s.skipped,
            "fallbacks_this_run": s.fallbacks,
            "warnings_this_run": s.warnings,
            "wall_s": wall,
            "hardware_s": float(self.microscope.now()) - self._t0_hw,
        }
        try:
            with ScanReader(self.path) as r:
                out.update(summarize(r))
        except ScanFileError as exc:
            out["file_error"] = str(exc)
        return out

    def _checkpoint(self) -> None:
        """Between tiles: honour cancel and pause, notice a failed writer."""
        if self._write_error is not None:
            raise _StopScan(_Stop.STORAGE)
        with self._state_lock:
            if self._cancel_requested:
                raise _StopScan(_Stop.CANCELLED)
            if not self._pause_requested:
                return
        self._wait_while_paused("paused by the user")

    def _wait_while_paused(self, message: str) -> None:
        self._set_state(RunnerState.PAUSED, message)
        with self._state_lock:
            while self._pause_requested and not self._cancel_requested:
                self._state_lock.wait()
            cancelled = self._cancel_requested
        if cancelled:
            raise _StopScan(_Stop.CANCELLED)
        self._set_state(RunnerState.RUNNING)

    def _device_step(self, what: str, fn: Callable[[], Any], index: int | None = None) -> Any:
        """Run `fn`; on a device error pause with the message and retry once resumed."""
        while True:
            try:
                return fn()
            except HardwareError as exc:
                message = f"device error during {what}: {exc} (resume retries, cancel stops)"
                self._warn(message, index)
                with self._state_lock:
                    self._pause_requested = True
                self._wait_while_paused(message)

    def _scan(self, tiles: list[Tile]) -> None:
        self.focus_method = self._method or build_focus_method(
            self.plan.focus.method, dict(self.plan.focus.params)
        )
        self.predictor = self._make_predictor()
        self._surface = None
        if self.plan.focus.strategy == "focusmap":
            self._surface = self._survey(self._planned)
        else:
            self._seed_predictor()
        for tile in tiles:
            self._checkpoint()
            item, frames, hw_s, compute_s = self._device_step(
                f"tile {tile.index}", lambda t=tile: self._take(t), tile.index
            )
            self._stats.add(item.record, frames, hw_s, compute_s)
            self._put(item)

    def _put(self, item: _Item) -> None:
        while True:
            if self._write_error is not None:
                raise _StopScan(_Stop.STORAGE)
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    # -- focus prediction ----------------------------------------------------------------------
    def _make_predictor(self) -> Any:
        if self._predictor_factory is not None:
            return self._predictor_factory()
        from slidescan.focus.surface import FocusPredictor

        return FocusPredictor(default_z=self.start_z)

    def _seed_predictor(self) -> None:
        """On resume, teach the predictor every focus measured before."""
        if self.mode == "new":
            return
        with ScanReader(self.path) as r:
            for rec in r.current():
                if rec["skipped"] or rec["fallback"]:
                    continue
                if _decode(rec["method"]) in ("none", "focusmap"):
                    continue
                w = float(rec["confidence"]) if math.isfinite(rec["confidence"]) else 1.0
                self.predictor.add(float(rec["x_um"]), float(rec["y_um"]), float(rec["z_um"]), w)

    def _predict(self, x: float, y: float) -> tuple[float, str]:
        if self._surface is not None:
            return self.guard.clamp(float(self._surface(x, y)))[0], "focusmap"
        try:
            z, _unc = self.predictor.predict(x, y)
        except Exception:  # no points yet, or a degenerate fit
            return self.start_z, "start"
        if not math.isfinite(z):
            return self.start_z, "start"
        return self.guard.clamp(float(z))[0], "predictor"

    def _survey(self, tiles: list[Tile]) -> Callable[[float, float], float]:
        """Focus-map strategy: measure sparse points, fit the surface (reused on resume)."""
        from slidescan.focus.surface import fit_surface, survey_points

        assert self._writer is not None
        settings = self.plan.focus
        centres = np.array([(t.x_um, t.y_um) for t in tiles], float)
        # Deterministic positions, so a resumed scan re-derives the same list and measures
        # only the points a cancelled or killed run did not get to.
        pts = survey_points(centres, settings.survey_points).tolist()
        stored = self._writer.survey()
        xs_l, ys_l, zs_l, ws_l = [], [], [], []
        for rec in stored:
            if rec["ok"]:
                self.predictor.add(rec["x_um"], rec["y_um"], rec["z_um"], rec["confidence"])
                xs_l.append(float(rec["x_um"]))
                ys_l.append(float(rec["y_um"]))
                zs_l.append(float(rec["z_um"]))
                ws_l.append(float(rec["confidence"]))
        for i in range(int(stored.size), len(pts)):
            x, y = pts[i]
            self._checkpoint()
            result = self._device_step(
                f"survey point {i}", lambda x=x, y=y: self._survey_point(x, y)
            )
            ok = self._focus_ok(result)
            self._writer.add_survey_point(x, y, result.z_um, result.confidence, ok)
            if not ok:
                self._warn(f"survey point {i} at ({x:.0f}, {y:.0f}) um failed: dropped")
                continue
            self.predictor.add(x, y, result.z_um, result.confidence)
            xs_l.append(x)
            ys_l.append(y)
            zs_l.append(result.z_um)
            ws_l.append(result.confidence)
        xs, ys, zs, ws = (np.asarray(v, float) for v in (xs_l, ys_l, zs_l, ws_l))
        smoothing = 1e-3 if settings.surface == "tps" else 0.0
        surface = fit_surface(
            np.column_stack([xs, ys]),
            zs,
            kind=settings.surface,
            smoothing=smoothing,
            weights=np.clip(ws, 1e-3, None),
            robust=True,
        )
        return surface.predict

    def _survey_point(self, x: float, y: float) -> FocusResult:
        self.microscope.move_xy(x, y)
        z, source = self._predict(x, y)
        return self.focus_method.focus(
            self.microscope, FocusHint(z, self.plan.focus.range_um, source)
        )

    def _focus_ok(self, result: FocusResult) -> bool:
        return (
            bool(result.ok)
            and math.isfinite(result.z_um)
            and result.confidence >= self.plan.focus.min_confidence
        )

    # -- one tile ------------------------------------------------------------------------------
    def _take(self, tile: Tile) -> tuple[_Item, int, float, float]:
        m = self.microscope
        fov = _fov(m)
        self._emit(TileStarted(tile.index, self._total, tile.row, tile.col, tile.x_um, tile.y_um))
        hw0 = float(m.now())
        compute = 0.0
        hint_z, source = self._predict(tile.x_um, tile.y_um)
        approach = self._approach(tile, hint_z)
        rec = TileRecord(
            index=tile.index,
            row=tile.row,
            col=tile.col,
            x_um=tile.x_um,
            y_um=tile.y_um,
            z_um=hint_z,
            hint_z_um=hint_z,
            wall_time=time.time(),
        )
        frames = 0
        look = None
        if self.plan.tissue.enabled:
            moved = self.guard.move_to(hint_z).commands
            if moved:
                approach = None  # the guard had to take up the play itself: Z moved again
            look = m.snap()
            frames += 1
            t = time.perf_counter()
            rec.tissue_fraction = tissue_fraction(
                look.image,
                self.plan.tissue.od_threshold,
                self.plan.tissue.saturation_threshold,
            )
            compute += time.perf_counter() - t
            if rec.tissue_fraction < self.plan.tissue.min_fraction:
                rec.skipped = True
                rec.method = "skipped"
                rec.hw_time = float(m.now())
                rec.tile_hardware_s = rec.hw_time - hw0
                rec.tile_frames = frames
                rec.true_focus_um = _true_focus(m, look, tile)
                return (
                    _Item(tile, rec, None, look.image, fov),
                    frames,
                    rec.tile_hardware_s,
                    compute,
                )

        final = None
        if self._surface is not None:
            rec.method = "focusmap"
            rec.z_um = rec.focus_z_um = hint_z
            rec.confidence = 1.0
        else:
            result = self._run_focus(tile, hint_z, source, approach)
            if result.frames:
                # The method moved Z with its own guard. (One that took no frame and left Z
                # elsewhere is caught by the guard itself: the drive no longer reports the z
                # it settled at.)
                self.guard.forget()
            frames += result.frames
            compute += result.compute_s
            rec.method = result.method or self.focus_method.name
            rec.focus_z_um = float(result.z_um)
            rec.frames = int(result.frames)
            rec.confidence = float(result.confidence)
            rec.ok = bool(result.ok)
            rec.hardware_s = float(result.hardware_s)
            rec.compute_s = float(result.compute_s)
            rec.curve_kind = result.curve.kind
            rec.curve_z_um = np.asarray(result.curve.z_um, np.float32)
            rec.curve_values = np.asarray(result.curve.values, np.float32)
            if self._focus_ok(result):
                rec.z_um = self.guard.clamp(float(result.z_um))[0]
                final = result.final_frame
                if result.frames > 0 and rec.method != "none":
                    self.predictor.add(tile.x_um, tile.y_um, rec.z_um, max(rec.confidence, 1e-3))
            else:
                rec.z_um = hint_z
                rec.fallback = "predicted"
                why = result.message or (
                    f"confidence {result.confidence:.2f}" if result.ok else "failed"
                )
                self._warn(
                    f"tile {tile.index}: autofocus {why}; using the predicted z {hint_z:.2f} um",
                    tile.index,
                )
        if final is None:
            if look is not None and abs(self.guard.clamp(rec.z_um)[0] - hint_z) < 1e-9:
                final = look  # the quick look was taken right here: no need to expose again
            else:
                final = self.guard.snap_at(rec.z_um)[0]
                frames += 1
        rec.true_focus_um = _true_focus(m, final, tile)
        rec.hw_time = float(m.now())
        rec.tile_hardware_s = rec.hw_time - hw0
        rec.tile_frames = frames
        self._emit(
            FocusDone(
                index=tile.index,
                method=rec.method,
                z_um=rec.z_um,
                hint_z_um=hint_z,
                frames=rec.frames,
                confidence=rec.confidence,
                ok=rec.ok,
                fallback=rec.fallback,
                curve_z_um=rec.curve_z_um.copy(),
                curve_values=rec.curve_values.copy(),
                curve_kind=rec.curve_kind,
                shots_z_um=rec.curve_z_um.copy(),
                true_focus_um=None if math.isnan(rec.true_focus_um) else rec.true_focus_um,
            )
        )
        return _Item(tile, rec, final.image, None, fov), frames, rec.tile_hardware_s, compute

    def _approach_z(self, hint_z: float) -> float | None:
        """Where Z goes during the XY move to a tile, reached moving up, so the tile's first
        exposure needs no move of its own: the quick look's (tissue detection) or the focus
        map's z, else the focus method's first position (`approach_z`). None: Z stays (a
        method that does not say). Always clamped to the soft limits."""
        if self.plan.tissue.enabled or self._surface is not None:
            return self.guard.clamp(hint_z)[0]
        ask = getattr(self.focus_method, "approach_z", None)
        if ask is None:
            return None
        try:
            z = float(ask(self.microscope, FocusHint(hint_z, self.plan.focus.range_um, "")))
        except Exception:  # a method's wish is an optimisation: never a reason to stop
            return None
        return self.guard.clamp(z)[0] if math.isfinite(z) else None

    def _approach(self, tile: Tile, hint_z: float) -> ZApproach | None:
        """Move to the tile. Z goes to `_approach_z` with it, from below: through a point the
        guard's overshoot further down (clamped), which the stage passes during the XY move
        where it can (`Microscope.move_xyz`). Returns that approach for the guards to adopt
        (None when Z stayed)."""
        m = self.microscope
        z = self._approach_z(hint_z)
        if z is None:
            m.move_xy(tile.x_um, tile.y_um)
            return None
        via = self.guard.clamp(z - self.guard.overshoot_um)[0]
        m.move_xyz(tile.x_um, tile.y_um, z, via_z_um=via if z - via > 1e-6 else None)
        approach = ZApproach(z, z - via)
        self.guard.forget()
        self.guard.adopt(approach)
        return approach

    def _run_focus(
        self, tile: Tile, hint_z: float, source: str, approach: ZApproach | None = None
    ) -> FocusResult:
        hint = FocusHint(hint_z, self.plan.focus.range_um, source, approach)
        try:
            return self.focus_method.focus(self.microscope, hint)
        except HardwareError:
            raise
        except Exception as exc:  # a focus failure is a warning, never the end of the scan
            return FocusResult(
                z_um=hint_z,
                frames=0,
                hardware_s=0.0,
                compute_s=0.0,
                confidence=0.0,
                method=getattr(self.focus_method, "name", "?"),
                ok=False,
                message=f"raised {type(exc).__name__}: {exc}",
            )

    # -- the writer thread ---------------------------------------------------------------------
    def _write_loop(self) -> None:
        writer = self._writer
        assert writer is not None
        while True:
            item = self._queue.get()
            if item is _SENTINEL:
                return
            if self._write_error is not None:
                continue  # drain after a failure; the scan thread is stopping
            try:
                source = item.image if item.image is not None else item.look
                thumb = make_thumbnail(source) if source is not None else None
                writer.append(item.record, item.image, thumb)
            except BaseException as exc:
                self._write_error = (
                    exc
                    if isinstance(exc, StorageError)
                    else StorageError(f"writing {self.path} failed: {type(exc).__name__}: {exc}")
                )
                continue
            self._written += 1
            t = item.tile
            r = item.record
            self._emit(
                FrameWritten(
                    index=t.index,
                    row=t.row,
                    col=t.col,
                    x_um=t.x_um,
                    y_um=t.y_um,
                    z_um=r.z_um,
                    width_um=item.fov_um[0],
                    height_um=item.fov_um[1],
                    thumbnail=thumb if thumb is not None else np.zeros((1, 1), np.uint8),
                    skipped=r.skipped,
                )
            )
            self._emit(self._progress())

    def _progress(self) -> Progress:
        done = self._done_before + self._written
        elapsed = time.perf_counter() - self._t0_wall
        rate = self._written / elapsed if elapsed > 0 else 0.0
        remaining = max(0, self._total - done)
        eta = remaining / rate if rate > 0 else None
        return Progress(
            done=done,
            total=self._total,
            elapsed_s=elapsed,
            eta_s=eta,
            tiles_per_s=rate,
            hardware_s=float(self.microscope.now()) - self._t0_hw,
        )


def read_plan(path: str | Path) -> ScanPlan:
    """The plan stored in a scan file, with its output pointing at that file."""
    with ScanReader(path) as r:
        return r.plan.model_copy(update={"output": str(path)})


def _fov(m: Microscope) -> tuple[float, float]:
    shape = tuple(m.camera.shape)
    p = float(m.optics.pixel_size_um)
    return shape[1] * p, shape[0] * p


def _true_focus(m: Microscope, frame: Any, tile: Tile) -> float:
    meta = getattr(frame, "meta", None) or {}
    v = meta.get("true_focus_um")
    if v is None:
        fn = getattr(m, "true_focus_um", None)
        if callable(fn):
            v = fn(tile.x_um, tile.y_um)
    return float(v) if v is not None else float("nan")


def _decode(v: Any) -> str:
    return bytes(v).decode(errors="replace").strip("\x00 ") if isinstance(v, bytes) else str(v)
