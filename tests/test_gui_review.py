"""Review: open finished, still-written and crashed scan files, show tiles, flag, export,
rescan into the same file."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tifffile
from test_gui_helpers import fake_microscope

from slidescan.app.events import FinishReason
from slidescan.app.gui.main_window import MainWindow
from slidescan.app.gui.review import COLUMNS, ReviewWindow, flag_reasons
from slidescan.app.gui.settings import gui_settings
from slidescan.app.plan import FocusSettings, ScanPlan, TissueSettings
from slidescan.app.runner import ScanRunner
from slidescan.app.store import RECORD_DTYPE, ScanReader

pytestmark = pytest.mark.gui


def scan_file(tissue_dir, path, method="zsweep", rows=3, cols=3, size=64):
    """A finished scan of the fake microscope (no GUI)."""
    m = fake_microscope(tissue_dir, size)
    fov = (size * 0.325, size * 0.325)
    plan = ScanPlan.grid(
        rows,
        cols,
        (100.0, 100.0),
        fov,
        0.1,
        output=str(path),
        start_z_um=0.0,
        focus=FocusSettings(method=method),
        tissue=TissueSettings(enabled=False),
    )
    runner = ScanRunner(plan, m)
    runner.start()
    assert runner.wait(60).reason is FinishReason.COMPLETED
    return m


def test_flag_reasons():
    rec = np.zeros(1, RECORD_DTYPE)[0]  # one record, as the reader gives them
    rec["ok"], rec["confidence"], rec["z_um"], rec["true_focus_um"] = True, 0.9, 1.0, 1.1
    assert flag_reasons(rec, 0.2, 0.4) == []
    rec["true_focus_um"] = 2.0
    assert flag_reasons(rec, 0.2, 0.4) == ["|error| 1.00 > 0.40 µm"]
    rec["true_focus_um"], rec["fallback"], rec["confidence"] = np.nan, b"predicted", 0.1
    assert flag_reasons(rec, 0.2, 0.4) == ["taken at the predicted z", "confidence 0.10"]
    rec["skipped"] = True
    assert flag_reasons(rec, 0.2, 0.4) == []


def test_review_shows_tiles_flags_and_exports(qtbot, tmp_path, tissue_dir):
    path = tmp_path / "nofocus.h5"
    scan_file(tissue_dir, path, method="none")  # every tile at z=0: most are out of focus
    win = ReviewWindow(path)
    qtbot.addWidget(win)
    win.show()
    assert win.n_tiles == 9 and win.table.rowCount() == 9
    assert win.tile_map.thumbnail_count == 9
    with ScanReader(path) as r:
        cur = r.current()
        err = np.abs(cur["z_um"] - cur["true_focus_um"])
    half_dof = 0.81 / 2  # 20x/0.75
    expected = sorted(int(i) for i, e in zip(cur["index"], err, strict=True) if e > half_dof)
    assert expected and win.flagged() == expected
    # a click on the map opens that tile at full resolution with its record and curve
    tile = win.tile_map.planned[expected[0]]
    with qtbot.waitSignal(win.tile_map.tileClicked):
        win.tile_map.tileClicked.emit(win.tile_map.tile_at(tile.x_um, tile.y_um))
    assert win.current_index == expected[0]
    assert win.viewer.image.shape == (64, 64, 3)
    assert "|error|" in win.tile_title.text()
    assert win.record_table.rowCount() > 10
    assert win.focus_surface.n_points == 9
    # exports
    tif = win.export_tile_to(tmp_path / "tile.tif")
    np.testing.assert_array_equal(tifffile.imread(tif), win.current_image())
    png = win.export_tile_to(tmp_path / "tile.png")
    np.testing.assert_array_equal(
        cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB), win.current_image()
    )
    csv_path = win.export_table_to(tmp_path / "tiles.csv")
    lines = csv_path.read_text().splitlines()
    assert len(lines) == 10 and lines[0].startswith("index,version") and lines[0].endswith(",flags")
    assert sum("|error|" in line for line in lines[1:]) == len(expected)
    with pytest.raises(ValueError, match="unknown image format"):
        win.export_tile_to(tmp_path / "tile.jpg")
    win.flagged_only.setChecked(True)
    hidden = sum(win.table.isRowHidden(i) for i in range(9))
    assert hidden == 9 - len(expected)


def test_rescan_selected_tiles_into_the_same_file(qtbot, tmp_path, tissue_dir):
    path = tmp_path / "rescan.h5"
    m = scan_file(tissue_dir, path, method="none")
    settings = gui_settings(tmp_path / "gui.ini")
    settings.setValue("camera/live", "false")
    main = MainWindow(settings=settings)
    qtbot.addWidget(main)
    main.show()
    main.set_microscope(m, "fake")
    qtbot.waitUntil(lambda: main.stage_controller.position is not None, timeout=5000)
    review = main.open_review(str(path))
    review.select_flagged()
    picked = review.selected_indices()
    assert picked == review.flagged() and len(picked) >= 2
    picked = picked[:2]
    review.select_indices(picked)
    with qtbot.waitSignal(main.scanFinished, timeout=60000) as done:
        review.rescan_selected()
    assert done.args[0].reason is FinishReason.COMPLETED
    qtbot.waitUntil(lambda: review.n_tiles == 9 and review.reader.n_tiles == 11, timeout=5000)
    assert int(review._records[picked[0]]["version"]) == 1  # the new version (0 is the first)
    review.select_tile(picked[0])
    assert "rescanned" in review.tile_title.text()
    review.close()  # one reader per file in this process (HDF5 2.0 SWMR refresh, see review.py)
    with ScanReader(path) as r:
        tiles = r.tiles
        assert len(tiles) == 11 and tiles["superseded"].sum() == 2
        assert sorted(tiles[tiles["superseded"]]["index"]) == picked
        assert r.verify() == []


WRITER = """
import os, sys, time, numpy as np
from slidescan.app.plan import ScanPlan, RectRegion
from slidescan.app.store import ScanWriter, TileRecord
from slidescan.app.tissue import thumbnail
path, first, gate = sys.argv[1], int(sys.argv[2]), sys.argv[3]
plan = ScanPlan(region=RectRegion(x0=0, y0=0, x1=60, y1=60), overlap=0.0, output=path)
tiles = plan.tiles(20, 20)
w = ScanWriter.create(path, plan, tiles, (32, 32, 3), np.uint8, pixel_size_um=0.625)
def put(t):
    img = np.full((32, 32, 3), 20 * (t.index + 1), np.uint8)
    w.append(TileRecord(index=t.index, row=t.row, col=t.col, x_um=t.x_um, y_um=t.y_um,
                        z_um=0.5, method="zsweep", confidence=0.9), img, thumbnail(img))
