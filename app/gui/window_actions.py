"""The main window's actions (each with its shortcut and tip) and its menu bar.

Keys: arrows jog the stage (Shift: ten steps), PgUp/PgDn focus, Esc stops the stage, Space
snaps, L toggles live, A auto-contrast, D draws the scan region, T finds the tissue, Ctrl+R/P/.
start, pause and stop a scan, Ctrl+E exports a slide, F1 lists every shortcut. Actions are
window-wide (`WindowShortcut`), so they work whichever dock has the keyboard focus.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6 import QtCore, QtGui, QtWidgets

from slidescan.app.gui import dialogs
from slidescan.app.gui.hardware_connection import HardwareConnection

if TYPE_CHECKING:
    from slidescan.app.gui.main_window import MainWindow

Keys = str | QtGui.QKeySequence | QtGui.QKeySequence.StandardKey


@dataclass(frozen=True)
class WindowActions:
    jog: list[QtGui.QAction]
    stop_stage: QtGui.QAction
    snap: QtGui.QAction
    live: QtGui.QAction
    auto: QtGui.QAction
    start: QtGui.QAction
    pause: QtGui.QAction
    stop: QtGui.QAction
    resume_file: QtGui.QAction
    review: QtGui.QAction
    export_slide: QtGui.QAction
    draw: QtGui.QAction
    find_tissue: QtGui.QAction
    calibrate_deepfocus: QtGui.QAction
    show_deepfocus: QtGui.QAction
    remove_region: QtGui.QAction
    show_all: QtGui.QAction
    wizard: QtGui.QAction
    profiles: QtGui.QAction
    reconnect: QtGui.QAction
    logs: QtGui.QAction
    about: QtGui.QAction
    keys: QtGui.QAction
    quit: QtGui.QAction
    reset_layout: QtGui.QAction

    def stage_moves(self) -> list[QtGui.QAction]:
        """Actions that move the stage: off while a scan owns it."""
        return [*self.jog, self.stop_stage]

    def need_hardware(self) -> list[QtGui.QAction]:
        """Actions that do nothing without a microscope."""
        return [
            self.snap,
            self.live,
            self.start,
            self.find_tissue,
            *self.calibration(),
            *self.stage_moves(),
        ]

    def calibration(self) -> list[QtGui.QAction]:
        """Actions on the focus method's calibration (need the microscope and its objective)."""
        return [self.calibrate_deepfocus, self.show_deepfocus]


def _action(
    window: QtWidgets.QWidget,
    text: str,
    slot: Callable[[], object],
    shortcuts: Keys | Sequence[Keys] = (),
    tip: str = "",
) -> QtGui.QAction:
    act = QtGui.QAction(text, window)
    if isinstance(shortcuts, (str, QtGui.QKeySequence, QtGui.QKeySequence.StandardKey)):
        shortcuts = [shortcuts]
    seqs = [QtGui.QKeySequence(s) for s in shortcuts]
    if seqs:
        act.setShortcuts(seqs)
        act.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
    if tip:
        act.setStatusTip(tip)
    act.triggered.connect(lambda *_: slot())
    window.addAction(act)
    return act


def _jog_actions(window: MainWindow) -> list[QtGui.QAction]:
    sp = window.stage_panel
    k = QtCore.Qt.Key
    shift = QtCore.Qt.KeyboardModifier.ShiftModifier
    table: list[tuple[str, Callable[[], None], QtCore.QKeyCombination | QtCore.Qt.Key]] = [
        ("Move left", lambda: sp.jog_xy(-1, 0), k.Key_Left),
        ("Move right", lambda: sp.jog_xy(1, 0), k.Key_Right),
        ("Move up (−y)", lambda: sp.jog_xy(0, -1), k.Key_Up),
        ("Move down (+y)", lambda: sp.jog_xy(0, 1), k.Key_Down),
        ("Move left ×10", lambda: sp.jog_xy(-1, 0, 10), shift | k.Key_Left),
        ("Move right ×10", lambda: sp.jog_xy(1, 0, 10), shift | k.Key_Right),
        ("Move up ×10", lambda: sp.jog_xy(0, -1, 10), shift | k.Key_Up),
        ("Move down ×10", lambda: sp.jog_xy(0, 1, 10), shift | k.Key_Down),
        ("Focus up", lambda: sp.jog_z(1), k.Key_PageUp),
        ("Focus down", lambda: sp.jog_z(-1), k.Key_PageDown),
        ("Focus up ×10", lambda: sp.jog_z(1, 10), shift | k.Key_PageUp),
        ("Focus down ×10", lambda: sp.jog_z(-1, 10), shift | k.Key_PageDown),
    ]
    return [_action(window, text, slot, QtGui.QKeySequence(key)) for text, slot, key in table]


