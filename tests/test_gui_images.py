"""Images a focus method makes after the tile (TSVA fuses two shots on a worker thread), in the
GUI: the scan panel says how many wait and shows the backlog finishing after the last tile,
the tile map outlines the tiles still waiting and swaps in each made image, and review marks
a tile whose image is still to be made (offering its shots) apart from a made one.

The method is test_deferred_images.py's `DeferredMean` (two shots, their mean made later),
on the fast fake microscope."""

from __future__ import annotations

import numpy as np
import pytest
from test_deferred_images import DeferredMean
from test_gui_helpers import fake_microscope, stop_scan_before_close
from test_gui_scan import configure, connect

from slidescan.app.events import (
    BacklogProgress,
    FinishReason,
    FocusDone,
    FrameWritten,
    ImageMade,
    Progress,
)
from slidescan.app.gui.main_window import MainWindow
from slidescan.app.gui.review import COLUMNS, ReviewWindow
from slidescan.app.gui.review_records import note
from slidescan.app.gui.settings import gui_settings
from slidescan.app.gui.tile_map import TileGeometry
from slidescan.app.records import PENDING
from slidescan.app.store import ScanReader
from slidescan.focus import registry

pytestmark = pytest.mark.gui


@pytest.fixture
def deferred_mean():
    registry.register("deferredmean", DeferredMean)
    yield
    registry._REGISTRY.pop("deferredmean", None)


@pytest.fixture
def window(qtbot, tmp_path):
    settings = gui_settings(tmp_path / "gui.ini")
    settings.setValue("camera/live", "false")
    win = MainWindow(settings=settings)
    qtbot.addWidget(win, before_close_func=stop_scan_before_close(qtbot))
    win.show()
    yield win


def settle(qtbot, win) -> None:
    """Let the views' round-robin catch up with the events given."""
    qtbot.waitUntil(lambda: not win.scan_views.scheduler.is_dirty(), timeout=3000)


def focus_done(index: int, source: str = PENDING) -> FocusDone:
    return FocusDone(index, "deferredmean", 1.0, 1.0, 2, 0.9, True, "", image_source=source)


def frame(index: int, x: float, value: int) -> FrameWritten:
    thumb = np.full((8, 8, 3), value, np.uint8)
    return FrameWritten(index, 0, index, x, 0.0, 1.0, 100.0, 100.0, thumb)


def test_the_scan_views_follow_the_images_still_to_make(qtbot, window):
    views, tm, run = window.scan_views, window.tile_map, window.scan_panel.run
    tm.set_planned_tiles(TileGeometry(i, 0, i, 100.0 * i, 0.0, 100.0, 100.0) for i in range(3))
    views.scan_started(3)
    for i in range(3):
        views.on_event(focus_done(i))
        views.on_event(frame(i, 100.0 * i, 40))  # the first shot stands in
        views.on_event(Progress(i + 1, 3, 1.0, 1.0, 1.0))
    settle(qtbot, window)
    assert views.pending == {0, 1, 2} and tm.pending == {0, 1, 2}
    assert run.images_label.isVisible() and run.images_label.text().startswith(
        "making images: 3 waiting"
    )
    assert tm.pending_item.getData()[0] is not None
    # an image made: its thumbnail replaces the stand-in, its outline goes
    views.on_event(ImageMade(1, np.full((8, 8, 3), 200, np.uint8), 0.5, 2))
    settle(qtbot, window)
    assert tm.pending == {0, 2} and "2 waiting" in run.images_label.text()
    assert int(tm._thumbs[1].image.mean()) == 200 and int(tm._thumbs[0].image.mean()) == 40
    # after the last tile: the backlog finishing on the progress bar
    views.on_event(BacklogProgress(1, 2, 1.0, 1.0))
    settle(qtbot, window)
    assert run.progress.format().startswith("making images")
    assert (run.progress.value(), run.progress.maximum()) == (1, 2)
    assert "making the last 1 image" in run.images_label.text()
    # a tile captured as usual (the calibration sweep) is never pending
    views.on_event(focus_done(5, "capture"))
    assert 5 not in views.pending
    # the scan stops with a tile still waiting: the panel says so, its outline stays
    views.on_event(ImageMade(0, np.full((8, 8, 3), 200, np.uint8), 0.5, 1))
    settle(qtbot, window)
    views.scan_ended()
    assert "1 tile still without its made image" in run.images_label.text()
    assert tm.pending == views.pending == {2}


