"""File ▸ Export slide: the dialog stitches an unstitched file first (with the review window
letting go of it and reading it again), writes a pyramid that OpenSlide and tifffile read,
shows progress, cancels leaving nothing behind, and says what is wrong in one line."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile
from PySide6 import QtCore
from test_gui_review import scan_file

from slidescan.app.gui.export_dialog import ExportSlideDialog, output_for, with_suffix
from slidescan.app.gui.main_window import MainWindow
from slidescan.app.gui.settings import gui_settings
from slidescan.app.store import ScanReader

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def unstitched(tmp_path_factory, tissue_dir) -> Path:
    """A finished 3 x 3 scan of the fake microscope, never stitched (made once)."""
    path = tmp_path_factory.mktemp("export-scan") / "scan.h5"
    scan_file(tissue_dir, path, method="none", size=96)
    return path


@pytest.fixture
def scan(unstitched, tmp_path) -> Path:
    path = tmp_path / "scan.h5"
    path.write_bytes(unstitched.read_bytes())
    return path


@pytest.fixture
def window(qtbot, tmp_path):
    settings = gui_settings(tmp_path / "gui.ini")
    settings.setValue("camera/live", "false")
    win = MainWindow(settings=settings)
    qtbot.addWidget(win)
    yield win
    win.worker.wait_idle(10)


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_names_follow_the_format():
    assert output_for("/d/scan.h5", "svs") == "/d/scan.svs"
    assert output_for("/d/scan.h5", "ome-zarr") == "/d/scan.ome.zarr"
    assert with_suffix("/d/slide.svs", "ome-tiff") == "/d/slide.ome.tif"
    assert with_suffix("/d/slide.ome.tif", "ome-zarr") == "/d/slide.ome.zarr"
    assert with_suffix("/d/slide", "svs") == "/d/slide.svs"


def test_export_stitches_first_and_writes_a_slide_openslide_reads(qtbot, window, scan):
    review = window.open_review(str(scan))
    qtbot.addWidget(review)
    dlg = window.export_slide_dialog(str(scan))
    assert isinstance(dlg, ExportSlideDialog)
    assert dlg.scan_state.text() == "not stitched yet"
    assert dlg.stitch_first.isVisibleTo(dlg) and dlg.stitch_first.isChecked()
    assert dlg.output.text() == str(scan.with_suffix(".svs"))
    released = []
    review_release = review.release_file
    review.release_file = lambda *why: (released.append(True), review_release(*why))[1]
    stages = []
    dlg.job.progressed.connect(lambda stage, done, total, eta: stages.append((stage, total)))
    with qtbot.waitSignal(dlg.exported, timeout=60000) as done:
        qtbot.mouseClick(dlg.export_button, QtCore.Qt.MouseButton.LeftButton)
        assert dlg.running and not dlg.export_button.isEnabled()
    result = done.args[0]
    assert released == [True]  # the review let go of the file while it was stitched
    assert {s for s, _ in stages} >= {"register", "export"}
    assert dlg.progress.value() == dlg.progress.maximum()
    assert "written scan.svs" in dlg.stage.text()
    assert not dlg.running and dlg.export_button.isEnabled()
    with ScanReader(scan) as r:
        assert r.stitch_generation == 1
    assert not review._closed and review.reader.stitch_generation == 1  # read again
    slide = openslide.OpenSlide(result.path)
    try:
        assert slide.properties["openslide.vendor"] == "aperio"
        w, h = slide.dimensions
        assert w > 2 * 96 and h > 2 * 96
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.325)
        region = np.asarray(slide.read_region((0, 0), 0, (64, 64)))
        assert region.shape == (64, 64, 4) and region[..., :3].std() > 5  # tissue, not blank
    finally:
        slide.close()
    assert leftovers(scan.parent, {"scan.h5", "scan.svs", "gui.ini"}) == []


def test_export_as_ome_tiff_that_tifffile_reads(qtbot, scan):
    from slidescan.app.cli import main

    assert main(["stitch", str(scan), "--json"]) == 0
    dlg = ExportSlideDialog(str(scan))
    qtbot.addWidget(dlg)
    assert dlg.scan_state.text().startswith("stitched")
    assert not dlg.stitch_first.isVisibleTo(dlg)
    dlg.set_format("ome-tiff")
    assert dlg.output.text().endswith("scan.ome.tif")
    dlg.compression.setCurrentText("zstd")
    assert not dlg.quality.isEnabled()
    dlg.set_format("ome-zarr")
    assert dlg.compression.findText("jpeg") < 0  # OME-Zarr is written lossless
    dlg.set_format("ome-tiff")
    assert dlg.compression.currentText() == "zstd"
    with qtbot.waitSignal(dlg.exported, timeout=60000) as done:
        dlg.start()
    with tifffile.TiffFile(done.args[0].path) as tif:
        assert tif.is_ome
        level0 = tif.series[0].levels[0].asarray()
        assert level0.ndim == 3 and level0.shape[2] == 3 and level0.std() > 5


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """A stitched 4 x 4 scan of 1024 px tiles: an export that lasts long enough to cancel."""
    from slidescan.app.gui.tools.slide_bench import make_pattern_scan

    return make_pattern_scan(tmp_path_factory.mktemp("big") / "big.h5", n=4)


def test_cancel_leaves_nothing(qtbot, big, tmp_path):
    out = tmp_path / "slide.svs"
    dlg = ExportSlideDialog(str(big))
    qtbot.addWidget(dlg)
    dlg.output.setText(str(out))
    progress = []
    dlg.job.progressed.connect(lambda *a: progress.append(a))
    dlg.job.progressed.connect(lambda *a: dlg.cancel() if len(progress) == 1 else None)
    with qtbot.waitSignal(dlg.cancelled, timeout=60000):
        dlg.start()
        assert dlg.cancel_button.isVisibleTo(dlg) and dlg.cancel_button.isEnabled()
    assert progress and progress[-1][1] < progress[-1][2]  # stopped part way
    assert "nothing was written" in dlg.stage.text()
    assert dlg.result is None and dlg.last_error == ""
    assert list(tmp_path.iterdir()) == []  # no file, no partial, no scratch
    assert not dlg.running and dlg.export_button.isEnabled()
    # and the same export, not cancelled, shows its progress to the end with the time left
    progress.clear()
    dlg.job.progressed.disconnect()
    dlg.job.progressed.connect(lambda *a: progress.append(a))
    dlg.job.progressed.connect(dlg._progressed)
    with qtbot.waitSignal(dlg.exported, timeout=60000):
        dlg.start()
    dones = [p[1] for p in progress]
    assert dones == sorted(dones) and progress[-1][1] == progress[-1][2] > 20
    assert any(p[3] >= 0 for p in progress)  # a time left was estimated
    assert out.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["slide.svs"]


def test_problems_are_one_line_in_the_dialog(qtbot, scan, tmp_path):
    dlg = ExportSlideDialog(str(scan))
    qtbot.addWidget(dlg)
    # not stitched and not allowed to stitch
    dlg.stitch_first.setChecked(False)
    with qtbot.waitSignal(dlg.failed, timeout=1000):
        dlg.start()
    assert "not stitched" in dlg.last_error and "\n" not in dlg.last_error
    assert dlg.error.isVisibleTo(dlg)
    # an output that exists is not replaced unless asked
    from slidescan.app.cli import main

    assert main(["stitch", str(scan), "--json"]) == 0
    dlg._check_scan()
    target = tmp_path / "exists.svs"
    target.write_bytes(b"keep me")
    dlg.output.setText(str(target))
    with qtbot.waitSignal(dlg.failed, timeout=30000) as failed:
        dlg.start()
    assert failed.args[0].startswith("export: ") and "exists" in failed.args[0]
    assert "\n" not in failed.args[0] and target.read_bytes() == b"keep me"
    # a file that is not a scan
    dlg.scan.setText(str(target))
    dlg.start()
    assert "not" in dlg.last_error and "\n" not in dlg.last_error


def test_export_dialog_from_the_review_window(qtbot, scan):
    from slidescan.app.gui.review import ReviewWindow

    review = ReviewWindow(scan)
    qtbot.addWidget(review)
    dlg = review.export_slide_dialog()
    assert dlg.scan.text() == str(scan) and dlg.stitch_first.isVisibleTo(dlg)
    assert review.export_slide_dialog() is dlg  # one at a time
    dlg.close()


def test_the_child_runs_as_this_python_or_as_the_frozen_program(monkeypatch, tmp_path, capsys):
    import sys

    from slidescan.app.gui.child_job import child_command
    from slidescan.app.gui.slide_jobs import run_child

    program, args = child_command("export", {"scan": "a.h5"})
    assert program == sys.executable and args[:2] == ["-m", "slidescan.app.gui.slide_jobs"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    program, args = child_command("stitch", {"scan": "a.h5"})
    assert args[:4] == ["gui", "--slide-job", "stitch", '{"scan": "a.h5"}']
    # the child's answer to a file that is not there: one line, as JSON
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert run_child("stitch", {"scan": str(tmp_path / "none.h5")}) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "no such scan file" in lines[0] and lines[0].startswith('{"error"')