for t in tiles[:first]:
    put(t)
if gate == "crash":
    os._exit(0)  # killed: no close, the file still says "running"
open(gate + ".ready", "w").close()
while not os.path.exists(gate):
    time.sleep(0.05)
for t in tiles[first:]:
    put(t)
w.close("completed")
"""


def test_review_of_a_crashed_scan(qtbot, tmp_path):
    path = tmp_path / "crashed.h5"
    subprocess.run([sys.executable, "-c", WRITER, str(path), "3", "crash"], check=True, timeout=60)
    win = ReviewWindow(path)
    qtbot.addWidget(win)
    assert win.n_tiles == 3 and win.reader.status == "running"
    assert "3/9 tiles" in win.status_label.text()
    win.select_tile(2)
    assert int(win.current_image()[0, 0, 0]) == 60
    win.select_tile(5)  # never taken: says so, no crash
    assert win.current_index == 2


def test_review_follows_a_scan_being_written(qtbot, tmp_path):
    """Another process (say `slidescan scan`) is writing the file; review keeps up."""
    path = tmp_path / "live.h5"
    gate = tmp_path / "go"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "4", str(gate)])
    try:
        qtbot.waitUntil(lambda: (tmp_path / "go.ready").exists(), timeout=60000)
        win = ReviewWindow(path)
        qtbot.addWidget(win)
        assert win.reader.status == "running" and win.n_tiles == 4
        win.select_tile(3)
        assert int(win.current_image()[0, 0, 0]) == 80
        gate.touch()
        assert proc.wait(60) == 0
        qtbot.waitUntil(lambda: win.n_tiles == 9, timeout=10000)  # its timer re-reads the file
        assert win.reader.status == "completed" and win.tile_map.thumbnail_count == 9
        win.select_tile(8)
        assert int(win.current_image()[0, 0, 0]) == 180
    finally:
        proc.kill()


def test_table_names_per_slide_calibration_tiles(qtbot, tmp_path):
    from slidescan.app.plan import RectRegion
    from slidescan.app.store import ScanWriter, TileRecord
    from slidescan.app.tissue import thumbnail

    path = tmp_path / "cal.h5"
    plan = ScanPlan(region=RectRegion(x0=0, y0=0, x1=40, y1=20), overlap=0.0, output=str(path))
    tiles = plan.tiles(20, 20)
    w = ScanWriter.create(path, plan, tiles, (32, 32, 3), np.uint8, pixel_size_um=0.625)
    for t, calibration, frames in zip(tiles, [True, False], [15, 3], strict=True):
        img = np.full((32, 32, 3), 90, np.uint8)
        rec = TileRecord(
            index=t.index,
            row=t.row,
            col=t.col,
            x_um=t.x_um,
            y_um=t.y_um,
            z_um=0.5,
            method="diffcnn",
            calibration=calibration,
            confidence=0.9,
            frames=frames,
        )
        w.append(rec, img, thumbnail(img))
    w.close("completed")
    win = ReviewWindow(path)
    qtbot.addWidget(win)
    flags = {
        int(win.table.item(i, 0).text()): win.table.item(i, COLUMNS.index("flags")).text()
        for i in range(win.table.rowCount())
    }
    assert flags == {0: "per-slide calibration", 1: ""}
    win.close()


def test_a_made_image_shows_with_its_raw_shots_and_exports_what_is_shown(qtbot, tmp_path):
    from slidescan.app.plan import RectRegion
    from slidescan.app.store import ScanWriter, TileRecord
    from slidescan.app.tissue import thumbnail

    path = tmp_path / "made.h5"
    plan = ScanPlan(region=RectRegion(x0=0, y0=0, x1=40, y1=20), overlap=0.0, output=str(path))
    tiles = plan.tiles(20, 20)
    w = ScanWriter.create(path, plan, tiles, (32, 32, 3), np.uint8, pixel_size_um=0.625)
    rng = np.random.default_rng(1)
    shot1 = rng.integers(0, 200, (32, 32, 3), dtype=np.uint8)
    shot2 = rng.integers(0, 200, (32, 32, 3), dtype=np.uint8)
    made = ((shot1.astype(np.uint16) + shot2) // 2).astype(np.uint8)
    t0, t1 = tiles
    common = {"method": "meanoftwo", "confidence": 0.9, "z_um": float("nan")}
    w.append(
        TileRecord(
            index=t0.index,
            row=t0.row,
            col=t0.col,
            x_um=t0.x_um,
            y_um=t0.y_um,
            image_source="made",
            made_kind="mean",
            **common,
        ),
        made,
        thumbnail(made),
        shots=[(1.25, shot1), (3.25, shot2)],
    )
    captured = np.full((32, 32, 3), 77, np.uint8)
    w.append(
        TileRecord(index=t1.index, row=t1.row, col=t1.col, x_um=t1.x_um, y_um=t1.y_um, **common),
        captured,
        thumbnail(captured),
    )
    w.close("completed")

    win = ReviewWindow(path)
    qtbot.addWidget(win)
    win.show()
    win.select_tile(0)
    view = win.tile_view
    labels = [view.source.itemText(i) for i in range(view.source.count())]
    assert view.source.isVisible()
    assert labels == ["made image (mean)", "shot 1 of 2: z 1.25 µm", "shot 2 of 2: z 3.25 µm"]
    np.testing.assert_array_equal(win.viewer.image, made)
    np.testing.assert_array_equal(win.current_image(), made)
    view.select(2)  # the second raw shot
    np.testing.assert_array_equal(win.viewer.image, shot2)
    tif = win.export_tile_to(tmp_path / "shot2.tif")
    np.testing.assert_array_equal(tifffile.imread(tif), shot2)
    with tifffile.TiffFile(tif) as t:
        meta = json.loads(t.pages[0].description)
    assert meta["image_shown"] == "shot" and meta["shot_index"] == 1
    assert meta["shot_z_um"] == pytest.approx(3.25)
    view.select(0)
    np.testing.assert_array_equal(tifffile.imread(win.export_tile_to(tmp_path / "m.tif")), made)
    # a captured tile has nothing to choose
    win.select_tile(1)
    assert not view.source.isVisible() and view.source.count() == 1
    np.testing.assert_array_equal(win.current_image(), captured)
    win.close()


def test_record_numbers_read_as_a_person_reads_them():
    from slidescan.app.gui.review import number_text

    # a stage position to 0.1 um, never as 2.295e+04; small values to four decimals
    assert number_text(22949.25) in ("22949.2", "22949.3") and number_text(7809.0) == "7809"
    assert number_text(0.1985) == "0.1985" and number_text(-0.33) == "-0.33"
    assert number_text(1.7e9 + 0.5) == "1700000000.500" and number_text(2e-5) == "2e-05"
    assert number_text(float("nan")) == "nan" and number_text(0.0) == "0"
