"""Running scans from the main window: start, resume a file, rescan tiles, pause, resume, stop.

`ScanController` owns the `ScanRunner` of the scan in progress and the `EventRelay` that brings
its events onto the GUI thread. It tells the rest of the window what happens by signals:
`scanStarting` (the window locks the stage and the hardware, the views reset), `scanEnded`
(controls back) and `scanFinished` (the runner's `Finished` event, once the views have caught
up). It never blocks the GUI thread: the runner starts on the `DeviceWorker` and runs on its own
thread. The focus method is built here, at the click, under a wait cursor (see
`_prepare_focus`).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from slidescan.app.events import Finished, FinishReason, RunnerState, ScanEvent, StateChanged
from slidescan.app.gui.hardware_connection import HardwareConnection
from slidescan.app.gui.notifier import Notifier
from slidescan.app.gui.relay import EventRelay
from slidescan.app.gui.worker import DeviceWorker
from slidescan.app.plan import ScanPlan
from slidescan.app.records import Overview
from slidescan.app.runner import ScanRunner

log = logging.getLogger(__name__)


class ScanController(QtCore.QObject):
    #: A scan is about to start: (its `ScanPlan`, the number of tiles it will take).
    scanStarting = QtCore.Signal(object, int)
    #: The scan is over (or never started): the runner is gone, controls may come back.
    scanEnded = QtCore.Signal()
    #: The runner's `Finished` event, after `scanEnded`.
    scanFinished = QtCore.Signal(object)
    #: A scan is about to open this file for writing (readers in this process must let go).
    fileClaimed = QtCore.Signal(str)
    #: What the status bar's scan field should say about a stop or the end.
    statusText = QtCore.Signal(str)

    def __init__(
        self,
        hardware: HardwareConnection,
        worker: DeviceWorker,
        notifier: Notifier,
        plan_source: Callable[[], ScanPlan],
        parent: QtCore.QObject | None = None,
        overview_for: Callable[[ScanPlan], Overview | None] | None = None,
    ) -> None:
        super().__init__(parent)
        #: The slide's overview a new scan of a plan keeps in its file (tissue scans).
        self._overview_for = overview_for or (lambda plan: None)
        self._hardware = hardware
        self._worker = worker
        self._notifier = notifier
        self._plan_source = plan_source
        # No Qt parent for the relay, which the runner's thread emits on: Python owns it, so a
        # runner holding a reference keeps it alive even if the window goes first.
        self.relay = EventRelay()
        self.relay.event.connect(self._on_event)
        self.runner: ScanRunner | None = None
        self.scan_path = ""
        self.last_finished: Finished | None = None
        self._user_paused = False

    @property
    def active(self) -> bool:
        return self.runner is not None

    # -- starting ----------------------------------------------------------------------------
    def start(self, plan: ScanPlan | None = None) -> None:
        """Start a new scan from `plan` (default: the one the scan panel describes)."""
        microscope = self._hardware.microscope
        if microscope is None:
            self._notifier.error("Scan", "No microscope is connected (Hardware ▸ Switch profile).")
            return
        if self.active:
            return
        try:
            if plan is None:
                plan = self._plan_source()
            Path(plan.output).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except (ValueError, OSError) as exc:
            self._notifier.error("Scan", str(exc))
            return
        profile = self._hardware.profile
        runner = ScanRunner(
            plan,
            microscope,
            self.relay,
            profile=profile.model_dump(mode="json") if profile is not None else None,
            overview=self._overview_for(plan),
        )
        self._launch(runner, len(plan.tiles(*self._hardware.fov_um)), plan.output)

    def resume_file(self, path: str) -> None:
        """Finish the interrupted scan in file `path`."""
        if self._hardware.microscope is None or self.active:
            return
        self._run_file(path, "resume")

    def rescan(self, path: str, indices: list[int]) -> None:
        """Take planned tiles `indices` of scan file `path` again (review's Rescan)."""
        if self._hardware.microscope is None:
            self._notifier.error("Rescan", "No microscope is connected.")
            return
        if self.active:
            self._notifier.error("Rescan", "A scan is running; rescan when it has finished.")
            return
        self._run_file(path, "rescan", indices)

    def _run_file(self, path: str, mode: str, indices: list[int] | None = None) -> None:
        microscope = self._hardware.microscope
        assert microscope is not None
        self.fileClaimed.emit(path)
        try:
            if mode == "resume":
                runner = ScanRunner.for_resume(path, microscope, self.relay)
                total = len(runner.plan.tiles(*self._hardware.fov_um))
            else:
                runner = ScanRunner.for_rescan(path, microscope, indices or [], self.relay)
                total = len(indices or [])
        except Exception as exc:  # an unreadable or foreign file: said, no scan
            self._notifier.error("Scan", f"Cannot {mode} {path}: {exc}")
            return
        self._launch(runner, total, path)

    def _prepare_focus(self, runner: ScanRunner) -> bool:
        """Build the scan's focus method here, under a wait cursor, before the scan starts:
        a learned one imports torch and loads its weights, seconds that would otherwise be an
        event-loop stall during the first tile (the importing thread holds the GIL). A method
        that cannot be built (a missing or corrupt weight file) is a dialog, and no scan."""
        name = runner.plan.focus.method
        self._notifier.status(f"Loading focus method {name} ...")
        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
        try:
            runner.prepare_focus()
        except Exception as exc:  # shown to the person; the scan is not started
            log.warning("focus method %s could not be built: %s", name, exc)
            self._notifier.error("Scan", f"The focus method {name} could not be loaded:\n{exc}")
            return False
        finally:
            QtWidgets.QApplication.restoreOverrideCursor()
            self._notifier.clear_status()
        return True

    def _launch(self, runner: ScanRunner, total: int, path: str | Path) -> None:
        if not self._prepare_focus(runner):
            return
        # A full (generation 2) garbage collection walks every object of this big process:
        # 30-90 ms on whichever thread triggers it, often the GUI thread: an event-loop stall.
        # Freezing the objects that exist now (no collection: instant) makes collections
        # during the scan look at new objects only; `finish` unfreezes them.
        gc.freeze()
        self.fileClaimed.emit(str(path))
        self.runner = runner
        self.scan_path = str(path)
        self._user_paused = False
        self.scanStarting.emit(runner.plan, total)
        self._worker.submit(runner.start, on_error=self._start_failed, label="start scan")
        log.info("scan started: %s", path)

    def _start_failed(self, exc: BaseException) -> None:
        gc.unfreeze()
        self.runner = None
        self.scanEnded.emit()
        self._notifier.error("Scan", f"The scan could not start:\n{exc}")

    # -- while it runs -----------------------------------------------------------------------
    def pause(self) -> None:
        if self.runner is not None:
            self._user_paused = True
            self.runner.pause()

    def resume(self) -> None:
        if self.runner is not None:
            self._user_paused = False
            self.runner.resume()

    def toggle_pause(self) -> None:
        if self.runner is None:
            return
        if self.runner.state is RunnerState.PAUSED:
            self.resume()
        else:
            self.pause()

    def stop(self) -> None:
        """Stop after the tile being taken (the file keeps every tile and can be resumed)."""
        if self.runner is not None:
            self.statusText.emit("scan: stopping after this tile")
            self.runner.cancel()

    def _on_event(self, ev: ScanEvent) -> None:
        if isinstance(ev, StateChanged):
            self._state_changed(ev)
        elif isinstance(ev, Finished):
            self.last_finished = ev
            self.runner = None

    def _state_changed(self, ev: StateChanged) -> None:
        if ev.state is RunnerState.PAUSED and not self._user_paused and ev.message:
            # the runner paused itself: a device error. Say so, offer resume or stop.
            self._notifier.error(
                "Scan paused: device error",
                f"{ev.message}\n\nThe tiles taken so far are safe in {self.scan_path}.",
                buttons={"Resume (retry the tile)": self.resume, "Stop the scan": self.stop},
            )

    # -- the end -----------------------------------------------------------------------------
    def finish(self, ev: Finished) -> None:
        """Once the views have caught up with the scan's last events: say how it ended,
        `scanEnded`, then `scanFinished`."""
        gc.unfreeze()  # let garbage from before the scan be collected again, in idle time
        self.scanEnded.emit()
        done = ev.summary.get("tiles_done", ev.summary.get("tiles_this_run", "?"))
        if ev.reason is FinishReason.COMPLETED:
            self.statusText.emit("scan: completed")
            self._notifier.status(f"scan complete: {ev.path}", 10000)
        elif ev.reason is FinishReason.CANCELLED:
            self.statusText.emit("scan: stopped")
            self._notifier.status(
                f"scan stopped; resume it with File ▸ Resume a scan file ({ev.path})", 10000
            )
        else:
            self.statusText.emit("scan: error")
            self._notifier.error(
                "Scan stopped",
                f"The scan stopped on an error:\n{ev.message}\n\n"
                f"The tiles taken so far are in {ev.path}; File ▸ Resume a scan file continues it.",
            )
        log.info("scan finished (%s): %s, tiles %s", ev.reason.value, ev.path, done)
        self.scanFinished.emit(ev)
