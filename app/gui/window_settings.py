"""What the main window remembers between runs (QSettings, `settings.gui_settings`): geometry
and dock layout, the scan form, the map overlay, the jog steps, whether live view was on, and
the last profile and objective."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6 import QtCore

from slidescan.app.gui.settings import read_json, write_json
from slidescan.app.gui.tile_map import OVERLAYS

if TYPE_CHECKING:
    from slidescan.app.gui.main_window import MainWindow

#: QSettings layout version: bump when docks change so an old layout is not restored.
LAYOUT_VERSION = 1
DEFAULT_SIZE = (1500, 950)


def restore_window(window: MainWindow, s: QtCore.QSettings) -> QtCore.QByteArray:
    """Apply the saved settings; returns the default dock layout (for Reset layout)."""
    default_state = window.saveState(LAYOUT_VERSION)
    geometry = s.value("window/geometry")
    if geometry is not None:
        window.restoreGeometry(geometry)
    else:
        window.resize(*DEFAULT_SIZE)
    state = s.value("window/state")
    if state is not None:
        window.restoreState(state, LAYOUT_VERSION)
    scan = read_json(s, "scan/settings")
    if isinstance(scan, dict):
        window.scan_panel.apply_settings(scan)
        window.hardware.preferred_objective = str(scan.get("objective", ""))
    overlay = str(s.value("map/overlay", "none"))
    if overlay in OVERLAYS:
        window.map_panel.overlay_combo.setCurrentText(overlay)
    for key, combo in (
        ("stage/xy_step", window.stage_panel.xy_step),
        ("stage/z_step", window.stage_panel.z_step),
    ):
        i = combo.findText(str(s.value(key, "")))
        if i >= 0:
            combo.setCurrentIndex(i)
    window.camera.live_wanted = str(s.value("camera/live", "true")).lower() == "true"
    return default_state


def save_window(window: MainWindow, s: QtCore.QSettings) -> None:
    s.setValue("window/geometry", window.saveGeometry())
    s.setValue("window/state", window.saveState(LAYOUT_VERSION))
    write_json(s, "scan/settings", window.scan_panel.settings())
    s.setValue("map/overlay", window.map_panel.overlay_combo.currentText())
    s.setValue("stage/xy_step", window.stage_panel.xy_step.currentText())
    s.setValue("stage/z_step", window.stage_panel.z_step.currentText())
    s.setValue("camera/live", "true" if window.camera.live_wanted else "false")
    if window.hardware.profile_name:
        s.setValue("profile/last", window.hardware.profile_name)
    s.sync()
