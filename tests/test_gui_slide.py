"""The slide viewer: the level a zoom needs, only the chunks on screen read (counted), cached
chunks never read again, overlays, and a click on a tile opening its record in review."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtCore
from test_gui_review import scan_file

from slidescan.app.gui.review import ReviewWindow
from slidescan.app.gui.slide_chunks import (
    ChunkCache,
    ChunkKey,
    coarsest_factor,
    factor_for,
    visible_chunks,
)
from slidescan.app.gui.slide_model import ViewerSlide
from slidescan.app.gui.slide_overlays import length_text, nice_length
from slidescan.app.gui.slide_viewer import SlideViewer

pytestmark = pytest.mark.gui


# -- the pyramid's geometry ---------------------------------------------------------------------
def test_levels_and_chunks():
    shape = (9322, 9322, 3)
    assert coarsest_factor(shape, 512) == 32  # 292 px: the whole slide in one chunk
    assert factor_for(0.7, 32) == 1 and factor_for(1.0, 32) == 1
    assert factor_for(2.0, 32) == 2 and factor_for(3.9, 32) == 2 and factor_for(13.0, 32) == 8
    assert factor_for(1000.0, 32) == 32
    keys = visible_chunks((0, 0, 9322, 9322), 32, shape, 512)
    assert keys == [ChunkKey(32, 0, 0)]
    assert keys[0].level_rect(shape, 512) == (0, 0, 292, 292)
    assert keys[0].rect(shape, 512) == (0, 0, 292 * 32, 292 * 32)
    # a view inside one level-1 chunk, and one across four, nearest the centre first
    assert visible_chunks((10, 10, 500, 500), 1, shape, 512) == [ChunkKey(1, 0, 0)]
    four = visible_chunks((400, 400, 700, 900), 1, shape, 512)
    assert sorted(four) == [ChunkKey(1, r, c) for r in (0, 1) for c in (0, 1)]
    assert four[0] == ChunkKey(1, 1, 1)
    assert visible_chunks((-5000, -5000, -10, -10), 1, shape, 512) == []
    edge = ChunkKey(1, 18, 18)  # the last, partial chunk of level 1
    assert edge.level_rect(shape, 512) == (9216, 9216, 106, 106)


def test_chunk_cache_drops_the_least_recently_used():
    cache = ChunkCache(max_bytes=3 * 100)
    keys = [ChunkKey(1, 0, i) for i in range(4)]
    for k in keys[:3]:
        assert cache.put(k, np.zeros(100, np.uint8)) == []
    cache.get(keys[0])  # used: kept
    assert cache.put(keys[3], np.zeros(100, np.uint8)) == [keys[1]]
    assert keys[0] in cache and keys[1] not in cache and len(cache) == 3


def test_scale_bar_lengths():
    assert nice_length(730) == 500 and nice_length(0.31) == 0.2 and nice_length(1e4) == 1e4
    assert length_text(500) == "500 µm" and length_text(2000) == "2 mm"


# -- reads --------------------------------------------------------------------------------------
class CountingSource:
    """A huge slide that records every read (level coordinates and factor)."""

    def __init__(self, h: int = 40000, w: int = 60000) -> None:
        self.shape = (h, w, 3)
        self.calls: list[tuple[int, int, int, int, int]] = []

    def read_scaled(self, y0, x0, height, width, factor):
        self.calls.append((y0, x0, height, width, factor))
        return np.full((height, width, 3), 200, np.uint8)


def fake_slide(source, n: int = 20, tile: int = 2000, step: int = 1800) -> ViewerSlide:
    pos = np.array([[c * step, r * step] for r in range(n) for c in range(n)], float)
    k = n * n
    z = np.linspace(-1, 1, k)
    return ViewerSlide(
        source, (tile, tile), pos, np.arange(k), np.arange(k), z, z * 0.3, 0.5, 1, "fake"
    )


@pytest.fixture
def viewer(qtbot):
    v = SlideViewer()
    qtbot.addWidget(v)
    v.resize(800, 600)
    v.show()
    qtbot.waitExposed(v)
    yield v
    v.shutdown()


def settle(qtbot, v: SlideViewer) -> None:
    """Wait until the view shows all it wants (every chunk of its level read and shown)."""
    qtbot.wait(10)
    qtbot.waitUntil(lambda: v.settled, timeout=10000)
    qtbot.wait(10)


def meets(call, view, chunk=512) -> bool:
    y0, x0, h, w, f = call
    vx0, vy0, vx1, vy1 = view
    return x0 * f < vx1 and (x0 + w) * f > vx0 and y0 * f < vy1 and (y0 + h) * f > vy0


def test_the_viewer_reads_only_what_is_on_screen(qtbot, viewer):
    src = CountingSource()
    viewer.set_slide(fake_slide(src))
    settle(qtbot, viewer)
    # the whole slide (the window may still have settled its size meanwhile: read it afresh)
    src.calls.clear()
    viewer.cache.clear()
    viewer.update_view()
    settle(qtbot, viewer)
    view = viewer.visible_rect()
    f = viewer.factor
    assert f == factor_for(viewer.level0_per_screen_px(), viewer._coarsest) and f >= 64
    expected = visible_chunks(view, f, src.shape)
    assert sorted(src.calls) == sorted(k.level_rect(src.shape) + (f,) for k in expected)
    # zoom into a small area: only the chunks of the new level on screen are read
    src.calls.clear()
    viewer.view.setRange(QtCore.QRectF(20000, 10000, 1600, 1200), padding=0)
    settle(qtbot, viewer)
    view, f = viewer.visible_rect(), viewer.factor
    assert f in (1, 2)
    on_screen = visible_chunks(view, f, src.shape)
    assert src.calls and all(meets(c, view) for c in src.calls)
    assert len(src.calls) == len(on_screen)
    shown = set(viewer._items)
    assert set(on_screen) <= shown  # all of it shown at the level it needs
    # pan by a chunk and a bit: only the chunks that came into view are read
    src.calls.clear()
    before = set(on_screen)
    viewer.view.translateBy(x=600 * f)
    settle(qtbot, viewer)
    now = set(visible_chunks(viewer.visible_rect(), f, src.shape))
    assert len(src.calls) == len(now - before) > 0
    # and back: everything is cached, nothing is read
    src.calls.clear()
    viewer.view.translateBy(x=-600 * f)
    settle(qtbot, viewer)
    assert src.calls == []


def test_chunks_stand_in_while_the_level_loads(qtbot, viewer):
    src = CountingSource()
    viewer.set_slide(fake_slide(src))
    settle(qtbot, viewer)
    coarse = set(viewer._items)
    # the loader is stopped from reading: the zoomed view shows the coarse level meanwhile
    viewer.loader.set_source(None)
    viewer.view.setRange(QtCore.QRectF(20000, 10000, 1600, 1200), padding=0)
    qtbot.wait(50)
    assert viewer.missing and set(viewer._items) & coarse


def test_overlays(qtbot, viewer):
    slide = fake_slide(CountingSource(), n=5)
    viewer.set_slide(slide)
    viewer.outlines_check.setChecked(True)
    assert viewer.outline_item.isVisible() and viewer.outline_item.count == 25
    viewer.set_overlay("focus z")
    assert viewer.focus_item.isVisible() and viewer.colorbar.isVisible()
    assert viewer.focus_item.count == 25
    cells = slide.cells()
    assert np.allclose(cells[:, 2:], 1800)  # each tile fills its share: no double colour
    viewer.set_overlay("focus error")
    assert viewer.colorbar.axis.labelText.startswith("focus error")
    viewer.set_overlay("none")
    assert not viewer.focus_item.isVisible() and not viewer.colorbar.isVisible()
    blind = fake_slide(CountingSource(), n=2)
    blind.error_um[:] = np.nan  # no true focus known: no error overlay to offer
    viewer.set_slide(blind)
    assert not viewer.overlay_combo.model().item(2).isEnabled()


# -- in review ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stitched(tmp_path_factory, tissue_dir) -> Path:
    from slidescan.app.cli import main

    path = tmp_path_factory.mktemp("slide-scan") / "scan.h5"
    scan_file(tissue_dir, path, method="none", size=96)
    assert main(["stitch", str(path), "--json"]) == 0
    return path


def click_at(qtbot, v: SlideViewer, x: float, y: float) -> None:
    scene = v.view.mapViewToScene(QtCore.QPointF(x, y))
    pos = v.graphics.mapFromScene(scene)
    qtbot.mouseClick(v.graphics.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=pos)


def test_click_a_tile_on_the_slide_opens_its_record(qtbot, stitched):
    win = ReviewWindow(stitched)
    qtbot.addWidget(win)
    win.resize(1300, 850)
    win.show()
    win.show_slide()
    v = win.slide_viewer
    assert v.slide is not None and v.slide.stitched and not v.note_bar.isVisible()
    assert len(v.slide.positions) == 9
    settle(qtbot, v)
    assert v._items and v.loader.reads >= 1 and v.failures == 0
    # the chunk shown is the stitched mosaic itself, not a blank
    image = v.cache.get(next(iter(v._items)))
    assert image.std() > 5
    k = 4  # the middle tile
    x, y = v.slide.positions[k]
    h, w = v.slide.tile_shape
    index = int(v.slide.indices[k])
    with qtbot.waitSignal(v.tileClicked) as clicked:
        click_at(qtbot, v, x + w / 2, y + h / 2)
    assert clicked.args == [index]
    assert win.current_index == index
    assert win.viewer.image is not None and win.viewer.image.shape[:2] == (96, 96)
    names = [win.record_table.item(i, 0).text() for i in range(win.record_table.rowCount())]
    assert win.record_table.item(names.index("index"), 1).text() == str(index)
    assert v.selected_item.isVisible()
    assert v.selected_item.rect().topLeft() == QtCore.QPointF(x, y)
    # choosing a tile in the table outlines it on the slide too
    other = int(v.slide.indices[0])
    win.select_tile(other)
    assert v.selected_item.rect().topLeft() == QtCore.QPointF(*v.slide.positions[0])
    # re-reading the unchanged file keeps the slide's chunks: nothing is read again
    reads = v.loader.reads
    win._reopen()
    win.reload()
    settle(qtbot, v)
    assert v.loader.reads == reads and v.slide is not None
    # a scan claiming the file: the viewer lets go of it; reload shows it again
    win.release_file()
    assert v.slide is None
    win.reload()
    assert v.slide is not None
    win.close()


def test_an_unstitched_file_shows_its_stage_positions_and_offers_to_stitch(
    qtbot, tmp_path, tissue_dir
):
    path = tmp_path / "raw.h5"
    scan_file(tissue_dir, path, method="none", size=64, rows=2, cols=2)
    win = ReviewWindow(path)
    qtbot.addWidget(win)
    win.show()
    win.show_slide()
    v = win.slide_viewer
    assert v.slide is not None and not v.slide.stitched
    assert v.note_bar.isVisibleTo(win) and "Not stitched" in v.note.text()
    v.stitch_button.click()
    dlg = win.export_dialog
    assert dlg is not None and dlg.stitch_button.isVisibleTo(dlg)
    with qtbot.waitSignal(dlg.stitched, timeout=60000) as done:
        dlg.stitch_button.click()
    assert done.args[0]["generation"] == 1 and "stitched (run 1)" in dlg.stage.text()
    # the review let go of the file while it was stitched, then showed the stitched slide
    assert not win._closed and v.slide is not None and v.slide.stitched
    assert not v.note_bar.isVisibleTo(win) and not dlg.stitch_button.isVisibleTo(dlg)
    dlg.close()
    win.close()


def test_chunks_no_longer_wanted_are_never_read(qtbot):
    import threading

    from slidescan.app.gui.slide_loader import ChunkLoader

    gate = threading.Event()

    class Gated(CountingSource):
        def read_scaled(self, *args):
            gate.wait(5)
            return super().read_scaled(*args)

    src = Gated()
    loader = ChunkLoader(512)
    loader.set_source(src)
    got = []
    loader.loaded.connect(lambda key, image, gen: got.append(key))
    a, b, c, d = (ChunkKey(1, 0, i) for i in range(4))
    loader.want([a, b, c])
    qtbot.waitUntil(lambda: loader._reading == a, timeout=2000)  # a is being read
    loader.want([d])  # the view moved on: b and c are not wanted any more
    gate.set()
    qtbot.waitUntil(lambda: len(got) == 2, timeout=5000)
    assert got == [a, d] and [call[1] // 512 for call in src.calls] == [0, 3]
    loader.shutdown()


def test_a_chunk_on_its_way_to_the_viewer_is_not_read_again(qtbot):
    """Between the loader's signal and the viewer's handling of it, a chunk is in neither the
    loader nor the viewer's cache: a view change in that window must not read it twice."""
    from slidescan.app.gui.slide_loader import ChunkLoader

    src = CountingSource()
    loader = ChunkLoader(512)
    loader.set_source(src)
    got = []
    loader.loaded.connect(lambda key, image, gen: (got.append(key), loader.taken(key)))
    a = ChunkKey(1, 0, 0)
    loader.want([a])
    assert loader.wait_idle(5) and loader.reads == 1 and not got  # read, signal not handled
    loader.want([a])  # the view changed meanwhile and still wants it
    assert loader.wait_idle(5) and loader.reads == 1
    qtbot.waitUntil(lambda: got == [a], timeout=2000)  # handled: taken
    loader.want([a])  # gone from the cache later: read again
    qtbot.waitUntil(lambda: loader.reads == 2, timeout=2000)
    loader.shutdown()


