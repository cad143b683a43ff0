"""Scan tissue from the main window: the overview under the tile map, the tissue found as
editable regions, a plan that covers exactly the regions shown, and the overview kept in the
scan file. The regions model is also checked on its own (remove, add, margin)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtCore
from test_gui_helpers import (
    BLOBS,
    BlobTruth,
    fake_microscope,
    fake_slide_microscope,
    stop_scan_before_close,
)

from slidescan.app.events import FinishReason
from slidescan.app.gui.main_window import MainWindow
from slidescan.app.gui.settings import gui_settings
from slidescan.app.gui.tissue_regions import DRAWN, FOUND, TissueRegions
from slidescan.app.plan import PolygonsRegion, point_in_polygon, rect_intersects_polygon
from slidescan.app.records import Overview
from slidescan.app.slide.tissue import detect_tissue
from slidescan.app.store import ScanReader

pytestmark = pytest.mark.gui


def blob_tissue():
    truth = BlobTruth()
    image = truth.overview(25.0, 500.0)
    x0, y0, _, _ = truth.slide_bounds_um
    return detect_tissue(Overview(image, x0 - 500.0, y0 - 500.0, 25.0))


def holder(poly, x, y) -> bool:
    return point_in_polygon(x, y, poly)


def test_regions_remove_add_and_margin():
    regions = TissueRegions(blob_tissue(), margin_um=100)
    assert len(regions) == 3 and regions.kinds == [FOUND] * 3
    # each blob centre lies in exactly one region
    for cx, cy, _ in BLOBS:
        assert sum(holder(p, cx, cy) for p in regions.polygons) == 1
    first = regions.index_at(*BLOBS[0][:2])
    regions.remove(first)
    assert len(regions) == 2
    assert regions.index_at(*BLOBS[0][:2]) is None
    # a larger margin grows the others, and the removed piece stays out
    regions.set_margin(400)
    assert regions.index_at(*BLOBS[0][:2]) is None
    assert regions.index_at(*BLOBS[1][:2]) is not None
    k = regions.add([(2000, 2000), (2100, 2000), (2100, 2150)])
    assert regions.kinds[k] == DRAWN and regions.index_at(2080, 2050) == k
    region = regions.region()
    assert isinstance(region, PolygonsRegion)
    assert [list(p) for p in region.polygons] == regions.polygons
    regions.remove(k)
    assert DRAWN not in regions.kinds
    with pytest.raises(ValueError):
        regions.add([(0, 0), (1, 1), (2, 2)])  # no area


@pytest.fixture
def window(qtbot, tmp_path):
    settings = gui_settings(tmp_path / "gui.ini")
    settings.setValue("camera/live", "false")
    win = MainWindow(settings=settings)
    qtbot.addWidget(win, before_close_func=stop_scan_before_close(qtbot))
    win.resize(1400, 900)
    win.show()
    yield win


def connect(qtbot, win, microscope):
    win.set_microscope(microscope, "fake")
    qtbot.waitUntil(lambda: win.stage_controller.position is not None, timeout=5000)
    win.worker.wait_idle(10)


def find(qtbot, win):
    win.find_tissue()
    qtbot.waitUntil(lambda: win.tissue.regions is not None and not win.tissue.busy, timeout=10000)
    win.preview.preview()  # what the panel's edit timer does a moment later


def footprints(win):
    return [
        (g.x_um - g.w_um / 2, g.y_um - g.h_um / 2, g.x_um + g.w_um / 2, g.y_um + g.h_um / 2)
        for g in win.tile_map.planned.values()
    ]


def assert_plan_is_what_is_shown(win):
    """The plan's polygons are the polygons drawn on the map, the map's tiles are the plan's,
    each tile holds some of a region, and every point of every region lies in a tile."""
    plan = win.build_plan()
    shown = win.tissue.layer.polygons()
    assert isinstance(plan.region, PolygonsRegion)
    assert [list(p) for p in plan.region.polygons] == shown
    fw, fh = win.hardware.fov_um
    tiles = plan.tiles(fw, fh)
    assert sorted((round(t.x_um, 6), round(t.y_um, 6)) for t in tiles) == sorted(
        (round(g.x_um, 6), round(g.y_um, 6)) for g in win.tile_map.planned.values()
    )
    rects = footprints(win)
    for rect in rects:
        assert any(rect_intersects_polygon(rect, poly) for poly in shown)
    for poly in shown:
        xs = [p[0] for p in poly]
        ys = [p[1] for p in poly]
        for x in np.linspace(min(xs), max(xs), 15):
            for y in np.linspace(min(ys), max(ys), 15):
                if point_in_polygon(x, y, poly):
                    assert any(r[0] <= x <= r[2] and r[1] <= y <= r[3] for r in rects), (x, y)
    return plan


def test_find_tissue_shows_the_overview_and_plans_the_regions_shown(qtbot, window, tissue_dir):
    connect(qtbot, window, fake_slide_microscope(tissue_dir))
    find(qtbot, window)
    tissue = window.tissue
    # the overview lies under the map where it was taken
    item = window.tile_map.overview_item
    assert item.isVisible()
    rect = item.mapRectToParent(item.boundingRect())
    x0, y0, x1, y1 = tissue.overview.bounds_um
    assert (rect.left(), rect.top(), rect.right(), rect.bottom()) == pytest.approx((x0, y0, x1, y1))
    assert window.scan_panel.mode_tissue.isChecked()
    assert len(tissue.layer.items) == 3
    plan = assert_plan_is_what_is_shown(window)
    assert (
        plan.region.polygons
        == PolygonsRegion(polygons=tuple(map(tuple, tissue.layer.polygons()))).polygons
    )
    assert "3 regions" in tissue.controls.summary.text()
    assert f"{len(window.tile_map.planned)} tiles" in tissue.controls.summary.text()


def view_point(win, x, y) -> QtCore.QPoint:
    """Widget coordinates of stage point (x, y) on the tile map's viewport."""
    vb = win.tile_map.viewbox
    scene = vb.mapViewToScene(QtCore.QPointF(x, y))
    return win.tile_map.mapFromScene(scene)


