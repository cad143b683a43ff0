"""GUI building blocks: live view, tile map, focus plots, stage control, worker, throttle."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
import shiboken6
from PySide6 import QtCore
from test_gui_helpers import InstantStage, tissue_frame

from slidescan.app.events import FocusDone
from slidescan.app.gui.focus_plots import FocusCurvePlot, FocusSurfacePlot, interpolate_surface
from slidescan.app.gui.live_view import LiveView, auto_levels, pixel_to_stage
from slidescan.app.gui.stage_panel import StageController, StagePanel
from slidescan.app.gui.throttle import Throttle
from slidescan.app.gui.tile_map import TileGeometry, TileMap
from slidescan.app.gui.worker import DeviceWorker
from slidescan.hardware.base import Frame, Position, SoftLimits

pytestmark = pytest.mark.gui


def test_pixel_to_stage_centre_and_axes():
    c = Position(100.0, -50.0, 3.0)
    assert pixel_to_stage(50, 40, (80, 100), c, 0.5) == (100.0, -50.0)
    x, y = pixel_to_stage(60, 40, (80, 100), c, 0.5)  # 10 px right = +5 um in x
    assert (x, y) == (105.0, -50.0)
    assert pixel_to_stage(50, 30, (80, 100, 3), c, 0.5) == (100.0, -55.0)


def test_auto_levels_ignores_outliers():
    img = np.full((512, 512), 1000, np.uint16)
    img[:256] = 2000
    img[0, 0] = 65535  # one hot pixel
    lo, hi = auto_levels(img)
    assert lo == pytest.approx(1000) and hi == pytest.approx(2000)


def test_live_view_pulls_newest_frame_and_reads_stage(qtbot, tissue_dir):
    view = LiveView(poll_ms=5)
    qtbot.addWidget(view)
    view.resize(600, 500)
    view.show()
    frames = [tissue_frame(tissue_dir, 256), tissue_frame(tissue_dir, 256)]
    calls = []

    def source():
        calls.append(1)
        return frames[-1]

    view.set_frame_source(source)
    qtbot.waitUntil(lambda: view.frame is frames[-1], timeout=2000)
    shown, polled = view.frames_shown, len(calls)
    qtbot.waitUntil(lambda: len(calls) > polled + 3, timeout=2000)
    assert view.frames_shown == shown  # the same frame is never re-rendered
    # the centre pixel is the stage position; +x to the right at 0.5 um/px
    assert view.stage_point(128, 128) == (100.0, 200.0)
    assert view.stage_point(138, 128) == (105.0, 200.0)
    with qtbot.waitSignal(view.moveRequested) as sig:
        view.moveRequested.emit(*view.stage_point(0, 0))
    assert sig.args == [36.0, 136.0]
    view.set_frame_source(None)


def test_live_view_auto_contrast_on_16_bit(qtbot):
    view = LiveView()
    qtbot.addWidget(view)
    img = np.linspace(1000, 3000, 128 * 128).reshape(128, 128).astype(np.uint16)
    view.show_frame(Frame(image=img, timestamp=0.0, exposure_ms=1.0, pixel_size_um=1.0))
    lo, hi = view.image.getLevels()
    assert 995 < lo < 1010 and 2990 < hi < 3005


def test_tile_map_thumbnails_overlay_and_click(qtbot):
    tm = TileMap()
    qtbot.addWidget(tm)
    tm.resize(500, 400)
    tm.show()
    tm.set_slide_bounds((0, 0, 3000, 2000))
    tiles = [
        TileGeometry(i, i // 3, i % 3, 100 + 180 * (i % 3), 100 + 180 * (i // 3), 200, 200)
        for i in range(9)
    ]
    tm.set_planned_tiles(tiles)
    for t in tiles[:4]:
        tm.add_tile_image(t.index, t.x_um, t.y_um, t.w_um, t.h_um, np.zeros((16, 16, 3), np.uint8))
        tm.set_tile_focus(t.index, z_um=t.index * 0.5, quality=0.9)
    tm.set_overlay("focus z")
    assert tm.thumbnail_count == 4
    img = tm.overlay.image
    assert img.shape == (3, 3)
    assert img[0, 0] == 0.0 and img[1, 0] == 1.5 and np.isnan(img[2, 2])
    assert tm.colorbar.levels() == pytest.approx((0.0, 1.5))
    # tile centres are 180 um apart with 200 um tiles; the nearest centre wins on overlap
    assert tm.tile_at(100, 100) == 0 and tm.tile_at(275, 100) == 1 and tm.tile_at(5000, 0) is None
    with pytest.raises(ValueError):
        tm.set_overlay("bogus")


def test_tile_map_region_drawing(qtbot):
    tm = TileMap()
    qtbot.addWidget(tm)
    with qtbot.waitSignal(tm.regionChanged) as sig:
        tm._drawing(QtCore.QPointF(500, 400), QtCore.QPointF(100, 100), finished=True)
    assert sig.args == pytest.approx([100, 100, 500, 400])
    assert tm.region == pytest.approx((100, 100, 500, 400))


def test_focus_curve_plot_shows_choice_and_truth(qtbot):
    plot = FocusCurvePlot()
    qtbot.addWidget(plot)
    z = np.linspace(-5, 5, 21)
    ev = FocusDone(
        index=3,
        method="zsweep",
        z_um=0.1,
        hint_z_um=-1.0,
        frames=21,
        confidence=0.9,
        ok=True,
        fallback="",
        curve_z_um=z,
        curve_values=np.exp(-(z**2)),
        true_focus_um=0.0,
    )
    plot.show_focus(ev)
    xs, ys = plot.curve.getData()
    assert len(xs) == 21 and ys.max() == pytest.approx(1.0)
    assert plot.chosen.value() == pytest.approx(0.1) and plot.truth.isVisible()
    assert "error +0.10 µm" in FocusCurvePlot.describe(ev)
    assert plot.getAxis("left").labelText == "focus metric (a.u.)"
    # a method that names its curve (the registry's curve_axis): DeepFocus's blur score
    plot.show_focus(dataclasses.replace(ev, method="deepfocus", curve_values=z**2))
    assert plot.getAxis("left").labelText.startswith("DeepFocus blur score (ln px")
    # a fallback's curve, or a method not known here: the generic name
    plot.show_focus(dataclasses.replace(ev, method="deepfocus", fallback="zsweep"))
    assert plot.getAxis("left").labelText == "focus metric (a.u.)"
    plot.show_focus(dataclasses.replace(ev, method="someone_elses"))
    assert plot.getAxis("left").labelText == "focus metric (a.u.)"


def test_learned_focus_is_drawn_as_the_distance_each_shot_read(qtbot):
    plot = FocusCurvePlot()
    qtbot.addWidget(plot)
    shots = np.array([-3.4, -1.4])
    ev = FocusDone(
        index=0,
        method="diffcnn",
        z_um=0.62,
        hint_z_um=0.6,
        frames=3,
        confidence=0.8,
        ok=True,
        fallback="",
        curve_z_um=shots,
        curve_values=np.full(2, 0.62),  # the focus z the pair predicted, per shot
        curve_kind="prediction",
        true_focus_um=0.5,
    )
    plot.show_focus(ev)
    xs, ys = plot.curve.getData()
    assert ys.tolist() == pytest.approx([4.02, 2.02])
    ex, ey = plot.extrapolation.getData()
    assert ex.tolist() == pytest.approx([-1.4, 0.62]) and ey.tolist() == pytest.approx([2.02, 0])
    assert plot.zero.isVisible()
    assert "distance to focus" in plot.getAxis("left").labelText
    # a metric curve afterwards hides the learned extras
    z = np.linspace(-2, 2, 9)
    plot.show_focus(
        dataclasses.replace(ev, curve_kind="metric", curve_z_um=z, curve_values=-(z**2))
    )
    assert not plot.zero.isVisible() and len(plot.extrapolation.getData()[0] or []) == 0


def test_focus_surface_interpolates_a_plane(qtbot):
    x, y = np.meshgrid([0.0, 100.0, 200.0], [0.0, 100.0, 200.0])
    z = 0.01 * x.ravel() - 0.02 * y.ravel() + 5
    grid = interpolate_surface(x.ravel(), y.ravel(), z, (0, 0, 200, 200), size=5)
    expected = 0.01 * np.linspace(0, 200, 5)[None, :] - 0.02 * np.linspace(0, 200, 5)[:, None] + 5
    np.testing.assert_allclose(grid, expected, atol=1e-5)
    plot = FocusSurfacePlot()
    qtbot.addWidget(plot)
    plot.set_points(x.ravel(), y.ravel(), z)  # interpolated off the GUI thread
    qtbot.waitUntil(lambda: plot.updated == 1, timeout=5000)
    assert plot.n_points == 9 and plot.image.image.shape == (64, 64)
    assert plot.colorbar.levels() == pytest.approx((z.min(), z.max()))


def test_stage_controller_clamps_to_soft_limits_off_gui_thread(qtbot):
    stage = InstantStage(SoftLimits((-100, 100), (-100, 100), (-10, 10)))
    worker = DeviceWorker()
    ctl = StageController(stage, worker, poll_ms=50)
    panel = StagePanel(ctl)
    qtbot.addWidget(panel)
    qtbot.waitUntil(lambda: ctl.position is not None, timeout=2000)
    with qtbot.waitSignal(ctl.message) as msg:
        ctl.jog(dx=500.0)
    assert "soft limit" in msg.args[0]
    qtbot.waitUntil(lambda: stage.pos["x"] == 100.0, timeout=2000)
    panel.z_step.setCurrentIndex(panel.z_step.findData(5.0))
    for _ in range(5):  # a held key: coalesced, clamped at +10
        panel.jog_z(+1)
    qtbot.waitUntil(lambda: not ctl._in_flight and not ctl._wanted, timeout=2000)
    assert stage.pos["z"] == 10.0
    assert all(-10 <= c.get("z", 0) <= 10 and -100 <= c.get("x", 0) <= 100 for c in stage.commands)
    assert all(name.startswith("slidescan-device") for name in stage.threads)
    assert panel.pos_labels["z"].text() == "10.00 µm"
    ctl.lock("scan running")
    with qtbot.waitSignal(ctl.message) as msg:
        ctl.jog(dx=-1)
    assert "busy" in msg.args[0]
    ctl.stop_polling()
    worker.shutdown()


def test_worker_delivers_errors_on_gui_thread(qtbot):
    worker = DeviceWorker()
    seen = []

    def boom():
        raise RuntimeError("port vanished")

    worker.submit(boom, on_error=lambda e: seen.append((str(e), QtCore.QThread.currentThread())))
    qtbot.waitUntil(lambda: len(seen) == 1, timeout=2000)
    assert seen[0][0] == "port vanished"
    assert seen[0][1] is QtCore.QCoreApplication.instance().thread()
    worker.shutdown()


def test_worker_drops_a_result_whose_receiver_was_deleted_while_the_call_ran(qtbot):
    """A panel closed while its stage poll runs (CI met this): nothing is delivered to it (no
    'Signal source has been deleted' on the GUI thread), a failure meant for it is still
    reported, and the worker's other callers still get their results."""
    import threading

    taken = []

    class Receiver(QtCore.QObject):
        got = QtCore.Signal(object)

        def take(self, value):
            taken.append(value)
            self.got.emit(value)

        def fail(self, exc):
            taken.append(exc)
            self.got.emit(exc)

    def boom():
        raise OSError("port vanished")

    worker = DeviceWorker()
    receiver, other, third = Receiver(), Receiver(), Receiver()
    failures = []
    worker.failed.connect(lambda label, exc: failures.append((label, str(exc))))
    release = threading.Event()
    worker.submit(lambda: release.wait(5) and 1, on_result=receiver.take)
    worker.submit(lambda: 1, on_result=lambda v: other.take(v), receiver=other)  # a lambda's
    worker.submit(boom, on_error=third.fail, label="poll")  # its own error handler is gone
    for gone in (receiver, other, third):
        shiboken6.delete(gone)  # deleted on the C++ side while the calls still run
    release.set()
    worker.submit(boom, label="jog")  # no on_error: reported by the worker
    alive = []
    worker.submit(lambda: 2, on_result=alive.append)
    qtbot.waitUntil(lambda: alive == [2], timeout=5000)
    assert taken == []
    assert failures == [("poll", "port vanished"), ("jog", "port vanished")]
    assert worker.pending == 0
    worker.shutdown()


