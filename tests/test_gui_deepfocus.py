"""Focus ▸ Calibrate DeepFocus from the main window, on a small simulator with a stand-in
network (scores from the frame's true defocus, so no weights and no torch are needed): the
calibration file, its plot and the curve window; Cancel leaves nothing; a missing, damaged or
mismatched file, or a network that cannot load, is one line in a message box."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets

from slidescan.app.gui.calibration_view import SEARCH_FWHM
from slidescan.app.gui.main_window import MainWindow
from slidescan.app.gui.settings import gui_settings
from slidescan.focus.deepfocus_calibration import DeepFocusCalibration, default_path
from slidescan.hardware.base import SoftLimits
from slidescan.hardware.sim import SimConfig, build_simulator

pytestmark = pytest.mark.gui

PROFILE = "simulator-small"
PATCHES = np.linspace(-0.03, 0.03, 9)  # a fixed spread of patch scores around the plane's


class DefocusNet:
    """Stands in for `SharpnessNet`: the score of a frame is a Moffat dip in the true defocus
    of the stage where it was taken (read at the call, on the worker, right after the snap).
    `gate_at`: the call that waits for `gate` (a calibration caught in the middle)."""

    checksum = "stand-in"

    def __init__(self, scope, gate_at: int | None = None) -> None:
        self.scope = scope
        self.calls = 0
        self.gate_at = gate_at
        self.gate = threading.Event()
        self.waiting = threading.Event()

    patch_px = 32  # the test camera is 64 px

    def score_frame(
        self, image: np.ndarray, max_patches: int = 16, noise_floor: float = 0.0, draws: int = 3
    ) -> SimpleNamespace:
        self.calls += 1
        if self.calls == self.gate_at:
            self.waiting.set()
            assert self.gate.wait(20)
        p = self.scope.stage.position()
        u = p.z - self.scope.truth.true_focus_um(p.x, p.y)
        base = 2.0 - 1.2 / (1.0 + (u / 2.0) ** 2) ** 1.5
        return SimpleNamespace(scores=base + PATCHES, valid_prob=np.full(PATCHES.size, 0.9))


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    settings = gui_settings(tmp_path / "gui.ini")
    settings.setValue("camera/live", "false")
    win = MainWindow(settings=settings)
    qtbot.addWidget(win)
    win.show()
    sim = build_simulator(SimConfig(seed=3, camera={"width": 64, "height": 64}))
    win.set_microscope(sim, PROFILE)
    qtbot.waitUntil(lambda: win.stage_controller.position is not None, timeout=20000)
    win.worker.wait_idle(20)
    win.scan_panel.method.setCurrentText("deepfocus")
    yield win
    if win.calibration.view is not None:
        win.calibration.view.close()
    win.worker.wait_idle(20)


def cal_path(win):
    return default_path(PROFILE, win.hardware.objective_name)


def test_calibrate_on_the_simulator_saves_and_shows_the_curve(qtbot, window):
    win = window
    sim = win.microscope
    panel = win.scan_panel
    assert panel.calibration_row.isVisible()
    win.calibration.load_net = lambda weights: DefocusNet(sim)
    with qtbot.waitSignal(win.calibration.finished, timeout=20000) as done:
        qtbot.mouseClick(panel.calibrate_button, QtCore.Qt.MouseButton.LeftButton)
        assert win.calibration.busy and win.hardware._locked
        assert not win.acts.start.isEnabled()
    cal = done.args[0]
    assert cal is not None and len(cal.z_um) == 81
    path = cal_path(win)
    assert win.calibration.last_path == path
    assert path.is_file() and path.with_suffix(".png").is_file()
    saved = DeepFocusCalibration.load(path)
    saved.check_matches(sim.optics)
    # the stand-in's dip: FWHM 2 alpha sqrt(2^(1/beta) - 1) = 3.06 um, focus at the true one
    assert saved.fwhm_um == pytest.approx(3.06, abs=0.1)
    x, y = sim.stage.position().x, sim.stage.position().y
    assert saved.focus_z_um == pytest.approx(sim.truth.true_focus_um(x, y), abs=0.1)
    # the curve window: points with error bars, the fitted curve, focus and +/- 2 FWHM
    view = win.calibration.view
    assert view is not None and view.isVisible()
    plot = view.plot
    zs, fit = plot.curve.getData()
    assert zs.size > 100 and np.allclose(fit, saved.curve(zs))
    px, py = plot.points.getData()
    assert np.allclose(px, saved.z_um) and np.allclose(py, saved.median)
    assert plot.low.value() == pytest.approx(-SEARCH_FWHM * saved.fwhm_um)
    assert plot.high.value() == pytest.approx(SEARCH_FWHM * saved.fwhm_um)
    assert plot.focus.value() == 0.0
    text = view.summary.text()
    assert win.hardware.objective_name in text and str(path) in text and "FWHM 3." in text
    # the window is free again, Z back where the stack was centred (the true focus)
    assert not win.calibration.busy and not win.hardware._locked
    assert win.acts.start.isEnabled() and win.calibration.progress_dialog is None
    assert sim.get_z() == pytest.approx(sim.truth.true_focus_um(x, y), abs=0.1)
    # Show calibration reloads it from the file, without calibrating
    view.close()
    qtbot.mouseClick(panel.show_calibration_button, QtCore.Qt.MouseButton.LeftButton)
    assert view.isVisible() and view.path == path
    assert win.last_dialog is None


def test_cancel_leaves_no_file(qtbot, window):
    win = window
    net = DefocusNet(win.microscope, gate_at=5)
    win.calibration.load_net = lambda weights: net
    win.calibrate_deepfocus()
    assert net.waiting.wait(20)
    qtbot.waitUntil(lambda: win.calibration.progress_dialog.value() >= 3, timeout=5000)
    assert "of 81" in win.calibration.progress_dialog.labelText()
    dialog = win.calibration.progress_dialog
    cancel = dialog.findChild(QtWidgets.QPushButton)
    assert cancel.text() == "Cancel"
    with qtbot.waitSignal(win.calibration.finished, timeout=20000) as done:
        qtbot.mouseClick(cancel, QtCore.Qt.MouseButton.LeftButton)
        net.gate.set()
    assert done.args[0] is None
    assert net.calls == 5  # stopped after the plane being taken
    assert not cal_path(win).exists() and not cal_path(win).with_suffix(".png").exists()
    assert not cal_path(win).parent.exists() or not any(cal_path(win).parent.iterdir())
    assert "cancelled" in win.statusBar().currentMessage()
    assert win.last_dialog is None and win.calibration.view is None
    assert not win.calibration.busy and not win.hardware._locked
    assert win.calibration.progress_dialog is None


def _one_line_error(qtbot, win) -> str:
    qtbot.waitUntil(lambda: win.last_dialog is not None, timeout=20000)
    text = win.last_dialog.text()
    assert "\n" not in text and "Traceback" not in text
    win.last_dialog.close()
    win.notifier.last_dialog = None
    return text


def test_missing_damaged_or_mismatched_calibration_is_one_line(qtbot, window):
    win = window
    path = cal_path(win)
    win.calibration.show_current()
    text = _one_line_error(qtbot, win)
    assert "No DeepFocus calibration" in text and "Calibrate DeepFocus" in text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"format": "slidescan-deepfocus-calib', encoding="utf-8")
    qtbot.mouseClick(win.scan_panel.show_calibration_button, QtCore.Qt.MouseButton.LeftButton)
    assert "unreadable" in _one_line_error(qtbot, win)
    # a calibration made with another camera: the pixel size does not match
    z = np.linspace(-15, 15, 81)
    d = {
        "format": "slidescan-deepfocus-calibration",
        "version": 1,
        "objective": win.hardware.objective_name,
        "na": float(win.microscope.optics.na),
        "pixel_size_um": 2 * float(win.microscope.optics.pixel_size_um),
        "z_um": z.tolist(),
        "median": (2 - 1 / (1 + z**2)).tolist(),
        "spread": [0.01] * 81,
        "valid_fraction": [1.0] * 81,
        "curve": dict(z0=0, c=2, slope=0, amp=1, alpha=1, beta=1, gauss_amp=0, gauss_width=1),
        "fit_rms": 0.0,
    }
    path.write_text(json.dumps(d), encoding="utf-8")
    text = _one_line_error_after(qtbot, win, win.calibration.show_current)
    assert "does not match" in text and "pixel size" in text
    assert win.calibration.view is None


def _one_line_error_after(qtbot, win, action) -> str:
    action()
    return _one_line_error(qtbot, win)


@pytest.mark.parametrize("cause", ["no weights", "soft limits"])
def test_a_failed_calibration_is_one_line_and_the_window_stays_usable(
    qtbot, window, tmp_path, cause
):
    win = window
    sim = win.microscope
    if cause == "no weights":
        win.scan_panel.params.set_values({"weights": str(tmp_path / "missing.pt")})
        expected = "missing.pt"
    else:  # +/- 5 um around the focus: the stack needs +/- 16 um at 20x/0.75
        win.calibration.load_net = lambda weights: DefocusNet(sim)
        x0, y0, x1, y1 = sim.truth.slide_bounds_um
        focus = sim.truth.true_focus_um((x0 + x1) / 2, (y0 + y1) / 2)
        old = sim.stage.limits
        sim.stage.limits = SoftLimits(old.x, old.y, (focus - 5.0, focus + 5.0))
        expected = "soft limits"
    with qtbot.waitSignal(win.calibration.finished, timeout=60000) as done:
        win.calibrate_deepfocus()
    assert done.args[0] is None
    text = _one_line_error(qtbot, win)
    assert text.startswith("The calibration failed:") and expected in text
    assert not cal_path(win).exists()
    assert not win.calibration.busy and not win.hardware._locked
    assert win.acts.start.isEnabled() and win.scan_panel.calibrate_button.isEnabled()
    assert not win.stage_controller.locked