def double_click(qtbot, widget, pos) -> None:
    """A real double-click: QTest's sends no release after the double-click event, which
    pyqtgraph waits for."""
    left = QtCore.Qt.MouseButton.LeftButton
    qtbot.mouseDClick(widget, left, pos=pos)
    qtbot.mouseRelease(widget, left, pos=pos)


def test_edits_on_the_map_change_the_plan(qtbot, window, tissue_dir):
    connect(qtbot, window, fake_slide_microscope(tissue_dir))
    find(qtbot, window)
    tissue, tm = window.tissue, window.tile_map
    tm.viewbox.setRange(QtCore.QRectF(-600, -600, 2100, 1900), padding=0)
    qtbot.wait(50)
    # click inside the first blob: it is selected; Remove takes it out of map and plan
    cx, cy, _ = BLOBS[0]
    qtbot.mouseClick(
        tm.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=view_point(window, cx, cy)
    )
    k = tissue.layer.selected
    assert k is not None and point_in_polygon(cx, cy, tissue.layer.polygons()[k])
    assert tissue.controls.remove_button.isEnabled()
    qtbot.mouseClick(tissue.controls.remove_button, QtCore.Qt.MouseButton.LeftButton)
    window.preview.preview()
    assert len(tissue.layer.items) == 2
    assert not any(point_in_polygon(cx, cy, p) for p in tissue.layer.polygons())
    assert_plan_is_what_is_shown(window)
    # draw a polygon with the mouse: three corners, then a double-click closes it
    qtbot.mouseClick(tissue.controls.polygon_button, QtCore.Qt.MouseButton.LeftButton)
    assert tissue.layer.tool == "polygon"
    corners = [(1000.0, 700.0), (1200.0, 700.0), (1150.0, 950.0)]
    for x, y in corners:
        qtbot.mouseClick(
            tm.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=view_point(window, x, y)
        )
    double_click(qtbot, tm.viewport(), view_point(window, *corners[-1]))
    assert tissue.layer.tool == "select" and not tissue.controls.polygon_button.isChecked()
    window.preview.preview()
    assert tissue.regions.kinds.count(DRAWN) == 1
    drawn = tissue.layer.polygons()[-1]
    assert len(drawn) == 3
    assert np.allclose(drawn, corners, atol=6.0)  # within a screen pixel or two
    # and a rectangle (the rect tool's drag)
    tissue.layer.set_tool("rect")
    tissue.layer.map_drag(QtCore.QPointF(-300, 900), QtCore.QPointF(-100, 1000), finished=True)
    window.preview.preview()
    assert tissue.regions.kinds.count(DRAWN) == 2
    # the margin regrows the regions found; the drawn ones stay as drawn
    before = tissue.layer.polygons()
    tissue.controls.margin.setValue(150)
    window.preview.preview()
    after = tissue.layer.polygons()
    assert after[-2:] == before[-2:] and after[:-2] != before[:-2]
    plan = assert_plan_is_what_is_shown(window)
    assert len(plan.region.polygons) == 4


