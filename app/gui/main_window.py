"""The main window: live view in the centre, stage, tile map, focus plots and scan panel in docks.

The window builds its views and wires the parts that do the work, each a small object with
typed dependencies that talks to the others by Qt signals:

- `HardwareConnection` (hardware_connection.py): the `Microscope`, its `HardwareProfile` and
  objective, the stage controller, the wizard and profile manager;
- `CameraControls` (camera_controls.py): live on/off, exposure, snap;
- `PlanPreview` (plan_preview.py): the scan panel as a `ScanPlan`, previewed on the tile map;
- `TissueScan` (tissue_scan.py): the slide's overview, the tissue on it as editable regions,
  and the plan that covers them;
- `DeepFocusCalibrator` (deepfocus_calibrator.py): Focus ▸ Calibrate DeepFocus, the curve
  of the objective in use taken on the worker, saved and shown (calibration_view.py);
- `ScanController` (scan_controller.py): the `ScanRunner`, its event relay, start/pause/stop;
- `ScanViews` (scan_views.py): the running scan in the map, plots, progress and live view;
- `ReviewWindows` (review_windows.py): the review windows opened from here;
- `ExportSlideDialog` (export_dialog.py): File ▸ Export slide (stitching first if need be);
- `Notifier` (notifier.py): dialogs and status messages; `WindowActions` (window_actions.py):
  actions, shortcuts and menus; window_settings.py: what is remembered between runs.

Threads. The GUI thread only paints (and gets the GIL back quickly for it: gil_share.py). Hardware calls the GUI makes (open a profile, jog, snap,
start/stop the live stream, start a scan) run one at a time on `DeviceWorker`. The scan runs on
the runner's own thread; its events arrive through `EventRelay` (one queued signal) and the
views catch up one per event-loop turn. While a scan runs the stage is locked (no jogs) and the
live view shows the frames the scan takes through a `CameraTap`.

Errors never crash the window: every failure ends in a non-blocking dialog (and the log).
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from slidescan.app.gui import dialogs, gil_share
from slidescan.app.gui.camera_controls import CameraControls
from slidescan.app.gui.camera_mount import CameraMount
from slidescan.app.gui.deepfocus_calibrator import CalibrationOptions, DeepFocusCalibrator
from slidescan.app.gui.focus_plots import FocusCurvePlot, FocusSurfacePlot
from slidescan.app.gui.hardware_connection import HardwareConnection
from slidescan.app.gui.live_view import LiveView
from slidescan.app.gui.logs import log_dir
from slidescan.app.gui.map_panel import MapPanel
from slidescan.app.gui.notifier import Notifier
from slidescan.app.gui.plan_preview import PlanPreview
from slidescan.app.gui.review import ReviewWindow
from slidescan.app.gui.review_windows import ReviewWindows
from slidescan.app.gui.scan_controller import ScanController
from slidescan.app.gui.scan_panel import ScanPanel
from slidescan.app.gui.scan_views import ScanViews
from slidescan.app.gui.settings import gui_settings
from slidescan.app.gui.slide_outline import show_slide
from slidescan.app.gui.stage_panel import StageController, StagePanel
from slidescan.app.gui.status_fields import StatusFields
from slidescan.app.gui.tile_map import TileMap
from slidescan.app.gui.tissue_scan import TissueScan
from slidescan.app.gui.window_actions import build_actions, build_menus
from slidescan.app.gui.window_settings import LAYOUT_VERSION, restore_window, save_window
from slidescan.app.gui.worker import DeviceWorker
from slidescan.app.plan import ScanPlan
from slidescan.app.runner import ScanRunner
from slidescan.focus.registry import available_methods
from slidescan.hardware.microscope import Microscope
from slidescan.hardware.optics import OBJECTIVES
from slidescan.hardware.profile import HardwareProfile

log = logging.getLogger(__name__)

Area = QtCore.Qt.DockWidgetArea


class MainWindow(QtWidgets.QMainWindow):
    #: Emitted on the GUI thread with the `Finished` event of every scan run from this window.
    scanFinished = QtCore.Signal(object)
    #: Emitted when a microscope has been connected (or None when disconnected).
    microscopeChanged = QtCore.Signal(object)

    def __init__(
        self, settings: QtCore.QSettings | None = None, parent: QtWidgets.QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.settings = settings if settings is not None else gui_settings()
        self.setWindowTitle("slidescan")
        self.setWindowIcon(dialogs.app_icon())
        self.setDockOptions(
            QtWidgets.QMainWindow.DockOption.AnimatedDocks
            | QtWidgets.QMainWindow.DockOption.AllowTabbedDocks
        )
        self._closed = False
        self._closing = False
        self._quit_after_scan = False
        gil_share.favour_gui_thread()  # short GIL waits for repaints (gil_share.py)
        self.notifier = Notifier(self)
        # No Qt parent for the worker, which other threads emit on: Python owns it, so a job
        # holding a reference keeps it alive even if the window goes first.
        self.worker = DeviceWorker()
        self.worker.failed.connect(self._device_call_failed)
        self.hardware = HardwareConnection(self.worker, self.settings, self.notifier, self)
        self._build_views()
        self.preview = PlanPreview(
            self.scan_panel, self.tile_map, self.focus_surface, self.hardware
        )
        self.tissue = TissueScan(
            self.hardware,
            self.worker,
            self.notifier,
            self.tile_map,
            self.scan_panel,
            busy=lambda on: self._devices_busy(on, "taking the overview"),
            parent=self,
        )
        self.calibration = DeepFocusCalibrator(
            self.hardware,
            self.worker,
            self.notifier,
            options=self._deepfocus_options,
            busy=self._calibration_busy,
            parent=self,
        )
        self._tissue_profile = ""
        self.scan = ScanController(
            self.hardware,
            self.worker,
            self.notifier,
            self.preview.build,
            self,
            overview_for=self.tissue.overview_for,
        )
        self.export_dialog: QtWidgets.QDialog | None = None
        self.scan_views = ScanViews(
            self.tile_map, self.focus_curve, self.focus_surface, self.scan_panel, self.live, self
        )
        self.reviews = ReviewWindows(self.settings, self.notifier, self.scan.rescan, self)
        self._build_docks()
        self.status = StatusFields(self.statusBar())
        self.acts = build_actions(self)
        build_menus(self, self.acts, list(self.docks.values()), self.hardware)
        self._wire()
        self._default_state = restore_window(self, self.settings)
        self._set_hardware_enabled(False)

    # ----------------------------------------------------------------------------------------
    # construction
    # ----------------------------------------------------------------------------------------
    def _build_views(self) -> None:
        self.live = LiveView()
        self.camera = CameraControls(self.live, self.worker, self.notifier)
        self.setCentralWidget(self.live)
        self.stage_panel = StagePanel()
        self.tile_map = TileMap()
        self.tile_map.setToolTip(
            "Double-click: move the stage there · Shift+drag (or Draw): the scan region · "
            "wheel: zoom · drag: pan"
        )
        show_all = QtWidgets.QPushButton("Show all")
        show_all.clicked.connect(self.tile_map.show_all)
        self.map_panel = MapPanel(self.tile_map, show_all)
        self.focus_curve = FocusCurvePlot()
        self.focus_surface = FocusSurfacePlot()
        self.focus_tabs = QtWidgets.QTabWidget()
        self.focus_tabs.addTab(self.focus_curve, "Current tile")
        self.focus_tabs.addTab(self.focus_surface, "Focus surface")
        self.scan_panel = ScanPanel(list(OBJECTIVES), available_methods())

    def _build_docks(self) -> None:
        self.docks: dict[str, QtWidgets.QDockWidget] = {}
        for title, widget, area in (
            ("Stage", self.stage_panel, Area.LeftDockWidgetArea),
            ("Scan", self.scan_panel, Area.LeftDockWidgetArea),
            ("Tile map", self.map_panel, Area.RightDockWidgetArea),
            ("Focus", self.focus_tabs, Area.RightDockWidgetArea),
        ):
            dock = QtWidgets.QDockWidget(title, self)
            dock.setObjectName(f"dock-{title.lower().replace(' ', '-')}")
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
            self.docks[title] = dock
        d = self.docks
        vertical, horizontal = QtCore.Qt.Orientation.Vertical, QtCore.Qt.Orientation.Horizontal
        self.splitDockWidget(d["Stage"], d["Scan"], vertical)
        self.splitDockWidget(d["Tile map"], d["Focus"], vertical)
        self.resizeDocks([d["Scan"], d["Tile map"]], [430, 560], horizontal)
        self.resizeDocks([d["Stage"], d["Scan"]], [260, 700], vertical)

    def _wire(self) -> None:
        hw, scan, views, panel = self.hardware, self.scan, self.scan_views, self.scan_panel
        self.live.moveRequested.connect(self._move_to_xy)
        self.tile_map.moveRequested.connect(self._move_to_xy)
        self.camera.fpsText.connect(self.status.fps.setText)
        panel.startRequested.connect(self.start_scan)
        panel.pauseRequested.connect(scan.pause)
        panel.resumeRequested.connect(scan.resume)
        panel.stopRequested.connect(scan.stop)
        panel.drawRegionToggled.connect(self.tile_map.set_draw_mode)
        panel.objective.currentTextChanged.connect(hw.switch_objective)
        panel.calibrateRequested.connect(self.calibrate_deepfocus)
        panel.showCalibrationRequested.connect(self.calibration.show_current)
        hw.released.connect(self._detach_hardware)
        hw.microscopeChanged.connect(self._microscope_changed)
        hw.connecting.connect(lambda name: self.status.profile.setText(f"connecting {name} …"))
        hw.connectFailed.connect(lambda _: self.status.profile.setText("no hardware"))
        hw.positionChanged.connect(self.status.show_position)
        self.preview.shown.connect(lambda plan, n: self.tissue.show_tiles(n))
        scan.relay.event.connect(views.on_event)
        scan.statusText.connect(self.status.scan.setText)
        scan.fileClaimed.connect(self.reviews.claim)
        scan.scanStarting.connect(self._scan_starting)
        scan.scanEnded.connect(self._scan_ended)
        scan.scanFinished.connect(self.reviews.scan_finished)
        scan.scanFinished.connect(self.scanFinished)
        scan.scanFinished.connect(lambda _: self.close() if self._quit_after_scan else None)
        views.settled.connect(scan.finish)
        views.positionSeen.connect(hw.note_scan_position)
        views.statusText.connect(self.status.scan.setText)

    # ----------------------------------------------------------------------------------------
    # what the parts own, as the window's public attributes
    # ----------------------------------------------------------------------------------------
    @property
    def microscope(self) -> Microscope | None:
        return self.hardware.microscope

    @property
    def profile(self) -> HardwareProfile | None:
        return self.hardware.profile

    @property
    def stage_controller(self) -> StageController | None:
        return self.hardware.stage_controller

    @property
    def runner(self) -> ScanRunner | None:
        return self.scan.runner

    @property
    def scan_active(self) -> bool:
        return self.scan.active

    @property
    def last_dialog(self) -> QtWidgets.QMessageBox | None:
        return self.notifier.last_dialog

    @property
    def review_windows(self) -> list[ReviewWindow]:
        return self.reviews.windows

    # ----------------------------------------------------------------------------------------
    # hardware
    # ----------------------------------------------------------------------------------------
    def connect_profile(self, name: str, objective: str | None = None) -> None:
        self.hardware.connect_profile(name, objective)

    def set_microscope(
        self,
        microscope: Microscope | None,
        profile_name: str = "",
        profile: HardwareProfile | None = None,
    ) -> None:
        self.hardware.set_microscope(microscope, profile_name, profile)

    def run_wizard(self, first_start: bool = False) -> None:
        self.hardware.run_wizard(first_start)

    def reconnect(self) -> None:
        self.hardware.reconnect(self.scan_panel.objective.currentText() or None)

    def _detach_hardware(self) -> None:
        """The views let go of the stage controller and camera the connection closes."""
        self.stage_panel.set_controller(None)
        self.camera.set_camera(None)
        self._set_hardware_enabled(False)

    def _microscope_changed(self, microscope: Microscope | None) -> None:
        hw = self.hardware
        if microscope is None:
            self._detach_hardware()
            self.status.profile.setText("no hardware")
            self.microscopeChanged.emit(None)
            return
        self.stage_panel.set_controller(hw.stage_controller)
        self.camera.set_camera(hw.tap)
        self.live.set_position_fallback(lambda: hw.stage_position)
        mount = CameraMount.of(hw.profile)  # the camera's calibrated rotation and mirror
        self.live.set_mount(mount)
        self.tile_map.set_mount(mount)
        if hw.profile_name != self._tissue_profile:  # another slide holder: another overview
            self.tissue.reset()
            self._tissue_profile = hw.profile_name
        self.scan_views.fov_um = hw.fov_um
        objective = hw.objective_name
        with QtCore.QSignalBlocker(self.scan_panel.objective):
            self.scan_panel.set_objectives(hw.objective_names())
            self.scan_panel.objective.setCurrentText(objective)
        self.status.show_microscope(microscope, hw.profile_name)
        self.setWindowTitle(f"slidescan: {hw.profile_name or 'microscope'}")
        show_slide(self.tile_map, microscope, self.worker)
        self.tissue.reshow()  # the overview taken, kept across a change of objective
        self._set_hardware_enabled(True)
        self.microscopeChanged.emit(microscope)

    def _set_hardware_enabled(self, on: bool) -> None:
        self.scan_panel.set_hardware_ready(on)
        for a in self.acts.need_hardware():
            a.setEnabled(on)

    # -- stage ---------------------------------------------------------------------------------
    def _move_to_xy(self, x: float, y: float) -> None:
        ctl = self.hardware.stage_controller
        if ctl is None:
            return
        if self.scan.active:
            self.notifier.status("stage is busy: scan running", 3000)
            return
        ctl.go_to(x=x, y=y)

    def stop_stage(self) -> None:
        ctl = self.hardware.stage_controller
        if ctl is not None and not self.scan.active:
            ctl.stop()

    # ----------------------------------------------------------------------------------------
    # scanning
    # ----------------------------------------------------------------------------------------
    def build_plan(self, output: str | None = None) -> ScanPlan:
        """The plan the scan panel describes, centred on the stage for grid mode."""
        return self.preview.build(output)

    def start_scan(self, plan: ScanPlan | None = None) -> None:
        """Start a new scan from the panel's settings (or `plan`)."""
        if self.tissue.busy:
            self.notifier.status("the overview is being taken: start when it is done", 4000)
            return
        if self.calibration.busy:
            self.notifier.status("DeepFocus is being calibrated: start when it is done", 4000)
            return
        self.scan.start(plan)

    def find_tissue(self) -> None:
        """Scan ▸ Find tissue: take the overview and find the tissue to scan."""
        if self.scan.active:
            self.notifier.status("a scan is running: find the tissue when it has finished", 4000)
            return
        if self.calibration.busy:
            self.notifier.status("DeepFocus is being calibrated: try again when it is done", 4000)
            return
        self.tissue.find()

    def calibrate_deepfocus(self) -> None:
        """Focus ▸ Calibrate DeepFocus: the objective in use, on the connected microscope."""
        if self.scan.active or self.tissue.busy:
            self.notifier.status("the stage is busy: calibrate when it is free", 4000)
            return
        self.calibration.calibrate()

    def _deepfocus_options(self) -> CalibrationOptions:
        """The network and search interval of the DeepFocus settings in the scan panel (the
        shipped network and the defaults when another method is chosen); ValueError (one
        line) for settings the method refuses."""
        panel = self.scan_panel
        if panel.method.currentText() != "deepfocus":
            return CalibrationOptions()
        values = panel.params.values()
        weights = values.get("weights")
        return CalibrationOptions(
            weights=Path(weights) if weights else None,
            search_fwhm=float(values.get("search_fwhm", CalibrationOptions.search_fwhm)),
        )

    def _calibration_busy(self, busy: bool) -> None:
        self._devices_busy(busy, "calibrating DeepFocus")
        if busy:  # the live view shows the stack's frames going through focus
            self.live.set_polling(True)

    def _devices_busy(self, busy: bool, reason: str) -> None:
        """The overview pre-scan or a calibration owns the stage and camera (like a scan,
        briefly): no jogs, no profile or objective change, no scan meanwhile."""
        self.hardware.set_locked(busy)
        ctl = self.hardware.stage_controller
        if ctl is not None:
            if busy:
                ctl.lock(reason)
            else:
                ctl.unlock()
        if busy:
            self.camera.scan_started()
        else:
            self.camera.scan_ended()
        on = not busy and self.hardware.microscope is not None
        for act in (self.acts.start, self.acts.find_tissue, *self.acts.calibration()):
            act.setEnabled(on)
        self.scan_panel.calibration_row.setEnabled(on)

    def pause_scan(self) -> None:
        self.scan.pause()

    def stop_scan(self) -> None:
        self.scan.stop()

    def resume_from_file(self, path: str | None = None) -> None:
        if self.hardware.microscope is None or self.scan.active:
            return
        if not path:
            path, _ = QtWidgets.QFileDialog.getOpenFileName(
                self, "Resume scan", "", "HDF5 scan files (*.h5)"
            )
        if path:
            self.scan.resume_file(path)

    def _scan_starting(self, plan: ScanPlan, total: int) -> None:
        self.hardware.set_locked(True)
        if self.hardware.stage_controller is not None:
            self.hardware.stage_controller.lock("scan running")
        self.preview.scan_started(plan)
        self.scan_views.scan_started(total)
        self.camera.scan_started()
        self._set_scan_controls(True)

    def _scan_ended(self) -> None:
        self.hardware.set_locked(False)
        if self.hardware.stage_controller is not None:
            self.hardware.stage_controller.unlock()
        self.preview.scan_ended()
        self.scan_views.scan_ended()
        self.camera.scan_ended()
        self.reviews.scan_ended()
        self._set_scan_controls(False)

    def _set_scan_controls(self, active: bool) -> None:
        self.acts.start.setEnabled(not active and self.hardware.microscope is not None)
        self.acts.resume_file.setEnabled(not active)
        ready = not active and self.hardware.microscope is not None
        for act in self.acts.calibration():
            act.setEnabled(ready)
        self.scan_panel.calibration_row.setEnabled(ready)
        self.stage_panel.set_moves_enabled(not active)
        for a in self.acts.stage_moves():
            a.setEnabled(not active)

    # ----------------------------------------------------------------------------------------
    # review, settings, misc
    # ----------------------------------------------------------------------------------------
    def open_review_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open scan", self.scan.scan_path or "", "HDF5 scan files (*.h5)"
        )
        if path:
            self.open_review(path)

    def open_review(self, path: str) -> ReviewWindow | None:
        """A review window for scan file `path` (the existing one if it is open already)."""
        return self.reviews.open(path)

    def export_slide_dialog(self, path: str | None = None) -> QtWidgets.QDialog:
        """File ▸ Export slide: the scan file of the review window in front (else the last
        scan) as a pyramid, stitched first if need be."""
        from slidescan.app.gui.export_dialog import ExportSlideDialog

        dlg = self.export_dialog
        if dlg is not None and dlg.isVisible():
            dlg.raise_()
            return dlg
        path = path or self.reviews.active_path() or self.scan.scan_path
        if (
            path
            and self.scan.active
            and Path(path).resolve() == Path(self.scan.scan_path).resolve()
        ):
            path = ""  # the file a scan is writing cannot be stitched or exported yet
        dlg = ExportSlideDialog(
            path,
            self,
            release=self.reviews.release_path,
            reopen=self.reviews.reopen_path,
            generation=self.reviews.generation_of,
        )
        dlg.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.destroyed.connect(lambda *_: setattr(self, "export_dialog", None))
        dlg.show()  # not modal: the window stays usable while the export runs
        self.export_dialog = dlg
        return dlg

    def open_log_folder(self) -> None:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        QtGui.QDesktopServices.openUrl(QtCore.QUrl.fromLocalFile(str(folder)))
        self.notifier.status(f"logs: {folder}", 8000)

    def show_shortcuts(self) -> None:
        dialogs.show_shortcuts(self, self.actions())

    def save_settings(self) -> None:
        save_window(self, self.settings)

    def reset_layout(self) -> None:
        self.restoreState(self._default_state, LAYOUT_VERSION)
        for dock in self.docks.values():
            dock.show()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 - Qt naming
        if self._closed:
            super().closeEvent(event)
            return
        if self.scan.active:
            # Never block here: ask without a nested event loop, quit once the scan has stopped.
            event.ignore()
            self.notifier.ask(
                "Scan running",
                "A scan is running. Stop it after this tile and quit?\n"
                "(The file keeps every tile taken and can be resumed.)",
                yes=self._stop_and_quit,
            )
            return
        self._closing = True  # from here on a device failure goes to the log, not a dialog
        self.calibration.cancel()  # a calibration running stops after its plane, saves nothing
        self.tissue.cancel()  # a pre-scan running stops after its field
        if self.export_dialog is not None:
            self.export_dialog.shutdown()  # an export or stitch still running stops cleanly
            self.export_dialog.close()
        self.save_settings()
        self.reviews.close_all()
        self.hardware.shutdown()
        self.worker.drain()  # every call made so far runs and is answered; no new ones
        self._closed = True
        gil_share.release()
        super().closeEvent(event)

    def _device_call_failed(self, label: str, exc: BaseException) -> None:
        if self._closing:  # a call that failed while the window closed: the log has it
            log.warning("%s failed after the window closed: %s", label or "device call", exc)
            return
        self.notifier.error("Hardware", f"{label or 'device call'} failed:\n{exc}")

    def _stop_and_quit(self) -> None:
        self._quit_after_scan = True
        self.scan.stop()
