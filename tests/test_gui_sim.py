"""The main window on the optical simulator (small frames): a 3 x 3 scan started from the GUI,
and the review of its file."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtCore

from slidescan.app.events import FinishReason
from slidescan.app.gui.main_window import MainWindow
from slidescan.app.gui.settings import gui_settings
from slidescan.app.gui.tools.stall import FROZEN_MS, StallMonitor
from slidescan.app.store import ScanReader
from slidescan.hardware.sim import SimConfig, build_simulator

pytestmark = pytest.mark.gui


def test_scan_on_the_simulator_from_the_gui(qtbot, tmp_path):
    settings = gui_settings(tmp_path / "gui.ini")
    settings.setValue("camera/live", "false")
    win = MainWindow(settings=settings)
    qtbot.addWidget(win)
    win.show()
    sim = build_simulator(SimConfig(seed=3, camera={"width": 96, "height": 96}))
    win.set_microscope(sim, "simulator-small")
    qtbot.waitUntil(lambda: win.stage_controller.position is not None, timeout=30000)
    qtbot.waitUntil(lambda: win.tile_map.overview_item.isVisible(), timeout=30000)
    assert win.tile_map.tissue_item.isVisible() and win.tile_map.slide_item.isVisible()
    # centre of the tissue, by the map: double-click there moves the stage
    x0, y0, x1, y1 = sim.truth.slide_bounds_um
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    win.tile_map.moveRequested.emit(cx, cy)
    qtbot.waitUntil(lambda: abs(win.stage_controller.position.x - cx) < 1, timeout=10000)
    p = win.scan_panel
    p.rows.setValue(3)
    p.cols.setValue(3)
    p.mode_grid.setChecked(True)
    out = tmp_path / "sim.h5"
    p.output.setText(str(out))
    monitor = StallMonitor(5)
    monitor.start()
    with qtbot.waitSignal(win.scanFinished, timeout=240000) as done:
        qtbot.mouseClick(p.start_button, QtCore.Qt.MouseButton.LeftButton)
    monitor.stop()
    ev = done.args[0]
    assert ev.reason is FinishReason.COMPLETED, ev.message
    assert monitor.max_stall_ms < FROZEN_MS, f"event loop stalled: {monitor.summary()}"
    with ScanReader(out) as r:
        assert r.status == "completed" and r.n_planned == 9
        cur = r.current()
        assert sorted(cur["index"]) == list(range(9))
        taken = cur[~cur["skipped"]]
        assert len(taken) >= 7  # the middle of the section is tissue
        err = np.abs(taken["z_um"] - taken["true_focus_um"])
        assert np.all(np.isfinite(err)) and err.max() < 0.41  # half the DOF of 20x/0.75
        assert r.image(int(np.flatnonzero(~r.tiles["skipped"])[0])).shape == (96, 96, 3)
        assert r.verify() == []
    assert win.tile_map.thumbnail_count == 9
    assert win.live.frame is not None and win.live.frame.image.shape == (96, 96, 3)
    review = win.open_review(str(out))
    assert review.n_tiles == 9 and review.flagged() == []
    review.select_tile(int(taken["index"][0]))
    assert review.viewer.image.shape == (96, 96, 3)
    review.close()


def test_profile_connects_and_objective_switch_reopens_it(qtbot, tmp_path):
    from slidescan.hardware.profile import load_profile, save_profile, user_profile_dir

    prof = load_profile("simulator").model_copy(deep=True)
    prof.simulator = {**(prof.simulator or {}), "camera": {"width": 64, "height": 64}}
    save_profile(prof, "gui-small-sim")
    settings = gui_settings(tmp_path / "gui.ini")
    settings.setValue("camera/live", "false")
    win = MainWindow(settings=settings)
    qtbot.addWidget(win)
    win.show()
    try:
        with qtbot.waitSignal(win.microscopeChanged, timeout=60000):
            win.connect_profile("gui-small-sim")
        assert win.microscope.optics.objective.name == "20x/0.75"  # the profile's default
        assert win.hardware.fov_um == pytest.approx((64 * 0.325, 64 * 0.325))
        assert "gui-small-sim" in win.status.profile.text()
        names = [
            win.scan_panel.objective.itemText(i) for i in range(win.scan_panel.objective.count())
        ]
        assert names == [o.name for o in prof.objectives]
        with qtbot.waitSignal(win.microscopeChanged, timeout=60000):
            win.scan_panel.objective.setCurrentText("10x/0.30")
        assert win.microscope.optics.objective.name == "10x/0.30"
        assert win.hardware.fov_um == pytest.approx((64 * 0.65, 64 * 0.65))
        assert settings.value("profile/last") == "gui-small-sim"
    finally:
        (user_profile_dir() / "gui-small-sim.toml").unlink()


def test_the_exposure_box_keeps_to_the_connected_cameras_range(qtbot, tmp_path):
    settings = gui_settings(tmp_path / "gui.ini")
    settings.setValue("camera/live", "false")
    win = MainWindow(settings=settings)
    qtbot.addWidget(win)
    box = win.camera.exposure
    assert (box.minimum(), box.maximum()) == (0.01, 10000.0)  # no camera: the default
    sim = build_simulator(SimConfig(seed=3, camera={"width": 32, "height": 32}))
    sim.camera.EXPOSURE_RANGE_MS = (0.05, 500.0)  # this camera says its own range
    win.set_microscope(sim, "simulator-small")
    qtbot.waitUntil(lambda: box.maximum() == 500.0, timeout=10000)
    assert box.minimum() == 0.05 and "0.05-500 ms" in box.toolTip()
    box.setValue(900.0)  # typed past the camera's maximum: held at it
    assert box.value() == 500.0
    qtbot.waitUntil(lambda: sim.camera.exposure_ms == 500.0, timeout=10000)
