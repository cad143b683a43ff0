"""Focus ▸ Calibrate DeepFocus: the connected microscope's curve of DeepFocus's blur score
against z for the objective in use, taken, saved and shown; and the current one shown.

`calibrate()` runs `calibrate_on_drive` (focus/learned/deepfocus_calibrate.py: 81 planes
bottom to top through one `FocusDrive`) on the `DeviceWorker`, like every hardware call of the
window, while the owner's `busy` hook keeps the stage and camera for it (no jogs, no scan, no
objective change). On the simulator the stack is taken over the slide's tissue around its true
focus, as `slidescan focus calibrate` does; on hardware around the current z (focus roughly on
a flat textured object first). Z goes back to that centre afterwards. A progress dialog counts
the planes and the time left; Cancel stops after the plane being taken and writes nothing.
The result goes to `default_path(profile, objective)`, where scans find it, with the PNG of
`write_plot` beside it, and opens in a `CalibrationDialog`.

`show_current()` loads that file for the objective in use and shows it; a missing, damaged or
mismatched file is one line in a message box. Every failure is one line; the window stays
usable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtWidgets

from slidescan.app.gui.calibration_view import SEARCH_FWHM, CalibrationDialog
from slidescan.app.gui.hardware_connection import HardwareConnection
from slidescan.app.gui.notifier import Notifier
from slidescan.app.gui.worker import DeviceWorker

log = logging.getLogger(__name__)

TITLE = "DeepFocus calibration"
#: Where the person finds the action, for the messages.
MENU_HINT = "Focus ▸ Calibrate DeepFocus…"
_CLI_HINT = "`slidescan focus calibrate --mode deepfocus`"


class CalibrationCancelled(Exception):
    """The person cancelled the calibration."""


@dataclass(frozen=True)
class CalibrationOptions:
    """What the calibration takes from the focus method's settings."""

    weights: Path | None = None  # the sharpness network (None: the shipped one)
    search_fwhm: float = SEARCH_FWHM  # for the plot's search interval


def _load_net(weights: Path | None) -> Any:
    from slidescan.focus.learned.deepfocus_model import load_sharpness

    return load_sharpness(weights)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line.replace(_CLI_HINT, MENU_HINT)