def test_a_tissue_scan_keeps_the_overview_in_its_file(qtbot, window, tmp_path, tissue_dir):
    connect(qtbot, window, fake_slide_microscope(tissue_dir))
    find(qtbot, window)
    tissue = window.tissue
    while len(tissue.regions):  # only a small drawn region: a scan of a few tiles
        tissue.layer.select(0)
        tissue.remove_selected()
    tissue.add([(0.0, 0.0), (40.0, 0.0), (40.0, 35.0), (0.0, 35.0)])
    p = window.scan_panel
    p.tissue.setChecked(False)
    p.output.setText(str(tmp_path / "tissue.h5"))
    p.method.setCurrentText("none")
    plan = window.build_plan()
    n = len(plan.tiles(*window.hardware.fov_um))
    assert 2 <= n <= 9
    with qtbot.waitSignal(window.scanFinished, timeout=60000) as done:
        window.start_scan()
    assert done.args[0].reason is FinishReason.COMPLETED, done.args[0].message
    with ScanReader(tmp_path / "tissue.h5") as r:
        assert r.n_tiles == n
        assert isinstance(r.plan.region, PolygonsRegion)
        ov = r.overview()
        assert ov is not None
        assert np.array_equal(ov.image, tissue.overview.image)
        assert (ov.x0_um, ov.y0_um, ov.pixel_size_um) == (
            tissue.overview.x0_um,
            tissue.overview.y0_um,
            tissue.overview.pixel_size_um,
        )


def test_a_pre_scan_shows_progress_and_can_be_cancelled(qtbot, window, tissue_dir):
    """On hardware (no simulator truth) the overview is a pre-scan of the profile's slide
    area, field by field, with progress; Cancel stops it and nothing changes."""
    from slidescan.hardware.profile import load_profile

    profile = load_profile("simulator").model_copy(
        update={"slide_area_um": (-2000.0, -2000.0, 2000.0, 2000.0)}
    )
    window.set_microscope(fake_microscope(tissue_dir), "fake-hw", profile)
    qtbot.waitUntil(lambda: window.stage_controller.position is not None, timeout=5000)
    seen = []
    window.tissue._progress.connect(lambda done, total: seen.append((done, total)))
    window.tissue._progress.connect(lambda done, total: window.tissue.cancel())
    window.find_tissue()
    assert window.tissue.dialog is not None and window.stage_controller.locked
    qtbot.waitUntil(lambda: not window.tissue.busy, timeout=30000)
    assert seen and seen[0][1] > 1000  # fields of the pre-scan
    assert window.tissue.regions is None and window.tissue.dialog is None
    assert window.last_dialog is None  # a cancel is no error
    assert not window.stage_controller.locked


def test_a_pre_scan_needs_the_slide_area(qtbot, window, tissue_dir):
    connect(qtbot, window, fake_microscope(tissue_dir))  # no truth, no profile
    window.find_tissue()
    assert window.tissue.regions is None and not window.tissue.busy
    assert "slide_area_um" in window.last_dialog.text()


def test_keys_on_the_map_remove_and_cancel(qtbot, window, tissue_dir):
    connect(qtbot, window, fake_slide_microscope(tissue_dir))
    find(qtbot, window)
    tissue, tm = window.tissue, window.tile_map
    tm.setFocus()
    tissue.layer.select(1)
    qtbot.keyClick(tm, QtCore.Qt.Key.Key_Delete)
    assert len(tissue.layer.items) == 2 and tissue.layer.selected is None
    # Esc while drawing a polygon drops the drawing (and is not the window's "stop stage")
    stops = []
    window.acts.stop_stage.triggered.connect(lambda *_: stops.append(1))
    tissue.layer.set_tool("polygon")
    tissue.layer.add_corner(0.0, 0.0)
    tissue.layer.add_corner(50.0, 0.0)
    qtbot.keyClick(tm, QtCore.Qt.Key.Key_Escape)
    assert tissue.layer.tool == "select" and len(tissue.layer.items) == 2 and not stops
    # Enter closes a polygon of three corners
    tissue.layer.set_tool("polygon")
    for x, y in ((2000.0, 0.0), (2100.0, 0.0), (2100.0, 90.0)):
        tissue.layer.add_corner(x, y)
    qtbot.keyClick(tm, QtCore.Qt.Key.Key_Return)
    assert len(tissue.layer.items) == 3 and tissue.regions.kinds[-1] == DRAWN


def test_a_window_closed_while_its_profile_opens_closes_the_microscope(
    qtbot, tmp_path, monkeypatch, tissue_dir
):
    """The open finishes after the close began: the microscope is closed, never left open, and
    nothing is delivered to the closed window (no error dialog, no stage polling)."""
    import threading

    from slidescan.hardware import profile as profile_module
    from slidescan.hardware.microscope import Microscope

    opened = fake_microscope(tissue_dir, size=32)
    closed = []
    monkeypatch.setattr(Microscope, "close", lambda self: closed.append(self))
    release = threading.Event()

    def slow_open(prof, objective=None):
        release.wait(10)
        return opened

    monkeypatch.setattr(profile_module, "open_microscope", slow_open)
    settings = gui_settings(tmp_path / "gui.ini")
    settings.setValue("camera/live", "false")
    win = MainWindow(settings=settings)
    qtbot.addWidget(win)
    win.connect_profile("simulator")
    threading.Timer(0.3, release.set).start()  # the open finishes while the window closes
    win.close()
    assert closed == [opened]
    assert win.hardware.microscope is None
    assert win.notifier.last_dialog is None
