"""The camera's calibrated mounting (rotation, mirror) in the views: the live view's
click-to-move and stage readout, the tile map's field of view, tile footprints and
thumbnails, in the main window and in review."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PySide6 import QtCore
from test_gui_helpers import fake_microscope, tissue_frame

from slidescan.app.camera_calibration import decompose
from slidescan.app.gui.camera_mount import CameraMount
from slidescan.app.gui.live_view import LiveView
from slidescan.app.gui.main_window import MainWindow
from slidescan.app.gui.settings import gui_settings
from slidescan.app.gui.tile_map import TileMap
from slidescan.hardware.base import Position
from slidescan.hardware.profile import CameraMountConfig, load_profile
from slidescan.hardware.sim.mount import mount_matrix

pytestmark = pytest.mark.gui


@pytest.mark.parametrize(
    ("rotation", "flipped"), [(0.0, False), (3.0, False), (-2.0, True), (90.0, True)]
)
def test_the_mount_is_the_calibrations_convention(rotation, flipped):
    mount = CameraMount(rotation, flipped)
    m = mount.matrix()
    # the simulator mounts its camera by the same matrix, and the calibration reads it back
    assert np.allclose(m, mount_matrix(rotation, flipped, False))
    p, theta, flip, skew = decompose(0.5 * m)
    assert p == pytest.approx(0.5) and theta == pytest.approx(rotation) and flip == flipped
    x, y = mount.pixel_to_stage(60, 40, (80, 100), (100.0, -50.0), 0.5)
    assert (x, y) == pytest.approx((100.0 + 5.0 * m[0, 0], -50.0 + 5.0 * m[1, 0]))


def test_the_mount_of_a_profile():
    assert CameraMount.of(None).square
    assert CameraMount.of({"camera_mount": {"rotation_deg": 2.5, "flipped": True}}) == (
        CameraMount(2.5, True)
    )
    prof = load_profile("simulator")
    assert CameraMount.of(prof).square
    turned = prof.model_copy(update={"camera_mount": CameraMountConfig(rotation_deg=-1.5)})
    assert CameraMount.of(turned) == CameraMount(-1.5, False)


def test_live_view_click_to_move_follows_a_mirrored_turned_camera(qtbot, tissue_dir):
    view = LiveView()
    qtbot.addWidget(view)
    frame = tissue_frame(tissue_dir, 256, Position(100.0, 200.0, 0.0))  # 0.5 um/px
    view.show_frame(frame)
    assert view.stage_point(138, 128) == (105.0, 200.0)  # square: 10 px right is +x
    view.set_mount(CameraMount(0.0, True))
    assert view.stage_point(138, 128) == pytest.approx((95.0, 200.0))  # mirrored: -x
    assert view.stage_point(128, 138) == pytest.approx((100.0, 205.0))
    view.set_mount(CameraMount(90.0, False))
    assert view.stage_point(138, 128) == pytest.approx((100.0, 205.0))  # turned: +y
    # a real double-click asks for the stage point under the mouse
    view.resize(500, 500)
    view.show()
    qtbot.waitExposed(view)
    scene = view.view.mapViewToScene(QtCore.QPointF(138, 128))
    pos = view.graphics.mapFromScene(scene)
    with qtbot.waitSignal(view.moveRequested) as moved:
        qtbot.mouseDClick(view.graphics.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=pos)
        qtbot.mouseRelease(view.graphics.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=pos)
    assert moved.args[0] == pytest.approx(100.0, abs=0.6)
    assert moved.args[1] == pytest.approx(205.0, abs=0.6)


def corners(item) -> np.ndarray:
    return np.array([(p.x(), p.y()) for p in item.polygon()])


def test_tile_map_draws_the_field_and_thumbnails_as_the_camera_sees(qtbot):
    tm = TileMap()
    qtbot.addWidget(tm)
    tm.set_fov(100.0, 50.0, 40.0, 20.0)
    assert np.allclose(corners(tm.fov_item), [(80, 40), (120, 40), (120, 60), (80, 60)])
    tm.set_mount(CameraMount(90.0, False))
    tm.set_fov(100.0, 50.0, 40.0, 20.0)
    assert np.allclose(corners(tm.fov_item), [(110, 30), (110, 70), (90, 70), (90, 30)])
    # a mirrored camera's thumbnail is mirrored back: its first column lies at +x
    tm.set_mount(CameraMount(0.0, True))
    thumb = np.zeros((8, 16, 3), np.uint8)
    tm.add_tile_image(0, 100.0, 50.0, 40.0, 20.0, thumb)
    item = tm._thumbs[0]
    first = item.mapToParent(QtCore.QPointF(0, 0))
    last = item.mapToParent(QtCore.QPointF(16, 8))
    assert (first.x(), first.y()) == pytest.approx((120.0, 40.0))
    assert (last.x(), last.y()) == pytest.approx((80.0, 60.0))
    # a small turn: the footprint of a tile turns about its centre
    tm.set_mount(CameraMount(2.0, False))
    tm.set_current_tile(0.0, 0.0, 100.0, 100.0)
    c = corners(tm.current_item)
    t = math.radians(2.0)
    assert c[1] == pytest.approx(
        (50 * math.cos(t) + 50 * math.sin(t), 50 * math.sin(t) - 50 * math.cos(t))
    )


def test_the_main_window_takes_the_mount_from_the_profile(qtbot, tmp_path, tissue_dir):
    settings = gui_settings(tmp_path / "gui.ini")
    settings.setValue("camera/live", "false")
    win = MainWindow(settings=settings)
    qtbot.addWidget(win)
    prof = load_profile("simulator").model_copy(
        update={"camera_mount": CameraMountConfig(rotation_deg=1.5, flipped=True)}
    )
    win.set_microscope(fake_microscope(tissue_dir), "fake", prof)
    qtbot.waitUntil(lambda: win.stage_controller.position is not None, timeout=5000)
    assert win.live.mount == CameraMount(1.5, True)
    assert win.tile_map.mount == CameraMount(1.5, True)
    qtbot.waitUntil(lambda: win.tile_map.fov_item.isVisible(), timeout=5000)
    c = corners(win.tile_map.fov_item)
    assert not np.isclose(c[0, 1], c[1, 1])  # the field's top edge is turned
    win.worker.wait_idle(10)


def test_review_draws_the_tiles_as_the_scans_camera_sat(qtbot, tmp_path):
    from slidescan.app.gui.review import ReviewWindow
    from slidescan.app.plan import RectRegion, ScanPlan
    from slidescan.app.records import TileRecord
    from slidescan.app.store import ScanWriter

    path = tmp_path / "mirrored.h5"
    plan = ScanPlan(region=RectRegion(x0=0, y0=0, x1=16, y1=8), output=str(path), overlap=0.0)
    tiles = plan.tiles(16.0, 8.0)
    profile = {"name": "p", "camera_mount": {"rotation_deg": 0.0, "flipped": True}}
    w = ScanWriter.create(
        path, plan, tiles, (8, 16, 3), np.uint8, pixel_size_um=1.0, profile=profile
    )
    w.append(TileRecord(0, 0, 0, tiles[0].x_um, tiles[0].y_um, 0.0), np.zeros((8, 16, 3), np.uint8))
    w.close("completed")
    win = ReviewWindow(path)
    qtbot.addWidget(win)
    assert win.tile_map.mount == CameraMount(0.0, True)
    item = win.tile_map._thumbs[0]
    first = item.mapToParent(QtCore.QPointF(0, 0))
    assert first.x() == pytest.approx(tiles[0].x_um + 8.0)  # its first column at +x: mirrored back
    win.close()