class DeepFocusCalibrator(QtCore.QObject):
    #: (done, total) planes (emitted from the worker thread, queued).
    _progress = QtCore.Signal(int, int)
    #: A calibration ended: the `DeepFocusCalibration` saved, or None (cancelled or failed).
    finished = QtCore.Signal(object)

    def __init__(
        self,
        hardware: HardwareConnection,
        worker: DeviceWorker,
        notifier: Notifier,
        options: Callable[[], CalibrationOptions] | None = None,
        busy: Callable[[bool], None] | None = None,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._hardware = hardware
        self._worker = worker
        self._notifier = notifier
        self._options = options or CalibrationOptions
        self._busy_hook = busy or (lambda on: None)
        self._parent = parent
        #: Loads the sharpness network from a weights path (None: shipped); tests replace it.
        self.load_net: Callable[[Path | None], Any] = _load_net
        self.busy = False
        self.progress_dialog: QtWidgets.QProgressDialog | None = None
        self.view: CalibrationDialog | None = None
        #: The file of the last calibration made here.
        self.last_path: Path | None = None
        self._cancel = threading.Event()
        self._first_plane_at: float | None = None
        self._search_fwhm = SEARCH_FWHM
        self._progress.connect(self._show_progress)

    # -- calibrating -----------------------------------------------------------------------------
    def calibrate(self) -> None:
        """Take the calibration stack on the worker (progress and Cancel in a dialog)."""
        microscope = self._hardware.microscope
        if microscope is None:
            self._notifier.error(TITLE, "No microscope is connected.")
            return
        if self.busy:
            return
        try:
            options = self._options()
        except ValueError as exc:
            self._notifier.error(TITLE, f"The DeepFocus settings cannot be used: {one_line(exc)}")
            return
        self._search_fwhm = options.search_fwhm
        profile = self._hardware.profile_name
        cancel = self._cancel
        cancel.clear()
        self._first_plane_at = None
        self._set_busy(True)
        self._open_progress()

        def report(done: int, total: int) -> None:
            if cancel.is_set():
                raise CalibrationCancelled("calibration cancelled")
            self._progress.emit(done, total)

        def job() -> tuple[Any, Path]:
            return _calibrate(microscope, profile, self.load_net, options.weights, report, cancel)

        self._worker.submit(job, on_result=self._done, on_error=self._failed, label="calibration")

    def cancel(self) -> None:
        if self.busy:
            self._cancel.set()
            if self.progress_dialog is not None:
                self.progress_dialog.setLabelText("Cancelling after this plane …")

    def _open_progress(self) -> None:
        dlg = QtWidgets.QProgressDialog(
            "Loading the sharpness network …", "Cancel", 0, 0, self._parent
        )
        dlg.setWindowTitle(TITLE)
        dlg.setMinimumDuration(0)
        dlg.setMinimumWidth(420)
        dlg.setAutoClose(False)
        dlg.setAutoReset(False)
        dlg.setWindowModality(QtCore.Qt.WindowModality.WindowModal)
        dlg.canceled.connect(self.cancel)
        dlg.open()
        self.progress_dialog = dlg

    def _show_progress(self, done: int, total: int) -> None:
        dlg = self.progress_dialog
        if dlg is None or self._cancel.is_set():
            return
        now = time.monotonic()
        if self._first_plane_at is None:
            self._first_plane_at = now
        dlg.setRange(0, max(total, 1))
        dlg.setValue(min(done, total))
        text = f"Calibration stack: plane {done} of {total}"
        if done >= 2:  # the first plane includes the move there: time the rest
            left = (now - self._first_plane_at) / (done - 1) * (total - done)
            text += f" · about {_duration(left)} left"
        dlg.setLabelText(text)

    def _close_progress(self) -> None:
        dlg = self.progress_dialog
        if dlg is not None:
            dlg.canceled.disconnect(self.cancel)
            dlg.close()
            dlg.deleteLater()
            self.progress_dialog = None

    def _done(self, result: tuple[Any, Path]) -> None:
        self._close_progress()
        self._set_busy(False)
        cal, path = result
        self.last_path = path
        log.info("DeepFocus calibration saved: %s (FWHM %.2f um)", path, cal.fwhm_um)
        self._notifier.status(
            f"DeepFocus calibration saved: {path} (FWHM {cal.fwhm_um:.2f} µm)", 10000
        )
        self.show(cal, path)
        self.finished.emit(cal)

    def _failed(self, exc: BaseException) -> None:
        self._close_progress()
        self._set_busy(False)
        self.finished.emit(None)
        if isinstance(exc, CalibrationCancelled):
            self._notifier.status("DeepFocus calibration cancelled: nothing was saved", 6000)
            return
        text = f"The calibration failed: {one_line(exc)}"
        if _no_shipped_weights(exc, self._options):
            text += " (choose a network in the focus method's settings: weights)"
        self._notifier.error(TITLE, text)

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        self._busy_hook(busy)

    # -- showing ---------------------------------------------------------------------------------
    def show_current(self) -> None:
        """Load and show the calibration of the objective in use (a one-line error if none)."""
        from slidescan.focus.deepfocus_calibration import (
            CalibrationError,
            DeepFocusCalibration,
            default_path,
        )

        microscope = self._hardware.microscope
        if microscope is None:
            self._notifier.error(TITLE, "No microscope is connected.")
            return
        objective = self._hardware.objective_name
        path = default_path(self._hardware.profile_name, objective)
        if not path.is_file():
            self._notifier.error(
                TITLE,
                f"No DeepFocus calibration for {objective} on this microscope yet "
                f"({MENU_HINT} makes it): {path}",
            )
            return
        try:
            cal = DeepFocusCalibration.load(path)
            cal.check_matches(microscope.optics)
        except CalibrationError as exc:
            self._notifier.error(TITLE, one_line(exc))
            return
        try:
            self._search_fwhm = self._options().search_fwhm
        except ValueError:
            self._search_fwhm = SEARCH_FWHM
        self.show(cal, path)

    def show(self, cal: Any, path: Path | None) -> CalibrationDialog:
        """The calibration in the (one, non-modal) calibration window."""
        view = self.view
        if view is None:
            view = CalibrationDialog(self._parent)
            view.recalibrateRequested.connect(self.calibrate)
            self.view = view
        view.show_calibration(cal, path, self._search_fwhm)
        view.show()
        view.raise_()
        return view


def _calibrate(
    microscope: Any,
    profile: str,
    load_net: Callable[[Path | None], Any],
    weights: Path | None,
    progress: Callable[[int, int], None],
    cancel: threading.Event,
) -> tuple[Any, Path]:
    """On the worker: the stack, the fit, the file and its plot. Z ends where it started."""
    from slidescan.focus.deepfocus_calibration import default_path, write_plot
    from slidescan.focus.drive import FocusDrive
    from slidescan.focus.learned.deepfocus_calibrate import calibrate_on_drive

    net = load_net(weights)
    if cancel.is_set():
        raise CalibrationCancelled("calibration cancelled")
    truth = microscope.truth
    name = profile or "microscope"
    if truth is not None:  # the simulator: over the slide's tissue, at its true focus
        x0, y0, x1, y1 = truth.slide_bounds_um
        x, y = (x0 + x1) / 2, (y0 + y1) / 2
        microscope.move_xy(x, y)
        centre = float(truth.true_focus_um(x, y))
        source = f"profile {name}: simulated slide at x {x:.0f}, y {y:.0f} um, z {centre:.2f} um"
    else:
        centre = float(microscope.get_z())
        source = f"profile {name}, z {centre:.2f} um"
    drive = FocusDrive(microscope)
    try:
        cal = calibrate_on_drive(net, drive, centre, source, progress=progress)
    finally:
        try:
            drive.move_to(centre)  # back where the person had it
        except Exception as exc:  # the stack's own error matters more
            log.warning("calibration: could not move Z back to %.2f um: %s", centre, exc)
    if cancel.is_set():  # cancelled on the last plane: still nothing written
        raise CalibrationCancelled("calibration cancelled")
    path = default_path(profile, cal.objective)
    cal.save(path)
    write_plot(cal, path.with_suffix(".png"))
    return cal, path


def _no_shipped_weights(exc: BaseException, options: Callable[[], CalibrationOptions]) -> bool:
    try:
        weights = options().weights
    except ValueError:
        return False
    return weights is None and "weights not found" in str(exc)


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
