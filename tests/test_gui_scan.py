"""Scanning from the main window: a full scan, pause/resume, a device error mid-scan, and the
event loop staying responsive while the runner works.

These use a fast fake microscope (instant stage, a real tissue image blurred by defocus, 64 px
frames) so the whole file runs in seconds; test_gui_sim.py repeats the essentials on the
optical simulator.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_gui_helpers import fake_microscope, stop_scan_before_close

from slidescan.app.events import FinishReason, RunnerState
from slidescan.app.gui.main_window import MainWindow
from slidescan.app.gui.settings import gui_settings
from slidescan.app.gui.tools.stall import FROZEN_MS, StallMonitor
from slidescan.app.runner import ScanRunner
from slidescan.app.store import ScanReader
from slidescan.hardware.errors import DeviceTimeout

pytestmark = pytest.mark.gui


@pytest.fixture
def window(qtbot, tmp_path):
    settings = gui_settings(tmp_path / "gui.ini")
    settings.setValue("camera/live", "false")
    win = MainWindow(settings=settings)
    qtbot.addWidget(win, before_close_func=stop_scan_before_close(qtbot))
    win.show()
    yield win


def connect(qtbot, win, microscope, name="fake"):
    win.set_microscope(microscope, name)
    qtbot.waitUntil(lambda: win.stage_controller.position is not None, timeout=5000)


def configure(win, path, rows=3, cols=3):
    p = win.scan_panel
    p.rows.setValue(rows)
    p.cols.setValue(cols)
    p.mode_grid.setChecked(True)
    p.tissue.setChecked(False)
    p.output.setText(str(path))


def test_three_by_three_scan_from_the_gui(qtbot, window, tmp_path, tissue_dir):
    m = fake_microscope(tissue_dir)
    connect(qtbot, window, m)
    out = tmp_path / "scan.h5"
    configure(window, out)
    monitor = StallMonitor(period_ms=5)
    monitor.start()
    with qtbot.waitSignal(window.scanFinished, timeout=60000) as done:
        qtbot.mouseClick(window.scan_panel.start_button, qtbot_button())
    monitor.stop()
    ev = done.args[0]
    assert ev.reason is FinishReason.COMPLETED, ev.message
    # The window never looks frozen: no wall-clock gap between event-loop turns (the GUI's own
    # work, or waiting for the GIL or a CPU) reaches FROZEN_MS; the message has both figures.
    assert monitor.max_stall_ms < FROZEN_MS, f"event loop stalled: {monitor.summary()}"
    with ScanReader(out) as r:
        assert r.status == "completed"
        assert r.n_tiles == 9 and r.n_planned == 9
        cur = r.current()
        assert sorted(cur["index"]) == list(range(9))
        assert r.verify() == []
        # a 3 x 3 grid around where the stage stood, one field apart minus the overlap
        fw = r.fov_um[0]
        xs = np.unique(np.round(cur["x_um"], 3))
        assert len(xs) == 3 and np.allclose(np.diff(xs), fw * 0.9)
        # every tile in focus: the fake's focal plane is known
        truth = 1.0 + 0.002 * cur["x_um"] - 0.001 * cur["y_um"]
        assert np.max(np.abs(cur["z_um"] - truth)) < 0.3
        assert r.image(0).shape == (64, 64, 3)
    # what the person saw
    assert window.tile_map.thumbnail_count == 9
    assert window.focus_surface.n_points == 9
    assert window.scan_panel.progress.value() == 9
    assert window.focus_curve.last_event is not None
    assert window.scan_panel.start_button.isEnabled()
    assert window.stage_controller is not None and not window.stage_controller.locked
    # settings persist: the next window restores the scan form
    window.save_settings()
    again = MainWindow(settings=gui_settings(tmp_path / "gui.ini"))
    qtbot.addWidget(again)
    assert again.scan_panel.rows.value() == 3 and again.scan_panel.output.text() == str(out)
    assert not again.scan_panel.tissue.isChecked()


def qtbot_button():
    from PySide6 import QtCore

    return QtCore.Qt.MouseButton.LeftButton


def test_pause_and_resume(qtbot, window, tmp_path, tissue_dir):
    m = fake_microscope(tissue_dir)
    connect(qtbot, window, m)
    out = tmp_path / "paused.h5"
    configure(window, out)
    written = []

    def pause_once(ev):
        from slidescan.app.events import FrameWritten

        if isinstance(ev, FrameWritten):
            written.append(ev.index)
            if len(written) == 1:
                window.pause_scan()

    window.scan.relay.event.connect(pause_once)
    window.start_scan()
    qtbot.waitUntil(lambda: window.scan_panel.resume_button.isEnabled(), timeout=20000)
    assert window.runner.state is RunnerState.PAUSED
    assert not window.scan_panel.pause_button.isEnabled()
    assert window.last_dialog is None  # a pause the user asked for is no error
    qtbot.wait(200)  # the writer may still finish the tile taken before the pause
    n_paused = len(written)
    qtbot.wait(400)
    assert len(written) == n_paused < 9  # nothing is taken while paused
    with qtbot.waitSignal(window.scanFinished, timeout=60000) as done:
        qtbot.mouseClick(window.scan_panel.resume_button, qtbot_button())
    assert done.args[0].reason is FinishReason.COMPLETED
    with ScanReader(out) as r:
        assert r.n_tiles == 9 and sorted(r.current()["index"]) == list(range(9))


def test_device_error_shows_a_dialog_and_leaves_a_resumable_file(
    qtbot, window, tmp_path, tissue_dir
):
    m = fake_microscope(tissue_dir)
    connect(qtbot, window, m)
    out = tmp_path / "failed.h5"
    configure(window, out)
    stage = m.stage
    original = stage._move_native
    xy_moves = []

    def flaky(targets):  # the fifth XY move finds the controller gone
        if "x" in targets or "y" in targets:
            xy_moves.append(targets)
            if len(xy_moves) == 5:
                raise DeviceTimeout("stage did not answer within 1.0 s")
        return original(targets)

    stage._move_native = flaky
    window.start_scan()
    qtbot.waitUntil(
        lambda: window.last_dialog is not None and window.last_dialog.isVisible(), timeout=20000
    )
    box = window.last_dialog
    assert "did not answer" in box.text() and "Scan paused" in box.windowTitle()
    assert window.runner.state is RunnerState.PAUSED
    assert window.isVisible()  # no crash, no frozen window
    stop = next(b for b in box.buttons() if b.text() == "Stop the scan")
    with qtbot.waitSignal(window.scanFinished, timeout=30000) as done:
        stop.click()
    assert done.args[0].reason is FinishReason.CANCELLED
    with ScanReader(out) as r:
        assert r.status == "cancelled"
        taken = r.n_tiles
        assert 0 < taken < 9 and r.verify() == []
    # the file resumes: the rest of the tiles, each exactly once
    stage._move_native = original
    runner = ScanRunner.for_resume(out, m)
    runner.start()
    assert runner.wait(60).reason is FinishReason.COMPLETED
    with ScanReader(out) as r:
        assert r.status == "completed" and r.n_tiles == 9
        assert sorted(r.tiles["index"]) == list(range(9))


def test_start_errors_are_dialogs(qtbot, window, tmp_path, tissue_dir):
    m = fake_microscope(tissue_dir)
    connect(qtbot, window, m)
    out = tmp_path / "exists.h5"
    out.write_bytes(b"not a scan")
    configure(window, out)
    window.start_scan()
    qtbot.waitUntil(lambda: window.last_dialog is not None, timeout=10000)
    assert "exists" in window.last_dialog.text()
    assert window.runner is None and window.scan_panel.start_button.isEnabled()


def test_keyboard_jogs_and_double_click_moves_within_limits(qtbot, window, tissue_dir):
    from PySide6 import QtCore

    m = fake_microscope(tissue_dir)
    connect(qtbot, window, m)
    window.activateWindow()
    window.live.graphics.setFocus()
    sp = window.stage_panel
    sp.xy_step.setCurrentIndex(sp.xy_step.findData(100.0))
    sp.z_step.setCurrentIndex(sp.z_step.findData(1.0))
    x0, z0 = m.stage.position().x, m.stage.position().z
    qtbot.keyClick(window.live.graphics, QtCore.Qt.Key.Key_Right)
    qtbot.waitUntil(lambda: abs(m.stage.position().x - (x0 + 100)) < 1e-6, timeout=5000)
    qtbot.keyClick(window.live.graphics, QtCore.Qt.Key.Key_PageUp)
    qtbot.waitUntil(lambda: abs(m.stage.position().z - (z0 + 1)) < 1e-6, timeout=5000)
    # Shift+PgUp is ten steps; the z soft limit (+30) stops it
    for _ in range(4):
        qtbot.keyClick(
            window.live.graphics, QtCore.Qt.Key.Key_PageUp, QtCore.Qt.KeyboardModifier.ShiftModifier
        )
    qtbot.waitUntil(lambda: m.stage.position().z == 30.0, timeout=5000)
    assert all(c.get("z", 0) <= 30.0 for c in m.stage.commands)
    # a double-click on the map (or the live image) centres the stage there
    window.tile_map.moveRequested.emit(1234.0, -567.0)
    qtbot.waitUntil(
        lambda: m.stage.position().x == 1234.0 and m.stage.position().y == -567.0, timeout=5000
    )
    window.tile_map.moveRequested.emit(99999.0, 0.0)  # beyond the soft limit: stops at 5000
    qtbot.waitUntil(lambda: m.stage.position().x == 5000.0, timeout=5000)


def test_a_focus_method_that_cannot_load_is_a_dialog_before_the_scan(
    qtbot, window, tmp_path, tissue_dir
):
    m = fake_microscope(tissue_dir)
    connect(qtbot, window, m)
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"this is not a weight file")
    configure(window, tmp_path / "scan.h5")
    plan = window.build_plan()
    plan = plan.model_copy(
        update={
            "focus": plan.focus.model_copy(
                update={"method": "diffcnn", "params": {"weights": str(bad)}}
            )
        }
    )
    window.start_scan(plan)
    assert window.last_dialog is not None
    assert "diffcnn could not be loaded" in window.last_dialog.text()
    assert "corrupt.pt" in window.last_dialog.text()
    assert window.runner is None and window.scan_panel.start_button.isEnabled()
    assert not (tmp_path / "scan.h5").exists()