def test_a_scan_whose_images_are_made_after_the_tile(
    qtbot, window, tmp_path, tissue_dir, deferred_mean
):
    connect(qtbot, window, fake_microscope(tissue_dir))
    out = tmp_path / "made.h5"
    configure(window, out)
    plan = window.build_plan()
    focus = plan.focus.model_copy(update={"method": "deferredmean", "params": {"delay_s": 0.3}})
    plan = plan.model_copy(update={"focus": focus})
    most_waiting = []
    backlog = []

    def seen(ev) -> None:
        most_waiting.append(len(window.scan_views.pending))
        if isinstance(ev, BacklogProgress):
            backlog.append(ev)

    window.scan.relay.event.connect(seen)
    with qtbot.waitSignal(window.scanFinished, timeout=90000) as done:
        window.start_scan(plan)
    assert done.args[0].reason is FinishReason.COMPLETED, done.args[0].message
    # tiles waited for their images while the scan went on; all were made in the end
    assert max(most_waiting) >= 2 and window.scan_views.pending == set()
    assert window.tile_map.pending == set() and window.tile_map.thumbnail_count == 9
    # 9 tiles at 0.3 s an image, two queued at most: the last ones were made after the tiles
    assert backlog and backlog[-1].done == backlog[-1].total
    run = window.scan_panel.run
    assert run.progress.format().startswith("making images") and "every image made" in (
        run.images_label.text()
    )
    # the map shows the made images (the mean of the two shots), not the first shots
    with ScanReader(out) as r:
        assert r.pending() == []
        for rec_row, rec in enumerate(r.tiles):
            if not rec["superseded"]:
                index = int(rec["index"])
                shown = window.tile_map._thumbs[index].image
                assert np.array_equal(shown, r.thumbnail(rec_row)), index


@pytest.fixture
def half_made(tmp_path, deferred_mean):
    """A finished scan of 2 x 3 tiles whose tile 4's image could not be made (pending)."""
    from slidescan.app.plan import FocusSettings, ScanPlan, TissueSettings
    from slidescan.app.runner import ScanRunner
    from slidescan.hardware.sim import SimConfig, build_simulator

    class FailsOnFour(DeferredMean):
        def make_image(self, shots):
            if int(np.asarray(shots[0][1]).sum()) == self.bad_sum:
                raise RuntimeError("no memory left")
            return super().make_image(shots)

    sim = build_simulator(
        SimConfig(seed=2, camera={"width": 64, "height": 48}, optics={"fft_workers": 1})
    )
    x0, y0, x1, y1 = sim.truth.slide_bounds_um
    path = tmp_path / "half.h5"
    plan = ScanPlan.grid(
        2,
        3,
        ((x0 + x1) / 2, (y0 + y1) / 2),
        sim.field_of_view_um,
        focus=FocusSettings(method="deferredmean"),
        tissue=TissueSettings(enabled=False),
        output=str(path),
    )
    method = FailsOnFour()
    seen = {}
    real_focus = method.focus

    def focus(drive, hint):  # note tile 4's first shot, so its image fails to be made
        result = real_focus(drive, hint)
        seen.setdefault("n", 0)
        if seen["n"] == 4:
            method.bad_sum = int(np.asarray(result.deferred.shots[0].frame.image).sum())
        seen["n"] += 1
        return result

    method.bad_sum = -1
    method.focus = focus
    runner = ScanRunner(plan, sim, method=method)
    runner.start()
    assert runner.wait(120).reason is FinishReason.COMPLETED
    with ScanReader(path) as r:
        assert len(r.pending()) == 1
    return path


def test_review_marks_the_tile_whose_image_is_still_to_be_made(qtbot, half_made):
    with ScanReader(half_made) as r:
        (waiting,) = r.pending()
    win = ReviewWindow(half_made)
    qtbot.addWidget(win)
    image_col = COLUMNS.index("image")
    cells = {
        int(win.table.item(i, 0).text()): win.table.item(i, image_col).text()
        for i in range(win.table.rowCount())
    }
    assert cells[waiting] == "pending"
    assert {v for i, v in cells.items() if i != waiting} == {"made (mean)"}
    assert note(win._records[waiting]) == "image still to be made from 2 shots"
    assert win.tile_map.pending == {waiting}
    # a made tile: its image, then its two shots; not a rescan (the made image is a new
    # version of the record, not a new take)
    made = next(i for i in cells if i != waiting)
    win.select_tile(made)
    assert "rescanned" not in win.tile_title.text()
    assert win.tile_view.source.count() == 3
    assert win.tile_view.current().source == "made"
    # the waiting tile: no image to show yet, its two shots instead
    win.select_tile(waiting)
    assert "image still to be made" in win.tile_title.text()
    assert "rescanned" not in win.tile_title.text()
    choices = [win.tile_view.source.itemText(k) for k in range(win.tile_view.source.count())]
    assert len(choices) == 2 and all(c.startswith("shot ") for c in choices)
    assert win.tile_view.current().source == "shot"
    win.close()