def test_a_slide_without_tiles_says_so(qtbot, viewer):
    empty = ViewerSlide(
        CountingSource(0, 0), (100, 100), np.zeros((0, 2)), *(np.zeros(0),) * 4, 0.5, 0, "e"
    )
    viewer.set_slide(empty)
    assert viewer.slide is None and viewer.placeholder.isVisible()
    assert "no tiles" in viewer.placeholder.toPlainText()


def test_the_quick_levels_are_the_mosaics_own_levels(tmp_path):
    """The viewer composes its zoomed-out levels from tiles reduced as they are read, and the
    most zoomed-out from the thumbnails: the same picture as the stitched mosaic's own
    `read_scaled` (placement, flat-field, white balance), to a grey level."""
    from slidescan.app.gui.slide_model import open_viewer_slide
    from slidescan.app.gui.tools.slide_bench import make_pattern_scan
    from slidescan.app.stitch.mosaic import ScanMosaic
    from slidescan.app.store import ScanReader

    path = make_pattern_scan(tmp_path / "p.h5", n=2, size=512)
    with ScanReader(path) as reader:
        slide = open_viewer_slide(reader)
        assert slide.quick_factor == 8 and slide.stitched  # 512 px tiles: 64 px thumbnails
        mosaic = ScanMosaic(reader)
        h, w = slide.shape[:2]
        for f in (2, 4, 8, 16):
            lh, lw = h // f, w // f
            got = np.asarray(slide.source.read_scaled(0, 0, lh, lw, f), float)
            want = np.asarray(mosaic.read_scaled(0, 0, lh, lw, f), float)
            assert got.shape == want.shape == (lh, lw, 3)
            diff = np.abs(got - want)
            assert want.std() > 10 and diff.mean() < 1.0 and diff.max() <= 2, f
        slide.close()
        with pytest.raises(Exception, match="closed"):
            slide.source.read_scaled(0, 0, 8, 8, 1)