def build_actions(window: MainWindow) -> WindowActions:
    a = _action
    w = window
    standard = QtGui.QKeySequence.StandardKey
    return WindowActions(
        jog=_jog_actions(w),
        stop_stage=a(
            w, "Stop the stage", w.stop_stage, QtGui.QKeySequence(QtCore.Qt.Key.Key_Escape)
        ),
        snap=a(w, "&Snap", w.camera.snap, "Space", "Take one frame"),
        live=a(w, "&Live", w.camera.live_button.toggle, "L", "Live stream on/off"),
        auto=a(w, "&Auto contrast", w.live.auto_contrast, "A"),
        start=a(w, "&Start scan", w.start_scan, "Ctrl+R"),
        pause=a(w, "&Pause / resume scan", w.scan.toggle_pause, "Ctrl+P"),
        stop=a(w, "S&top scan", w.stop_scan, "Ctrl+."),
        resume_file=a(w, "Resume a scan file…", w.resume_from_file, "Ctrl+Shift+R"),
        review=a(w, "&Open scan for review…", w.open_review_dialog, standard.Open),
        export_slide=a(
            w,
            "&Export slide…",
            w.export_slide_dialog,
            "Ctrl+E",
            "The stitched slide of a scan file as SVS, OME-TIFF or OME-Zarr",
        ),
        draw=a(w, "&Draw scan region", w.scan_panel.draw_button.toggle, "D"),
        find_tissue=a(
            w,
            "Find &tissue (overview)",
            w.find_tissue,
            "T",
            "Take the slide's overview, find the tissue and plan a scan that covers it",
        ),
        remove_region=a(w, "Remove the selected tissue region", w.tissue.remove_selected),
        calibrate_deepfocus=a(
            w,
            "&Calibrate DeepFocus…",
            w.calibrate_deepfocus,
            tip="Take a z-stack of a flat textured object and fit DeepFocus's blur curve for "
            "the objective in use",
        ),
        show_deepfocus=a(
            w,
            "&Show DeepFocus calibration…",
            w.calibration.show_current,
            tip="The saved DeepFocus calibration of the objective in use, as a plot",
        ),
        show_all=a(w, "Show the whole &map", w.tile_map.show_all, "Ctrl+0"),
        wizard=a(w, "Hardware &wizard…", w.hardware.run_wizard, "Ctrl+Shift+W"),
        profiles=a(w, "&Manage profiles…", w.hardware.manage_profiles),
        reconnect=a(w, "&Reconnect", w.reconnect),
        logs=a(w, "Open &log folder", w.open_log_folder),
        about=a(w, "&About slidescan", lambda: dialogs.show_about(w)),
        keys=a(w, "&Keyboard shortcuts", w.show_shortcuts, "F1"),
        quit=a(w, "&Quit", w.close, standard.Quit),
        reset_layout=a(w, "&Reset layout", w.reset_layout),
    )


def build_menus(
    window: QtWidgets.QMainWindow,
    acts: WindowActions,
    docks: Sequence[QtWidgets.QDockWidget],
    hardware: HardwareConnection,
) -> None:
    mb = window.menuBar()

    def menu(title: str, actions: Sequence[QtGui.QAction | None]) -> QtWidgets.QMenu:
        m = mb.addMenu(title)
        for act in actions:
            if act is None:
                m.addSeparator()
            else:
                m.addAction(act)
        return m

    menu("&File", [acts.review, acts.resume_file, acts.export_slide, None, acts.quit])
    hw = mb.addMenu("&Hardware")
    profiles = QtWidgets.QMenu("Switch &profile", window)
    profiles.aboutToShow.connect(lambda: _fill_profiles_menu(profiles, hardware))
    hw.addMenu(profiles)
    for act in (acts.wizard, acts.profiles, acts.reconnect):
        hw.addAction(act)
    menu("&Camera", [acts.live, acts.snap, acts.auto])
    menu("&Stage", [*acts.jog, acts.stop_stage])
    menu(
        "S&can",
        [
            acts.start,
            acts.pause,
            acts.stop,
            None,
            acts.draw,
            acts.find_tissue,
            acts.remove_region,
            None,
            acts.show_all,
        ],
    )
    menu("F&ocus", [acts.calibrate_deepfocus, acts.show_deepfocus])
    menu("&View", [*(d.toggleViewAction() for d in docks), None, acts.reset_layout])
    menu("&Help", [acts.keys, acts.logs, acts.about])


def _fill_profiles_menu(menu: QtWidgets.QMenu, hardware: HardwareConnection) -> None:
    menu.clear()
    try:
        names = hardware.profile_names()
    except Exception as exc:  # an unreadable profile folder: said in the menu
        menu.addAction(f"(profiles unavailable: {exc})").setEnabled(False)
        return
    group = QtGui.QActionGroup(menu)
    for name in names:
        act = menu.addAction(name)
        act.setCheckable(True)
        act.setChecked(name == hardware.profile_name)
        group.addAction(act)
        act.triggered.connect(lambda _=False, n=name: hardware.connect_profile(n))