def test_a_draining_worker_runs_every_call_answers_it_and_refuses_new_ones(qtbot):
    """What a closing window relies on: the calls submitted before run, their results are
    delivered during `drain`, and a call a result handler makes then is refused."""
    import threading

    worker = DeviceWorker()
    ran, got, refused = [], [], []
    release = threading.Event()
    worker.submit(lambda: release.wait(5) and ran.append("open") or "scope", on_result=got.append)

    def answer(value):
        got.append(value)
        refused.append(worker.submit(lambda: ran.append("late")))

    worker.submit(lambda: ran.append("close") or "closed", on_result=answer)
    threading.Timer(0.2, release.set).start()
    worker.drain()
    assert ran == ["open", "close"] and got == ["scope", "closed"]
    assert refused == [None] and worker.pending == 0


def test_throttle_coalesces(qtbot):
    calls = []
    t = Throttle(lambda: calls.append(1), interval_ms=50)
    for _ in range(20):
        t.request()
    assert len(calls) == 1  # leading edge
    qtbot.wait(120)
    assert len(calls) == 2  # one trailing call for the 19 coalesced requests


def test_gil_share_shortens_the_switch_interval_while_a_window_wants_it():
    import sys

    from slidescan.app.gui import gil_share

    before = sys.getswitchinterval()
    gil_share.favour_gui_thread()
    gil_share.favour_gui_thread()  # two windows
    assert sys.getswitchinterval() == pytest.approx(min(before, gil_share.GUI_SWITCH_INTERVAL_S))
    gil_share.release()
    assert sys.getswitchinterval() == pytest.approx(min(before, gil_share.GUI_SWITCH_INTERVAL_S))
    gil_share.release()  # the last one closed
    assert sys.getswitchinterval() == pytest.approx(before)
    gil_share.release()  # one too many: no change
    assert sys.getswitchinterval() == pytest.approx(before)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_worker_threads_and_what_they_start_yield_the_cpu_to_the_gui_thread(qtbot):
    import os
    import threading

    from slidescan.app.gui.worker import BACKGROUND_NICE

    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def job() -> tuple[int, int]:
        seen: list[int] = []
        child = threading.Thread(target=lambda: seen.append(nice()))  # like a scan's threads
        child.start()
        child.join()
        return nice(), seen[0]

    worker = DeviceWorker()
    got = []
    worker.submit(job, on_result=got.append)
    qtbot.waitUntil(lambda: bool(got), timeout=5000)
    gui = nice()
    assert got[0] == (gui + BACKGROUND_NICE, gui + BACKGROUND_NICE)
    worker.shutdown()
