"""The main window: live view in the centre, stage, tile map, focus plots and scan panel in docks.

Threads. The GUI thread only paints. Hardware calls the GUI makes (open a profile, jog, snap,
start/stop the live stream, start a scan, which opens the file and reads Z) run one at a time
on `DeviceWorker`. The scan runs on the runner's own thread; its events arrive through
`EventRelay` (one queued signal); the views catch up one per event-loop turn
(`scheduler.RoundRobin`), so no single turn repaints several heavy plots.
While a scan runs the stage controller is locked (no jogs) and the live view shows the frames
the scan takes through a `CameraTap`.

Errors never crash the window: every failure ends in a non-blocking dialog (and the log).
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from slidescan.app.events import (
    Finished,
    FinishReason,
    FocusDone,
    FrameWritten,
    Progress,
    RunnerState,
    ScanWarning,
    StateChanged,
    TileStarted,
)
from slidescan.app.gui import dialogs
from slidescan.app.gui.camera_tap import CameraTap, install_tap
from slidescan.app.gui.focus_plots import FocusCurvePlot, FocusSurfacePlot
from slidescan.app.gui.live_view import LiveView
from slidescan.app.gui.logs import log_dir
from slidescan.app.gui.relay import EventRelay
from slidescan.app.gui.scan_panel import ScanPanel
from slidescan.app.gui.scheduler import RoundRobin
from slidescan.app.gui.settings import gui_settings, read_json, write_json
from slidescan.app.gui.stage_panel import StageController, StagePanel
from slidescan.app.gui.tile_map import OVERLAYS, TileGeometry, TileMap
from slidescan.app.gui.worker import DeviceWorker
from slidescan.hardware.base import Position
from slidescan.hardware.optics import OBJECTIVES

log = logging.getLogger(__name__)

#: QSettings layout version: bump when docks change so an old layout is not restored.
LAYOUT_VERSION = 1


def focus_quality(ev: FocusDone) -> float:
    """0..1 for the overlay: the method's confidence, 0 when it failed or fell back."""
    if not ev.ok or ev.fallback:
        return 0.0
    return float(min(max(ev.confidence, 0.0), 1.0))


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
        # No Qt parent for the two objects other threads emit on: Python owns them, so the
        # threads holding a reference (a job, a runner) keep them alive even if the window goes.
        self.worker = DeviceWorker()
        self.worker.failed.connect(self._worker_failed)
        self.relay = EventRelay()
        self.relay.event.connect(self.on_scan_event)

        self.microscope: Any = None
        self.profile: Any = None
        self.profile_name = ""
        self.tap: CameraTap | None = None
        self.stage_controller: StageController | None = None
        self.runner: Any = None
        self.scan_path = ""
        self.last_dialog: QtWidgets.QMessageBox | None = None
        self.last_finished: Finished | None = None
        self.review_windows: list[QtWidgets.QWidget] = []
        self._user_paused = False
        self._live_wanted = True
        self._scan_xyz: dict[str, float] = {}
        self._last_objective = ""  # the objective last used (settings), preferred on connect
        self._closed = False
        self._quit_after_scan = False
        self._fov = (0.0, 0.0)

        # -- central: live view ----------------------------------------------------------------
        self.live = LiveView()
        self.live.moveRequested.connect(self._move_to_xy)
        self.live.snapRequested.connect(self.snap)
        self.live.fpsChanged.connect(self._show_fps)
        self.live_button = QtWidgets.QPushButton("Live")
        self.live_button.setCheckable(True)
        self.live_button.setToolTip("Start / stop the live camera stream (L)")
        self.live_button.toggled.connect(self.set_live)
        self.live.toolbar.insertWidget(0, self.live_button)
        self.exposure = QtWidgets.QDoubleSpinBox()
        self.exposure.setRange(0.01, 10000.0)
        self.exposure.setDecimals(2)
        self.exposure.setSuffix(" ms")
        self.exposure.setToolTip("Camera exposure")
        self.exposure.setKeyboardTracking(False)
        self.exposure.valueChanged.connect(self._set_exposure)
        self.live.toolbar.insertWidget(3, self.exposure)
        self.setCentralWidget(self.live)

        # -- docks -----------------------------------------------------------------------------
        self.stage_panel = StagePanel()
        self.tile_map = TileMap()
        self.tile_map.moveRequested.connect(self._move_to_xy)
        self.tile_map.regionChanged.connect(self._region_drawn)
        self.overlay_combo = QtWidgets.QComboBox()
        self.overlay_combo.addItems(OVERLAYS)
        self.overlay_combo.setToolTip("Colour the acquired tiles by focus z or focus quality")
        self.overlay_combo.currentTextChanged.connect(self.tile_map.set_overlay)
        fit = QtWidgets.QPushButton("Show all")
        fit.clicked.connect(self.tile_map.show_all)
        map_bar = QtWidgets.QHBoxLayout()
        map_bar.addWidget(QtWidgets.QLabel("Overlay"))
        map_bar.addWidget(self.overlay_combo)
        map_bar.addStretch(1)
        map_bar.addWidget(fit)
        self.tile_map.setToolTip(
            "Double-click: move the stage there · Shift+drag (or Draw): the scan region · "
            "wheel: zoom · drag: pan"
        )
        map_box = QtWidgets.QWidget()
        v = QtWidgets.QVBoxLayout(map_box)
        v.setContentsMargins(0, 0, 0, 0)
        v.addWidget(self.tile_map, 1)
        v.addLayout(map_bar)

        self.focus_curve = FocusCurvePlot()
        self.focus_surface = FocusSurfacePlot()
        self.focus_tabs = QtWidgets.QTabWidget()
        self.focus_tabs.addTab(self.focus_curve, "Current tile")
        self.focus_tabs.addTab(self.focus_surface, "Focus surface")

        from slidescan.focus.registry import available_methods

        self.scan_panel = ScanPanel(list(OBJECTIVES), available_methods())
        self.scan_panel.startRequested.connect(self.start_scan)
        self.scan_panel.pauseRequested.connect(self.pause_scan)
        self.scan_panel.resumeRequested.connect(self.resume_scan)
        self.scan_panel.stopRequested.connect(self.stop_scan)
        self.scan_panel.drawRegionToggled.connect(self.tile_map.set_draw_mode)
        self.scan_panel.objective.currentTextChanged.connect(self._objective_changed)
        self._preview_timer = QtCore.QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(150)
        self._preview_timer.timeout.connect(self._preview_plan)
        self.scan_panel.planChanged.connect(self._plan_edited)
        self._map_shows_scan = False  # the map holds a scan's tiles: keep them until an edit

        self.docks: dict[str, QtWidgets.QDockWidget] = {}
        self._add_dock("Stage", self.stage_panel, QtCore.Qt.DockWidgetArea.LeftDockWidgetArea)
        self._add_dock("Scan", self.scan_panel, QtCore.Qt.DockWidgetArea.LeftDockWidgetArea)
        self._add_dock("Tile map", map_box, QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
        self._add_dock("Focus", self.focus_tabs, QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
        self.splitDockWidget(
            self.docks["Stage"], self.docks["Scan"], QtCore.Qt.Orientation.Vertical
        )
        self.splitDockWidget(
            self.docks["Tile map"], self.docks["Focus"], QtCore.Qt.Orientation.Vertical
        )
        horizontal = QtCore.Qt.Orientation.Horizontal
        self.resizeDocks([self.docks["Scan"], self.docks["Tile map"]], [430, 560], horizontal)
        self.resizeDocks(
            [self.docks["Stage"], self.docks["Scan"]], [260, 700], QtCore.Qt.Orientation.Vertical
        )

        # -- scan views, refreshed one per event-loop turn (scheduler.RoundRobin) -------------
        self._pending_focus: FocusDone | None = None
        self._pending_thumbs: dict[int, FrameWritten] = {}
        self._pending_progress: Progress | None = None
        self._pending_tile: TileStarted | None = None
        self._overlay_dirty = False
        self.views = RoundRobin(40, self)
        self.views.add("status", self._refresh_status)
        self.views.add("map", self._refresh_map, 200)
        self.views.add("curve", self._draw_focus, 250)
        self.views.add("live", self.live.poll, 100)
        self.views.add("surface", self.focus_surface.redraw, 1000)
        # while scanning, the live view shows the scan's newest frame (focus shots too) at 4 Hz
        self._scan_view_timer = QtCore.QTimer(self)
        self._scan_view_timer.setInterval(250)
        self._scan_view_timer.timeout.connect(lambda: self.views.mark("live"))

        # -- status bar ------------------------------------------------------------------------
        self.stage_label = QtWidgets.QLabel("stage: --")
        self.camera_label = QtWidgets.QLabel("camera: --")
        self.fps_label = QtWidgets.QLabel("-- fps")
        self.scan_label = QtWidgets.QLabel("scan: idle")
        self.profile_label = QtWidgets.QLabel("no hardware")
        for w in (
            self.profile_label,
            self.stage_label,
            self.camera_label,
            self.fps_label,
            self.scan_label,
        ):
            w.setContentsMargins(6, 0, 6, 0)
            self.statusBar().addPermanentWidget(w)

        self._build_actions()
        self._build_menus()
        self._restore()
        self._set_hardware_enabled(False)

    # ----------------------------------------------------------------------------------------
    # construction
    # ----------------------------------------------------------------------------------------
    def _add_dock(
        self, title: str, widget: QtWidgets.QWidget, area: QtCore.Qt.DockWidgetArea
    ) -> None:
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(f"dock-{title.lower().replace(' ', '-')}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        self.docks[title] = dock

    def _action(self, text: str, slot: Any, shortcuts: Any = (), tip: str = "") -> QtGui.QAction:
        act = QtGui.QAction(text, self)
        if isinstance(shortcuts, (str, QtGui.QKeySequence, QtGui.QKeySequence.StandardKey)):
            shortcuts = [shortcuts]
        seqs = [QtGui.QKeySequence(s) for s in shortcuts]
        if seqs:
            act.setShortcuts(seqs)
            act.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
        if tip:
            act.setStatusTip(tip)
        act.triggered.connect(slot)
        self.addAction(act)
        return act

    def _build_actions(self) -> None:
        sp = self.stage_panel
        k = QtCore.Qt.Key
        m = QtCore.Qt.KeyboardModifier.ShiftModifier
        self.act_jog = [
            self._action("Move left", lambda: sp.jog_xy(-1, 0), QtGui.QKeySequence(k.Key_Left)),
            self._action("Move right", lambda: sp.jog_xy(1, 0), QtGui.QKeySequence(k.Key_Right)),
            self._action("Move up (−y)", lambda: sp.jog_xy(0, -1), QtGui.QKeySequence(k.Key_Up)),
            self._action("Move down (+y)", lambda: sp.jog_xy(0, 1), QtGui.QKeySequence(k.Key_Down)),
            self._action(
                "Move left ×10", lambda: sp.jog_xy(-1, 0, 10), QtGui.QKeySequence(m | k.Key_Left)
            ),
            self._action(
                "Move right ×10", lambda: sp.jog_xy(1, 0, 10), QtGui.QKeySequence(m | k.Key_Right)
            ),
            self._action(
                "Move up ×10", lambda: sp.jog_xy(0, -1, 10), QtGui.QKeySequence(m | k.Key_Up)
            ),
            self._action(
                "Move down ×10", lambda: sp.jog_xy(0, 1, 10), QtGui.QKeySequence(m | k.Key_Down)
            ),
            self._action("Focus up", lambda: sp.jog_z(1), QtGui.QKeySequence(k.Key_PageUp)),
            self._action("Focus down", lambda: sp.jog_z(-1), QtGui.QKeySequence(k.Key_PageDown)),
            self._action(
                "Focus up ×10", lambda: sp.jog_z(1, 10), QtGui.QKeySequence(m | k.Key_PageUp)
            ),
            self._action(
                "Focus down ×10", lambda: sp.jog_z(-1, 10), QtGui.QKeySequence(m | k.Key_PageDown)
            ),
            self._action("Stop the stage", self._stop_stage, QtGui.QKeySequence(k.Key_Escape)),
        ]
        self.act_snap = self._action("&Snap", self.snap, "Space", "Take one frame")
        self.act_live = self._action("&Live", self.live_button.toggle, "L", "Live stream on/off")
        self.act_auto = self._action("&Auto contrast", self.live.auto_contrast, "A")
        self.act_start = self._action("&Start scan", self.start_scan, "Ctrl+R")
        self.act_pause = self._action("&Pause / resume scan", self.toggle_pause, "Ctrl+P")
        self.act_stop = self._action("S&top scan", self.stop_scan, "Ctrl+.")
        self.act_resume_file = self._action(
            "Resume a scan file…", self.resume_from_file, "Ctrl+Shift+R"
        )
        self.act_review = self._action(
            "&Open scan for review…", self.open_review_dialog, QtGui.QKeySequence.StandardKey.Open
        )
        self.act_draw = self._action(
            "&Draw scan region", lambda: self.scan_panel.draw_button.toggle(), "D"
        )
        self.act_show_all = self._action("Show the whole &map", self.tile_map.show_all, "Ctrl+0")
        self.act_wizard = self._action(
            "Hardware &wizard…", lambda: self.run_wizard(), "Ctrl+Shift+W"
        )
        self.act_profiles = self._action("&Manage profiles…", self.manage_profiles)
        self.act_reconnect = self._action("&Reconnect", self.reconnect)
        self.act_logs = self._action("Open &log folder", self.open_log_folder)
        self.act_about = self._action("&About slidescan", lambda: dialogs.show_about(self))
        self.act_keys = self._action("&Keyboard shortcuts", self.show_shortcuts, "F1")
        self.act_quit = self._action("&Quit", self.close, QtGui.QKeySequence.StandardKey.Quit)
        self.act_reset_layout = self._action("&Reset layout", self.reset_layout)

    def _build_menus(self) -> None:
        mb = self.menuBar()
        file_menu = mb.addMenu("&File")
        for a in (self.act_review, self.act_resume_file):
            file_menu.addAction(a)
        file_menu.addSeparator()
        file_menu.addAction(self.act_quit)
        self.hardware_menu = mb.addMenu("&Hardware")
        self.profiles_menu = QtWidgets.QMenu("Switch &profile", self)
        self.profiles_menu.aboutToShow.connect(self._fill_profiles_menu)
        self.hardware_menu.addMenu(self.profiles_menu)
        for a in (self.act_wizard, self.act_profiles, self.act_reconnect):
            self.hardware_menu.addAction(a)
        cam = mb.addMenu("&Camera")
        for a in (self.act_live, self.act_snap, self.act_auto):
            cam.addAction(a)
        stage = mb.addMenu("&Stage")
        for a in self.act_jog:
            stage.addAction(a)
        scan = mb.addMenu("S&can")
        for a in (self.act_start, self.act_pause, self.act_stop, self.act_draw, self.act_show_all):
            scan.addAction(a)
        view = mb.addMenu("&View")
        for dock in self.docks.values():
            view.addAction(dock.toggleViewAction())
        view.addSeparator()
        view.addAction(self.act_reset_layout)
        help_menu = mb.addMenu("&Help")
        for a in (self.act_keys, self.act_logs, self.act_about):
            help_menu.addAction(a)

    # ----------------------------------------------------------------------------------------
    # settings
    # ----------------------------------------------------------------------------------------
    def _restore(self) -> None:
        s = self.settings
        self._default_state = self.saveState(LAYOUT_VERSION)
        geometry = s.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1500, 950)
        state = s.value("window/state")
        if state is not None:
            self.restoreState(state, LAYOUT_VERSION)
        scan = read_json(s, "scan/settings")
        if isinstance(scan, dict):
            self.scan_panel.apply_settings(scan)
            self._last_objective = str(scan.get("objective", ""))
        overlay = str(s.value("map/overlay", "none"))
        if overlay in OVERLAYS:
            self.overlay_combo.setCurrentText(overlay)
        for key, combo in (
            ("stage/xy_step", self.stage_panel.xy_step),
            ("stage/z_step", self.stage_panel.z_step),
        ):
            i = combo.findText(str(s.value(key, "")))
            if i >= 0:
                combo.setCurrentIndex(i)
        self._live_wanted = str(s.value("camera/live", "true")).lower() == "true"

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState(LAYOUT_VERSION))
        write_json(s, "scan/settings", self.scan_panel.settings())
        s.setValue("map/overlay", self.overlay_combo.currentText())
        s.setValue("stage/xy_step", self.stage_panel.xy_step.currentText())
        s.setValue("stage/z_step", self.stage_panel.z_step.currentText())
        s.setValue("camera/live", "true" if self._live_wanted else "false")
        if self.profile_name:
            s.setValue("profile/last", self.profile_name)
        s.sync()

    def reset_layout(self) -> None:
        self.restoreState(self._default_state, LAYOUT_VERSION)
        for dock in self.docks.values():
            dock.show()

    # ----------------------------------------------------------------------------------------
    # hardware
    # ----------------------------------------------------------------------------------------
    def connect_profile(self, name: str, objective: str | None = None) -> None:
        """Open profile `name` on the worker (with `objective`, else the one last used when the
        profile has it, else its default); a failure offers the wizard or the simulator."""
        from slidescan.hardware.profile import load_profile, open_microscope

        self.statusBar().showMessage(f"connecting to {name} …")
        self.profile_label.setText(f"connecting {name} …")

        preferred = self._last_objective

        def job() -> tuple[Any, Any]:
            prof = load_profile(name)
            names = [o.name for o in prof.objectives]
            # the objective asked for, else the one last used if this microscope has it
            chosen = objective or (preferred if preferred in names else None)
            return prof, open_microscope(prof, objective=chosen)

        self._release_microscope()
        self.worker.submit(
            job,
            on_result=lambda r: self.set_microscope(r[1], name, r[0]),
            on_error=lambda exc: self._profile_failed(name, exc),
            label=f"open profile {name}",
        )

    def _profile_failed(self, name: str, exc: BaseException) -> None:
        self.profile_label.setText("no hardware")
        buttons = {"Run the hardware wizard…": lambda: self.run_wizard()}
        if name != "simulator":
            buttons["Use the simulator"] = lambda: self.connect_profile("simulator")
        self.last_dialog = dialogs.show_error(
            self, "Hardware", f"Profile '{name}' could not connect:\n{exc}", buttons=buttons
        )

    def set_microscope(self, microscope: Any, profile_name: str = "", profile: Any = None) -> None:
        """Use `microscope` (a hardware.microscope.Microscope) from now on."""
        self._release_microscope()
        self.microscope = microscope
        self.profile = profile
        self.profile_name = profile_name
        if microscope is None:
            self._set_hardware_enabled(False)
            self.microscopeChanged.emit(None)
            return
        self.tap = install_tap(microscope)
        self.stage_controller = StageController(microscope.stage, self.worker, parent=self)
        self.stage_controller.positionChanged.connect(self._position_changed)
        self.stage_controller.message.connect(lambda t: self.statusBar().showMessage(t, 4000))
        self.stage_controller.error.connect(lambda t: self._show_error("Stage", t))
        self.stage_panel.set_controller(self.stage_controller)
        self.live.set_frame_source(self.tap.latest_frame)
        self.live.set_position_fallback(
            lambda: self.stage_controller.position if self.stage_controller else None
        )
        objective = getattr(getattr(microscope.optics, "objective", None), "name", "")
        objectives = self._profile_objectives() or list(OBJECTIVES)
        if objective and objective not in objectives:
            objectives.insert(0, objective)
        with QtCore.QSignalBlocker(self.scan_panel.objective):
            self.scan_panel.set_objectives(objectives)
            if objective:
                self.scan_panel.objective.setCurrentText(objective)
                self._last_objective = objective
        cam = microscope.camera
        shape = tuple(cam.shape)
        pixel = float(microscope.optics.pixel_size_um)
        self._fov = (shape[1] * pixel, shape[0] * pixel)
        with QtCore.QSignalBlocker(self.exposure):
            self.exposure.setValue(float(cam.exposure_ms))
        kind = "RGB" if len(shape) == 3 else "mono"
        self.camera_label.setText(
            f"camera {shape[1]}×{shape[0]} {kind} {cam.dtype}, {pixel:.3f} µm/px"
        )
        self.profile_label.setText(f"profile: {profile_name or 'custom'} ({objective or '?'})")
        self.setWindowTitle(f"slidescan: {profile_name or 'microscope'}")
        self._show_slide(microscope)
        self._set_hardware_enabled(True)
        if profile_name:
            self.settings.setValue("profile/last", profile_name)
        if self._live_wanted:
            self.live_button.setChecked(True)
        self.microscopeChanged.emit(microscope)
        self.statusBar().showMessage(f"connected: {profile_name or 'microscope'}", 5000)
        log.info("connected %s (%s)", profile_name or "microscope", objective)

    def _show_slide(self, microscope: Any) -> None:
        """Outline the glass (the XY travel, when it is slide-sized), the tissue area and, for a
        microscope that can make one (the simulator), an overview picture of the slide."""
        lim = microscope.stage.limits
        (x0, x1), (y0, y1) = lim.range("x"), lim.range("y")
        slide_sized = 0 < x1 - x0 <= 200_000 and 0 < y1 - y0 <= 200_000
        self.tile_map.set_slide_bounds((x0, y0, x1, y1) if slide_sized else None)
        bounds = getattr(microscope, "slide_bounds_um", None)
        self.tile_map.set_tissue_bounds(tuple(bounds) if bounds is not None else None)
        self.tile_map.set_overview(None)
        overview = getattr(microscope, "overview", None)
        if callable(overview) and bounds is not None:
            bx0, by0, bx1, by1 = bounds
            pixel = max(5.0, max(bx1 - bx0, by1 - by0) / 600.0)
            margin = 0.08 * max(bx1 - bx0, by1 - by0)

            def shown(image: Any) -> None:
                h, w = image.shape[:2]
                ox, oy = bx0 - margin, by0 - margin
                self.tile_map.set_overview(image, (ox, oy, ox + w * pixel, oy + h * pixel))

            self.worker.submit(
                overview,
                pixel,
                margin,
                on_result=shown,
                on_error=lambda e: None,
                label="slide overview",
            )
        self.tile_map.zoom_to_tissue()

    def _profile_objectives(self) -> list[str]:
        entries = getattr(self.profile, "objectives", None) or []
        names = []
        for e in entries:
            name = getattr(e, "name", None) or (e.get("name") if isinstance(e, dict) else None)
            if name:
                names.append(str(name))
        return names

    def _release_microscope(self) -> None:
        """Stop using the current microscope: stop its stream and close it on the worker."""
        m = self.microscope
        if m is None:
            return
        self.live.set_frame_source(None)
        with QtCore.QSignalBlocker(self.live_button):
            self.live_button.setChecked(False)
        if self.stage_controller is not None:
            self.stage_controller.stop_polling()
            self.stage_controller.deleteLater()
            self.stage_controller = None
        self.stage_panel.set_controller(None)
        self.microscope = None
        self.tap = None

        def close() -> None:
            cam = m.camera
            if getattr(cam, "streaming", False):
                cam.stop_stream()
            m.close()

        self.worker.submit(close, label="close microscope")

    def _set_hardware_enabled(self, on: bool) -> None:
        for w in (
            self.live_button,
            self.live.snap_button,
            self.scan_panel.start_button,
            self.exposure,
        ):
            w.setEnabled(on)
        for a in (self.act_snap, self.act_live, self.act_start, *self.act_jog):
            a.setEnabled(on)

    def reconnect(self) -> None:
        if self.scan_active:
            self.statusBar().showMessage("a scan is running", 4000)
            return
        name = self.profile_name or str(self.settings.value("profile/last", "simulator"))
        self.connect_profile(name, self.scan_panel.objective.currentText() or None)

    def _objective_changed(self, name: str) -> None:
        current = getattr(
            getattr(getattr(self.microscope, "optics", None), "objective", None), "name", ""
        )
        if not name or not self.profile_name or name == current or self.scan_active:
            return
        self.connect_profile(self.profile_name, name)

    def _fill_profiles_menu(self) -> None:
        self.profiles_menu.clear()
        try:
            from slidescan.hardware.profile import list_profiles

            names = list_profiles()
        except Exception as exc:
            self.profiles_menu.addAction(f"(profiles unavailable: {exc})").setEnabled(False)
            return
        group = QtGui.QActionGroup(self.profiles_menu)
        for name in names:
            act = self.profiles_menu.addAction(name)
            act.setCheckable(True)
            act.setChecked(name == self.profile_name)
            group.addAction(act)
            act.triggered.connect(lambda _=False, n=name: self.connect_profile(n))

    def run_wizard(self, first_start: bool = False) -> None:
        """Open the hardware wizard; on a first start, cancelling it falls back to the
        shipped simulator profile so the program is usable at once."""
        from slidescan.app.gui.wizard import HardwareWizard

        wizard = HardwareWizard(self, worker=self.worker)
        wizard.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        wizard.profileSaved.connect(lambda name: self.connect_profile(name))
        if first_start:
            wizard.rejected.connect(
                lambda: self.connect_profile("simulator") if self.microscope is None else None
            )
        self.wizard = wizard
        wizard.open()

    def manage_profiles(self) -> None:
        from slidescan.app.gui.wizard import ProfileManager

        dlg = ProfileManager(self, current=self.profile_name)
        dlg.useProfile.connect(self.connect_profile)
        dlg.editProfile.connect(self._edit_profile)
        dlg.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        self.profile_manager = dlg
        dlg.open()

    def _edit_profile(self, name: str) -> None:
        from slidescan.app.gui.wizard import HardwareWizard

        wizard = HardwareWizard(self, worker=self.worker, edit=name)
        wizard.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        wizard.profileSaved.connect(lambda n: self.connect_profile(n))
        self.wizard = wizard
        wizard.open()

    # -- camera --------------------------------------------------------------------------------
    def set_live(self, on: bool) -> None:
        self._live_wanted = on
        if self.microscope is None or self.scan_active:
            return
        cam = self.microscope.camera
        self.worker.submit(cam.start_stream if on else cam.stop_stream, label="live stream")

    def _show_fps(self, fps: float) -> None:
        if self.scan_active:
            self.fps_label.setText("view: scan frames")
        elif self.live_button.isChecked():
            self.fps_label.setText(f"{fps:.1f} fps")
        else:
            self.fps_label.setText("live off")

    def _set_exposure(self, ms: float) -> None:
        cam = self.microscope.camera if self.microscope is not None else None
        if cam is None or self.scan_active or abs(float(cam.exposure_ms) - ms) < 1e-9:
            return

        def apply() -> None:
            cam.exposure_ms = float(ms)

        self.worker.submit(apply, label="set exposure")

    def snap(self) -> None:
        if self.microscope is None:
            return
        if self.scan_active:
            self.statusBar().showMessage("the scan owns the camera", 3000)
            return
        self.worker.submit(
            self.microscope.camera.snap, on_result=self.live.show_frame, label="snap"
        )

    # -- stage ---------------------------------------------------------------------------------
    def _move_to_xy(self, x: float, y: float) -> None:
        if self.stage_controller is None:
            return
        if self.scan_active:
            self.statusBar().showMessage("stage is busy: scan running", 3000)
            return
        self.stage_controller.go_to(x=x, y=y)

    def _stop_stage(self) -> None:
        if self.stage_controller is not None and not self.scan_active:
            self.stage_controller.stop()

    def _position_changed(self, p: Position) -> None:
        self.stage_label.setText(f"X {p.x:.1f}  Y {p.y:.1f}  Z {p.z:.2f} µm")
        if self._fov[0] > 0:
            self.tile_map.set_fov(p.x, p.y, *self._fov)
        if not self._map_shows_scan and self.scan_panel.mode_grid.isChecked():
            self._preview_timer.start()  # the planned grid follows the stage

    # ----------------------------------------------------------------------------------------
    # scanning
    # ----------------------------------------------------------------------------------------
    @property
    def scan_active(self) -> bool:
        return self.runner is not None

    def _region_drawn(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.scan_panel.set_region(x0, y0, x1, y1)
        self.scan_panel.draw_button.setChecked(False)
        if not self.scan_active:
            self._map_shows_scan = False
            self._preview_plan()

    def _plan_edited(self) -> None:
        if not self.scan_active:
            self._map_shows_scan = False
            self._preview_timer.start()

    def _preview_plan(self) -> None:
        """Show the tiles the scan panel would take (not while a scan shows its own)."""
        if self.scan_active or self._map_shows_scan or self.microscope is None or self._fov[0] <= 0:
            return
        try:
            plan = self.build_plan(output="preview.h5")
        except ValueError:
            return
        self._show_plan(plan)

    def build_plan(self, output: str | None = None) -> Any:
        """The plan the scan panel describes, centred on the stage for grid mode."""
        pos = self.stage_controller.position if self.stage_controller else None
        if pos is None:
            raise ValueError("the stage position is not known yet")
        return self.scan_panel.build_plan(
            (pos.x, pos.y), self._fov, self.profile_name or "custom", output
        )

    def _show_plan(self, plan: Any) -> None:
        tiles = plan.tiles(*self._fov)
        fw, fh = self._fov
        self.tile_map.set_planned_tiles(
            TileGeometry(t.index, t.row, t.col, t.x_um, t.y_um, fw, fh) for t in tiles
        )
        x0, y0, x1, y1 = plan.region.bounds
        self.tile_map.set_region((x0, y0, x1, y1))
        self.focus_surface.set_bounds((x0, y0, x1, y1))
        return tiles

    def start_scan(self, plan: Any = None) -> None:
        """Start a new scan from the panel's settings (or `plan`)."""
        if self.microscope is None:
            self._show_error("Scan", "No microscope is connected (Hardware ▸ Switch profile).")
            return
        if self.scan_active:
            return
        try:
            if plan is None:
                plan = self.build_plan()
            Path(plan.output).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except (ValueError, OSError) as exc:
            self._show_error("Scan", str(exc))
            return
        from slidescan.app.runner import ScanRunner

        profile = (
            self.profile.model_dump(mode="json") if hasattr(self.profile, "model_dump") else None
        )
        runner = ScanRunner(plan, self.microscope, self.relay, profile=profile)
        tiles = self._show_plan(plan)
        self._launch(runner, len(tiles), plan.output)

    def resume_from_file(self, path: str | None = None) -> None:
        if self.microscope is None or self.scan_active:
            return
        if not path:
            path, _ = QtWidgets.QFileDialog.getOpenFileName(
                self, "Resume scan", "", "HDF5 scan files (*.h5)"
            )
        if not path:
            return
        self._run_file(path, mode="resume")

    def rescan(self, path: str, indices: list[int]) -> None:
        """Take planned tiles `indices` of scan file `path` again (review's Rescan)."""
        if self.microscope is None:
            self._show_error("Rescan", "No microscope is connected.")
            return
        if self.scan_active:
            self._show_error("Rescan", "A scan is running; rescan when it has finished.")
            return
        self._run_file(path, mode="rescan", indices=indices)

    def _run_file(self, path: str, mode: str, indices: list[int] | None = None) -> None:
        from slidescan.app.runner import ScanRunner

        self._release_reviews(path)
        try:
            if mode == "resume":
                runner = ScanRunner.for_resume(path, self.microscope, self.relay)
            else:
                runner = ScanRunner.for_rescan(path, self.microscope, indices or [], self.relay)
        except Exception as exc:
            self._show_error("Scan", f"Cannot {mode} {path}: {exc}")
            return
        tiles = self._show_plan(runner.plan)
        self._launch(runner, len(tiles) if mode == "resume" else len(indices or []), path)

    def _release_reviews(self, path: str | Path) -> None:
        """Review windows of `path` let go of the file while this window's scan writes it.

        HDF5 refuses a writer while this process holds a reader of the same file, and with
        HDF5 2.0 two readers of one file in one process that refresh read wrong chunks (the
        runner opens one at the end of a scan); they reload when the scan has finished."""
        for win in self.review_windows:
            if Path(win.path).resolve() == Path(path).resolve():
                win.release_file()

    def _prepare_focus(self, runner: Any) -> bool:
        """Build the scan's focus method here, under a wait cursor, before the scan starts:
        a learned one imports torch and loads its weights, seconds that would otherwise be an
        event-loop stall during the first tile (the importing thread holds the GIL). A method
        that cannot be built (a missing or corrupt weight file) is a dialog, and no scan."""
        name = runner.plan.focus.method
        self.statusBar().showMessage(f"Loading focus method {name} ...")
        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
        try:
            runner.prepare_focus()
        except Exception as exc:  # shown to the user; the scan is not started
            log.warning("focus method %s could not be built: %s", name, exc)
            self._show_error("Scan", f"The focus method {name} could not be loaded:\n{exc}")
            return False
        finally:
            QtWidgets.QApplication.restoreOverrideCursor()
            self.statusBar().clearMessage()
        return True

    def _launch(self, runner: Any, total: int, path: str) -> None:
        if not self._prepare_focus(runner):
            return
        # A full (generation 2) garbage collection walks every object of this big process:
        # 30-90 ms on whichever thread triggers it, often the GUI thread: an event-loop stall.
        # Freezing the objects that exist now (no collection: instant) makes collections
        # during the scan look at new objects only; `_after_scan` unfreezes them.
        gc.freeze()
        self._release_reviews(path)
        self._map_shows_scan = True
        self.runner = runner
        self.scan_path = str(path)
        self._user_paused = False
        self._scan_xyz = {}
        self.live.set_polling(False)  # the scheduler shows the scan's frames, a few per second
        self._scan_view_timer.start()
        self.focus_surface.clear_points()
        self.scan_panel.reset_progress(total)
        self.scan_panel.set_state(RunnerState.RUNNING, "starting")
        self.scan_label.setText("scan: starting")
        self._set_scan_controls(True)
        if self.stage_controller is not None:
            self.stage_controller.lock("scan running")
        cam = self.microscope.camera
        if getattr(cam, "streaming", False):
            self.worker.submit(cam.stop_stream, label="stop live stream")
        self.worker.submit(runner.start, on_error=self._start_failed, label="start scan")
        log.info("scan started: %s", path)

    def _start_failed(self, exc: BaseException) -> None:
        self.runner = None
        self._scan_ended()
        self._show_error("Scan", f"The scan could not start:\n{exc}")

    def _set_scan_controls(self, active: bool) -> None:
        self.act_start.setEnabled(not active and self.microscope is not None)
        self.stage_panel.set_moves_enabled(not active)
        self.act_resume_file.setEnabled(not active)
        self.exposure.setEnabled(not active)
        for a in self.act_jog:
            a.setEnabled(not active)

    def pause_scan(self) -> None:
        if self.runner is not None:
            self._user_paused = True
            self.runner.pause()

    def resume_scan(self) -> None:
        if self.runner is not None:
            self._user_paused = False
            self.runner.resume()

    def toggle_pause(self) -> None:
        if self.runner is None:
            return
        if self.runner.state is RunnerState.PAUSED:
            self.resume_scan()
        else:
            self.pause_scan()

    def stop_scan(self) -> None:
        if self.runner is not None:
            self.scan_label.setText("scan: stopping after this tile")
            self.runner.cancel()

    # -- events from the runner (GUI thread) ---------------------------------------------------
    def on_scan_event(self, ev: Any) -> None:
        """Record what an event changes; the views catch up one per event-loop turn."""
        if isinstance(ev, FrameWritten):
            if not ev.skipped or ev.thumbnail.size > 1:
                self._pending_thumbs[ev.index] = ev
            self.views.mark("map")
            self.views.mark("live")
        elif isinstance(ev, Progress):
            self._pending_progress = ev
            self.views.mark("status")
        elif isinstance(ev, TileStarted):
            self._pending_tile = ev
            self._scan_xyz.update(x=ev.x_um, y=ev.y_um)
            self.views.mark("map")
            self.views.mark("status")
        elif isinstance(ev, FocusDone):
            self._scan_xyz["z"] = ev.z_um
            self._pending_focus = ev
            tile = self.tile_map.planned.get(ev.index)
            if tile is not None:
                self.focus_surface.add_point(tile.x_um, tile.y_um, ev.z_um)
                self.views.mark("surface")
            self.tile_map.set_tile_focus(ev.index, ev.z_um, focus_quality(ev))
            self._overlay_dirty = True
            for name in ("curve", "live", "status"):
                self.views.mark(name)
        elif isinstance(ev, ScanWarning):
            self.scan_panel.add_warning(ev.message)
        elif isinstance(ev, StateChanged):
            self._state_changed(ev)
        elif isinstance(ev, Finished):
            self._finished(ev)

    def _refresh_status(self) -> None:
        p = self._pending_progress
        if p is not None:
            self._pending_progress = None
            self.scan_panel.show_progress(p)
            self.scan_label.setText(f"scan: {p.done}/{p.total} tiles")
        ctl = self.stage_controller
        if ctl is not None and self._scan_xyz:
            old = ctl.position or Position(0.0, 0.0, 0.0)
            xyz = self._scan_xyz
            ctl.set_known_position(
                Position(xyz.get("x", old.x), xyz.get("y", old.y), xyz.get("z", old.z))
            )

    def _refresh_map(self) -> None:
        thumbs, self._pending_thumbs = self._pending_thumbs, {}
        for ev in thumbs.values():
            self.tile_map.add_tile_image(
                ev.index, ev.x_um, ev.y_um, ev.width_um, ev.height_um, ev.thumbnail, dim=ev.skipped
            )
        t = self._pending_tile
        if t is not None:
            self._pending_tile = None
            self.tile_map.set_current_tile(t.x_um, t.y_um, *self._fov)
        if self._overlay_dirty and self.tile_map.overlay_mode != "none":
            self._overlay_dirty = False
            self.tile_map.refresh_overlay()

    def _draw_focus(self) -> None:
        if self._pending_focus is not None:
            self.focus_curve.show_focus(self._pending_focus)

    def _state_changed(self, ev: StateChanged) -> None:
        self.scan_panel.set_state(ev.state, ev.message)
        self.scan_label.setText(f"scan: {ev.state.value}")
        if ev.state is RunnerState.PAUSED and not self._user_paused and ev.message:
            # the runner paused itself: a device error. Say so, offer resume or stop.
            self.last_dialog = dialogs.show_error(
                self,
                "Scan paused: device error",
                f"{ev.message}\n\nThe tiles taken so far are safe in {self.scan_path}.",
                buttons={
                    "Resume (retry the tile)": self.resume_scan,
                    "Stop the scan": self.stop_scan,
                },
            )

    def _finished(self, ev: Finished) -> None:
        self.last_finished = ev
        self.runner = None
        for name in ("status", "map", "curve", "surface"):
            self.views.mark(name)
        self._overlay_dirty = True
        self.views.when_idle(lambda: self._after_scan(ev))

    def _after_scan(self, ev: Finished) -> None:
        """Once the views have caught up: controls back, the outcome said, `scanFinished`."""
        gc.unfreeze()  # let garbage from before the scan be collected again, in idle time
        self._scan_ended()
        self.tile_map.refresh_overlay()
        done = ev.summary.get("tiles_done", ev.summary.get("tiles_this_run", "?"))
        if ev.reason is FinishReason.COMPLETED:
            self.statusBar().showMessage(f"scan complete: {ev.path}", 10000)
            self.scan_label.setText("scan: completed")
        elif ev.reason is FinishReason.CANCELLED:
            self.scan_label.setText("scan: stopped")
            self.statusBar().showMessage(
                f"scan stopped; resume it with File ▸ Resume a scan file ({ev.path})", 10000
            )
        else:
            self.scan_label.setText("scan: error")
            self.last_dialog = dialogs.show_error(
                self,
                "Scan stopped",
                f"The scan stopped on an error:\n{ev.message}\n\n"
                f"The tiles taken so far are in {ev.path}; File ▸ Resume a scan file continues it.",
            )
        log.info("scan finished (%s): %s, tiles %s", ev.reason.value, ev.path, done)
        self.scanFinished.emit(ev)
        if self._quit_after_scan:
            self.close()

    def _stop_and_quit(self) -> None:
        self._quit_after_scan = True
        self.stop_scan()

    def _scan_ended(self) -> None:
        self._scan_view_timer.stop()
        self.scan_panel.set_state(None)
        self._set_scan_controls(False)
        self.live.set_polling(True)
        if self.stage_controller is not None:
            self.stage_controller.unlock()
        if self.live_button.isChecked() and self.microscope is not None:
            self.worker.submit(self.microscope.camera.start_stream, label="live stream")

    # ----------------------------------------------------------------------------------------
    # review, misc
    # ----------------------------------------------------------------------------------------
    def open_review_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open scan", self.scan_path or "", "HDF5 scan files (*.h5)"
        )
        if path:
            self.open_review(path)

    def open_review(self, path: str) -> QtWidgets.QWidget | None:
        """A review window for scan file `path` (the existing one if it is open already)."""
        from slidescan.app.gui.review import ReviewWindow

        for win in self.review_windows:
            if Path(win.path).resolve() == Path(path).resolve():
                win.raise_()
                win.activateWindow()
                return win
        try:
            win = ReviewWindow(path, rescan=self.rescan, settings=self.settings)
        except Exception as exc:
            self._show_error("Review", f"Cannot open {path}:\n{exc}")
            return None
        win.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        win.destroyed.connect(lambda *_: self._forget_review(win))
        self.review_windows.append(win)
        self.scanFinished.connect(win.scan_finished)
        if self.runner is not None and Path(self.scan_path).resolve() == Path(path).resolve():
            win.release_file()  # this window is writing it: reload when the scan ends
        win.show()
        return win

    def _forget_review(self, win: QtWidgets.QWidget) -> None:
        if win in self.review_windows:
            self.review_windows.remove(win)

    def open_log_folder(self) -> None:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        QtGui.QDesktopServices.openUrl(QtCore.QUrl.fromLocalFile(str(folder)))
        self.statusBar().showMessage(f"logs: {folder}", 8000)

    def show_shortcuts(self) -> None:
        dialogs.show_shortcuts(self, self.actions())

    def _show_error(self, title: str, text: str) -> None:
        self.last_dialog = dialogs.show_error(self, title, text)

    def _worker_failed(self, label: str, exc: BaseException) -> None:
        self._show_error("Hardware", f"{label or 'device call'} failed:\n{exc}")

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 - Qt naming
        if self._closed:
            super().closeEvent(event)
            return
        if self.runner is not None:
            # Never block here: ask without a nested event loop, quit once the scan has stopped.
            event.ignore()
            self.last_dialog = dialogs.ask(
                self,
                "Scan running",
                "A scan is running. Stop it after this tile and quit?\n"
                "(The file keeps every tile taken and can be resumed.)",
                yes=self._stop_and_quit,
            )
            return
        self.save_settings()
        for win in list(self.review_windows):
            win.close()
        self._release_microscope()
        self.worker.wait_idle(10)
        self.worker.shutdown()
        self._closed = True
        super().closeEvent(event)
