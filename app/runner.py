"""The scan runner: one scan thread, one writer thread, an explicit state machine, events.

States (app/events.py `RunnerState`)::

    IDLE --start()--> RUNNING --pause() / device error--> PAUSED --resume()--> RUNNING
    RUNNING | PAUSED --last tile / cancel() / error--> FINISHING --Finished emitted--> IDLE

Pause and cancel are requests; the scan thread honours them between tiles. Every run ends with
exactly one `Finished` event whose reason is completed, cancelled or error; after it the scan
file is closed with the matching status and can be resumed (`ScanRunner.for_resume`).

The runner iterates the plan: for each tile it takes the hint (`app/hints.py`), has the tile
engine take the tile (`app/engine.py`: move, quick look, focus, capture; the engine owns the
focus drive), teaches the predictor what was measured, and queues the tile for the writer
thread (`app/tile_writer.py`). With the focus-map strategy it first measures the survey points
through the same engine and fits the surface.

A focus method that makes its images from raw shots after the tile (`ImageMaker`, TSVA) leaves
pending tiles: the runner offers each to the image worker (`app/image_worker.py`), which never
holds the scan up; what it could not take is the backlog, finished after the last tile
(`BacklogProgress` events; pause and cancel still work, and a cancelled or killed scan
finishes it on resume).

Failures:
- focus failure: a `ScanWarning`, and the tile is taken at the predicted z (the engine);
- device failure (`HardwareError`): the scan pauses with the message; `resume()` retries the
  tile, `cancel()` ends the scan;
- storage failure (disk full, I/O error): the scan stops with reason error; every tile
  committed before stays in the file.

Events are delivered from the runner's threads (scan and writer), one at a time under a lock.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slidescan.app.engine import TileEngine, TileOutcome
from slidescan.app.events import (
    BacklogProgress,
    Finished,
    FinishReason,
    FocusDone,
    FrameWritten,
    ImageMade,
    Progress,
    RunnerState,
    ScanEvent,
    ScanObserver,
    ScanWarning,
    StateChanged,
    TileStarted,
)
from slidescan.app.hints import FocusHints
from slidescan.app.image_worker import ImageWorker, MadeItem
from slidescan.app.plan import ScanPlan, Tile
from slidescan.app.records import Overview
from slidescan.app.store import (
    ScanFileError,
    ScanReader,
    ScanWriter,
    StorageError,
    check_writable,
    estimate_bytes,
    summarize,
)
from slidescan.app.tile_writer import TileWriterThread, WriteItem, WriterFailed
from slidescan.focus.protocol import FocusMethod, ImageMaker
from slidescan.focus.registry import get_method
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


def build_focus_method(name: str, params: dict[str, Any]) -> FocusMethod:
    """The focus method named in a plan, from the focus registry."""
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
        overview: Overview | None = None,
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
        self._queue_size = queue_size
        self._overview = overview  # stored in a new scan file (the slide's macro image)
        self._observers: list[ScanObserver] = [observer] if observer is not None else []
        self._emit_lock = threading.Lock()
        self._state = RunnerState.IDLE
        self._state_lock = threading.Condition()
        self._pause_requested = False
        self._cancel_requested = False
        self._writer: ScanWriter | None = None
        self._writer_thread: TileWriterThread | None = None
        self._images: ImageWorker | None = None
        self._thread: threading.Thread | None = None
        self._finished: Finished | None = None
        self._finished_event = threading.Event()
        self._started = False
        self._prepared = False
        self._engine: TileEngine | None = None
        self._hints: FocusHints | None = None
        self._planned: list[Tile] = []
        self._done_before = 0
        self._total = 0
        self._taken = self._skipped = self._fallbacks = self._warnings = 0
        self._t0_wall = 0.0
        self._t0_hw = 0.0
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
        """Build the plan's focus method now, in the calling thread, and get it ready for this
        microscope's optics (`FocusMethod.prepare`).

        A learned method imports torch and loads its weights: seconds in which the importing
        thread holds the GIL. The GUI calls this under a wait cursor before starting, so that
        happens at the click (and a bad weight file is an error there) rather than as an
        event-loop stall during the first tile. Raises what the registry raises."""
        if self._method is None:
            self._method = build_focus_method(self.plan.focus.method, dict(self.plan.focus.params))
        if not self._prepared:
            self._method.prepare(self.microscope.optics)
            self._prepared = True
        return self._method

    @property
    def focus_method(self) -> FocusMethod | None:
        """The scan's focus method once built (by `prepare_focus` or the scan thread)."""
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
        without overwrite, an unwritable folder, not enough free space, a damaged file, or a
        file that does not match this microscope; `HardwareError` if the focus drive cannot be
        read.
        """
        if self._started:
            raise RuntimeError("this runner has already run; make a new one")
        self._started = True
        if self._method is None:
            self._method = build_focus_method(self.plan.focus.method, dict(self.plan.focus.params))
        engine = TileEngine(self.microscope, self._method, self.plan.focus, self.plan.tissue)
        # Read the drive before touching the file: a dead device leaves no empty scan file.
        start = self.plan.start_z_um if self.plan.start_z_um is not None else engine.current_z()
        self.start_z = engine.clamp(start)
        tiles = self._open_file()
        self._engine = engine
        predictor = self._predictor_factory() if self._predictor_factory else None
        self._hints = FocusHints(self.plan.focus, self.start_z, engine.clamp, predictor)
        assert self._writer is not None
        self._writer_thread = TileWriterThread(
            self._writer, self._written, self._queue_size, on_made=self._made
        )
        if isinstance(self._method, ImageMaker):
            writer_thread = self._writer_thread
            self._images = ImageWorker(
                self._method,
                deliver=lambda item: self._deliver(writer_thread, item),
                on_error=lambda index, why: self._warn(
                    f"tile {index}: making its image failed ({why}); it stays pending "
                    "(resume or `slidescan refocus` tries again)",
                    index,
                ),
            )
        self._set_state(RunnerState.RUNNING)
        self._thread = threading.Thread(
            target=self._run, args=(tiles,), name="scan-runner", daemon=True
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
        self._warnings += 1
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
                overview=self._overview,
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
                reason, message = FinishReason.ERROR, str(self._writer_error())
        except Exception as exc:  # a bug or an unexpected failure: report, keep the file
            log.exception("scan failed")
            reason, message = FinishReason.ERROR, f"{type(exc).__name__}: {exc}"
        self._finish(reason, message)

    def _writer_error(self) -> StorageError | None:
        return None if self._writer_thread is None else self._writer_thread.error

    def _finish(self, reason: FinishReason, message: str) -> None:
        self._set_state(RunnerState.FINISHING, message)
        assert self._writer_thread is not None and self._writer is not None
        if self._images is not None:
            self._images.stop()  # what it holds is made and queued; the rest stays pending
        self._writer_thread.finish()
        error = self._writer_error()
        if error is not None and reason is not FinishReason.ERROR:
            reason, message = FinishReason.ERROR, str(error)
        writer = self._writer
        status = reason.value
        if reason is FinishReason.COMPLETED and len(writer.done_indices()) < writer.n_planned:
            status = "cancelled"  # a rescan of some tiles of an unfinished scan
        try:
            writer.close(status, message)
        except StorageError as exc:
            reason, message = FinishReason.ERROR, str(exc)
        self._finished = Finished(reason, message, str(self.path), self._summary())
        self._set_state(RunnerState.IDLE)
        self._emit(self._finished)
        self._finished_event.set()

    def _summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": str(self.path),
            "tiles_planned": self._total,
            "tiles_this_run": self._taken,
            "skipped_this_run": self._skipped,
            "fallbacks_this_run": self._fallbacks,
            "warnings_this_run": self._warnings,
            "wall_s": time.perf_counter() - self._t0_wall,
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
        if self._writer_error() is not None:
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
        engine, hints = self._engine, self._hints
        assert engine is not None and hints is not None
        if not self._prepared:
            engine.prepare()
            self._prepared = True
        if self.plan.focus.strategy == "focusmap":
            self._survey(engine, hints)
        elif self.mode != "new":
            with ScanReader(self.path) as r:
                hints.seed(r.current())
        surface = hints.surface is not None
        for tile in tiles:
            self._checkpoint()
            self._emit(
                TileStarted(tile.index, self._total, tile.row, tile.col, tile.x_um, tile.y_um)
            )
            z, source = hints.hint(tile.x_um, tile.y_um)
            outcome: TileOutcome = self._device_step(
                f"tile {tile.index}",
                lambda t=tile, z=z, s=source: engine.take(t, z, s, surface),
                tile.index,
            )
            self._after_tile(tile, outcome, hints)
            try:
                assert self._writer_thread is not None
                self._writer_thread.put(WriteItem(tile, outcome, engine.fov_um))
            except WriterFailed:
                raise _StopScan(_Stop.STORAGE) from None
            if outcome.pending and self._images is not None:
                shots = [(s.z_um, np.asarray(s.frame.image)) for s in outcome.shots]
                self._images.offer(tile.index, shots)  # declined: the backlog finishes it
        self._finish_images()

    # -- internals: images made after the tile -------------------------------------------------
    def _deliver(self, writer_thread: TileWriterThread, item: MadeItem) -> None:
        # a failed writer: the scan thread sees its error at the next checkpoint
        with contextlib.suppress(WriterFailed):
            writer_thread.put(item)

    def _made(self, item: MadeItem, thumb: np.ndarray) -> None:
        backlog = self._images.backlog if self._images is not None else 0
        self._emit(ImageMade(item.index, thumb, item.seconds, backlog))

    def _finish_images(self) -> None:
        """After the last tile: make the images of every tile still pending in the file (the
        worker's leftovers, and on resume those of the run before), with progress."""
        images, writer_thread = self._images, self._writer_thread
        if images is None or writer_thread is None:
            return
        images.join()
        try:
            writer_thread.flush()
            backlog = writer_thread.call(lambda w: w.pending_indices())
        except WriterFailed:
            raise _StopScan(_Stop.STORAGE) from None
        if not backlog:
            return
        t0 = time.perf_counter()
        total = len(backlog)
        self._emit(BacklogProgress(0, total, 0.0, None))
        for k, index in enumerate(backlog):
            self._checkpoint()
            try:
                shots = writer_thread.call(lambda w, i=index: w.read_shots(i))
            except WriterFailed:
                raise _StopScan(_Stop.STORAGE) from None
            images.submit(index, shots)
            elapsed = time.perf_counter() - t0
            done = max(0, k + 1 - images.backlog)
            rate = done / elapsed if elapsed > 0 and done else 0.0
            eta = (total - done) / rate if rate > 0 else None
            self._emit(BacklogProgress(done, total, elapsed, eta))
        images.join()
        try:
            writer_thread.flush()
        except WriterFailed:
            raise _StopScan(_Stop.STORAGE) from None
        self._emit(BacklogProgress(total, total, time.perf_counter() - t0, 0.0))

    def _after_tile(self, tile: Tile, outcome: TileOutcome, hints: FocusHints) -> None:
        rec = outcome.record
        self._taken += 1
        if rec.skipped:
            self._skipped += 1
            return
        if rec.fallback:
            self._fallbacks += 1
        if outcome.warning:
            self._warn(outcome.warning, tile.index)
        if outcome.learned_z_um is not None:
            hints.learn(tile.x_um, tile.y_um, outcome.learned_z_um, rec.confidence)
        self._emit(
            FocusDone(
                index=tile.index,
                method=rec.method,
                z_um=rec.z_um,
                hint_z_um=rec.hint_z_um,
                frames=rec.frames,
                confidence=rec.confidence,
                ok=rec.ok,
                fallback=rec.fallback,
                curve_z_um=rec.curve_z_um.copy(),
                curve_values=rec.curve_values.copy(),
                curve_kind=rec.curve_kind,
                true_focus_um=None if np.isnan(rec.true_focus_um) else rec.true_focus_um,
                calibration=rec.calibration,
                image_source=rec.image_source,
            )
        )

    def _survey(self, engine: TileEngine, hints: FocusHints) -> None:
        """Focus-map strategy: measure sparse points, fit the surface (reused on resume)."""
        from slidescan.focus.surface import survey_points

        assert self._writer is not None
        settings = self.plan.focus
        centres = np.array([(t.x_um, t.y_um) for t in self._planned], float)
        # Deterministic positions, so a resumed scan re-derives the same list and measures
        # only the points a cancelled or killed run did not get to.
        pts = survey_points(centres, settings.survey_points).tolist()
        stored = self._writer.survey()
        xs, ys, zs, ws = [], [], [], []
        for rec in stored:
            if rec["ok"]:
                hints.learn(rec["x_um"], rec["y_um"], rec["z_um"], rec["confidence"])
                xs.append(float(rec["x_um"]))
                ys.append(float(rec["y_um"]))
                zs.append(float(rec["z_um"]))
                ws.append(float(rec["confidence"]))
        for i in range(int(stored.size), len(pts)):
            x, y = pts[i]
            self._checkpoint()
            z_hint, source = hints.hint(x, y)
            result = self._device_step(
                f"survey point {i}",
                lambda x=x, y=y, z=z_hint, s=source: engine.survey_point(x, y, z, s),
            )
            ok = engine.accepts(result) and result.z_um is not None
            z = float(result.z_um) if result.z_um is not None else float("nan")
            self._writer.add_survey_point(x, y, z, result.confidence, ok)
            if not ok:
                self._warn(f"survey point {i} at ({x:.0f}, {y:.0f}) um failed: dropped")
                continue
            hints.learn(x, y, z, result.confidence)
            xs.append(x)
            ys.append(y)
            zs.append(z)
            ws.append(result.confidence)
        warning = hints.fit_map(xs, ys, zs, ws)
        if warning:
            self._warn(warning)

    # -- the writer thread's callback ----------------------------------------------------------
    def _written(self, item: WriteItem, thumb: np.ndarray | None) -> None:
        t, r = item.tile, item.outcome.record
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
        written = self._writer_thread.written if self._writer_thread is not None else 0
        done = self._done_before + written
        elapsed = time.perf_counter() - self._t0_wall
        rate = written / elapsed if elapsed > 0 else 0.0
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
