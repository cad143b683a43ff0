"""Drive the application on the simulator and save screenshots (docs, visual checks).

    xvfb-run -s "-screen 0 1600x1000x24" python -m slidescan.app.gui.tools.screenshots --out DIR

Takes `main-window.png` while a simulated scan is running (about two thirds done; with
`--focus NAME`, that method is chosen and its settings form is open), `review.png` of the
finished scan with one tile open, `slide-viewer.png`: review's Slide tab on a stitched scan
(`--slide FILE`, else the scan just taken, stitched here) with tile boundaries, a tile
selected and its record, and `tissue-plan.png`: Scan ▸ Find tissue on the simulator's slide,
one region drawn by hand, the plan's tiles over the overview, and `deepfocus-calibration.png`:
Focus ▸ Calibrate DeepFocus on the simulator (the shipped network, or `--weights FILE`), the
curve window it opens (the calibration goes to a temporary config folder, not the user's).
Also reports the event-loop stall figures measured while the scan ran (JSON on stdout).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PySide6 import QtCore, QtWidgets


def _wait(app: QtWidgets.QApplication, until: Any, timeout_s: float) -> bool:
    end = time.perf_counter() + timeout_s
    while time.perf_counter() < end:
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 20)
        if until():
            return True
    return False


def _save(widget: QtWidgets.QWidget, path: Path, max_bytes: int = 490_000) -> None:
    """PNG of the widget; a 256-colour palette when full colour would exceed `max_bytes`."""
    image = widget.grab().toImage()
    image.save(str(path), "PNG", 0)
    if path.stat().st_size > max_bytes:
        from PySide6 import QtGui

        indexed = image.convertToFormat(
            QtGui.QImage.Format.Format_Indexed8, QtCore.Qt.ImageConversionFlag.DiffuseDither
        )
        indexed.save(str(path), "PNG", 0)


SHOTS = ("main", "slide", "tissue", "deepfocus")


def run(
    out: Path,
    rows: int,
    cols: int,
    profile: str,
    size: tuple[int, int],
    focus: str | None = None,
    slide_scan: Path | None = None,
    only: tuple[str, ...] = SHOTS,
    weights: Path | None = None,
) -> dict[str, Any]:
    """The shots named in `only`: "main" (main-window.png and review.png, from a scan taken
    here), "slide" (slide-viewer.png: of `slide_scan`, else of that scan, stitched here),
    "tissue" (tissue-plan.png) and "deepfocus" (deepfocus-calibration.png, with the network
    `weights`, else the shipped one)."""
    from slidescan.app.gui.app import ensure_app
    from slidescan.app.gui.main_window import MainWindow
    from slidescan.app.gui.settings import gui_settings

    if "slide" in only and "main" not in only and slide_scan is None:
        raise ValueError("the slide viewer's shot without a scan of its own needs --slide FILE")
    app = ensure_app()
    work = Path(tempfile.mkdtemp(prefix="slidescan-shots-"))
    out.mkdir(parents=True, exist_ok=True)
    settings = gui_settings(work / "gui.ini")
    settings.setValue("camera/live", "false")
    win = MainWindow(settings=settings)
    win.resize(*size)
    win.show()
    win.connect_profile(profile)
    if not _wait(
        app,
        lambda: win.stage_controller is not None and win.stage_controller.position is not None,
        120,
    ):
        raise RuntimeError(f"profile {profile} did not connect")
    win.worker.wait_idle(60)
    _wait(app, lambda: False, 1.0)
    figures: dict[str, Any] = {}
    scan = None
    if "main" in only:
        scan, figures = _main_shots(app, win, work, out, rows, cols, size, focus)
    if "slide" in only:
        slide = slide_scan or _stitched(scan)
        _slide_viewer_shot(app, slide, out / "slide-viewer.png", size)
    if "tissue" in only:
        figures["tissue"] = _tissue_plan_shot(app, win, out / "tissue-plan.png")
    if "deepfocus" in only:
        figures["deepfocus"] = _deepfocus_shot(
            app, win, out / "deepfocus-calibration.png", work, weights
        )
    win.close()
    return figures


def _main_shots(
    app: QtWidgets.QApplication,
    win: Any,
    work: Path,
    out: Path,
    rows: int,
    cols: int,
    size: tuple[int, int],
    focus: str | None,
) -> tuple[Path, dict[str, Any]]:
    """main-window.png during a scan, review.png of it; the scan file and the figures."""
    from slidescan.app.gui.tools.stall import StallMonitor

    # a region in the middle of the tissue, slightly off-centre so the map shows context
    m = win.microscope
    if m is None or m.truth is None:
        raise RuntimeError("the profile is not a simulator: no slide to centre on")
    x0, y0, x1, y1 = m.truth.slide_bounds_um
    cx, cy = x0 + 0.42 * (x1 - x0), y0 + 0.45 * (y1 - y0)
    win.stage_controller.go_to(x=cx, y=cy)
    _wait(app, lambda: abs(win.stage_controller.position.x - cx) < 1, 30)
    p = win.scan_panel
    p.rows.setValue(rows)
    p.cols.setValue(cols)
    p.mode_grid.setChecked(True)
    if focus is not None:
        if p.method.findText(focus) < 0:
            raise ValueError(f"unknown focus method {focus!r}")
        p.method.setCurrentText(focus)
    p.output.setText(str(work / "scan.h5"))
    win.map_panel.overlay_combo.setCurrentText("none")
    done: list[Any] = []
    win.scanFinished.connect(done.append)
    monitor = StallMonitor(5)
    monitor.start()
    win.start_scan()
    total = rows * cols
    _wait(app, lambda: win.focus_surface.n_points >= int(total * 0.65), 900)
    win.tile_map.zoom_to_plan()
    win.focus_tabs.setCurrentIndex(0)
    if focus is not None:
        _wait(app, lambda: False, 0.2)
        p.show_method_settings()  # the method's own settings, in view in the shot
    _wait(app, lambda: False, 1.5)
    monitor.stop()  # grabbing and encoding the screenshot is not the application's stall
    _save(win, out / "main-window.png")
    monitor.resume()
    if not _wait(app, lambda: bool(done), 900):
        raise RuntimeError("the scan did not finish")
    monitor.stop()
    figures = {"scan": done[0].summary, **monitor.summary()}
    review = win.open_review(done[0].path)
    assert review is not None
    review.resize(*size)
    review.overlay_combo.setCurrentText("focus z")
    flagged = review.flagged()
    review.select_tile(flagged[0] if flagged else sorted(review._rows)[len(review._rows) // 2])
    review.right_tabs.setCurrentIndex(0)
    _wait(app, lambda: False, 1.5)
    _save(review, out / "review.png")
    review.close()
    return Path(done[0].path), figures


def _stitched(path: Path | None) -> Path:
    if path is None:
        raise ValueError("no scan to stitch")
    from slidescan.app.stitch import stored
    from slidescan.app.stitch.stitcher import stitch
    from slidescan.app.store import ScanReader

    with ScanReader(path) as reader:
        result = stitch(reader)
    stored.save(path, result)
    return path


def _slide_viewer_shot(
    app: QtWidgets.QApplication, path: Path, file: Path, size: tuple[int, int]
) -> None:
    """Review's Slide tab: the stitched slide zoomed to a few tiles, their boundaries, one
    tile chosen (its image and record beside)."""
    from slidescan.app.gui.review import ReviewWindow

    review = ReviewWindow(path)
    review.resize(*size)
    review.show()
    _wait(app, lambda: False, 0.5)
    review.show_slide()
    v = review.slide_viewer
    _wait(app, lambda: v.slide is not None and v.settled, 120)
    slide = v.slide
    assert slide is not None
    # the tile nearest the centre of the tissue-richest third of the slide, and its neighbours
    k = int(np.argmax(np.where(np.isfinite(slide.z_um), 1.0, 0.0) * _richness(review, slide)))
    index = int(slide.indices[k])
    review.select_tile(index)
    x, y = slide.positions[k]
    h, w = slide.tile_shape
    v.outlines_check.setChecked(True)
    v.view.setRange(QtCore.QRectF(x - 0.9 * w, y - 0.7 * h, 2.8 * w, 2.4 * h), padding=0)
    review.right_tabs.setCurrentIndex(1)  # the focus record
    _wait(app, lambda: v.settled, 120)
    _wait(app, lambda: False, 0.8)
    _save(review, file)
    review.close()


def _richness(review: Any, slide: Any) -> np.ndarray:
    """How much tissue each tile of the slide holds (its thumbnail's darkness), so the shot
    shows tissue, not glass."""
    out = np.zeros(len(slide.rows))
    for k, row in enumerate(slide.rows):
        thumb = np.asarray(review.reader.thumbnail(int(row)), float)
        out[k] = 255.0 - thumb.mean()
    return out


def _tissue_plan_shot(app: QtWidgets.QApplication, win: Any, file: Path) -> dict[str, Any]:
    """Scan ▸ Find tissue on the simulator's slide, a region added by hand, the plan."""
    from slidescan.app.gui.tissue_regions import DRAWN

    tissue = win.tissue
    shown = win.live.frames_shown
    win.camera.snap()  # a field in the live view, as a person would have
    _wait(app, lambda: win.live.frames_shown > shown, 60)
    win.live.auto_contrast()
    win.find_tissue()
    if not _wait(app, lambda: tissue.regions is not None and not tissue.busy, 120):
        raise RuntimeError("the tissue was not found")
    regions = tissue.regions
    x0, y0, x1, y1 = regions.region().bounds
    w, h = x1 - x0, y1 - y0
    # a region the detector did not find, drawn by hand: glass at the tissue's top left
    tissue.layer.set_tool("rect")
    tissue.layer.draw_rect(x0 + 0.03 * w, y0 + 0.03 * h, x0 + 0.17 * w, y0 + 0.2 * h)
    tissue.layer.select(len(regions) - 1)
    win.preview.preview()
    docks = win.docks
    vertical = QtCore.Qt.Orientation.Vertical
    win.resizeDocks([docks["Tile map"], docks["Focus"]], [720, 180], vertical)
    _wait(app, lambda: False, 0.5)
    win.tile_map.viewbox.setRange(
        QtCore.QRectF(x0 - 0.04 * w, y0 - 0.04 * h, 1.08 * w, 1.08 * h), padding=0
    )
    _wait(app, lambda: False, 1.0)
    _save(win, file)
    return {
        "regions": len(regions),
        "drawn": regions.kinds.count(DRAWN),
        "tissue_mm2": round(regions.tissue_area_mm2, 1),
        "tiles": len(win.tile_map.planned),
    }


def _deepfocus_shot(
    app: QtWidgets.QApplication, win: Any, file: Path, work: Path, weights: Path | None
) -> dict[str, Any]:
    """Focus ▸ Calibrate DeepFocus with the method chosen in the scan panel; the curve window."""
    import os

    panel = win.scan_panel
    panel.method.setCurrentText("deepfocus")
    if weights is not None:
        panel.params.set_values({"weights": str(weights)})
    saved = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(work / "config")  # not the user's calibration folder
    try:
        done: list[Any] = []
        # a real event loop, which sleeps between events (`_wait` spins, and with the GUI's
        # short switch interval would take the worker's GIL turns: 5x slower)
        loop = QtCore.QEventLoop()
        win.calibration.finished.connect(done.append)
        win.calibration.finished.connect(loop.quit)
        QtCore.QTimer.singleShot(600_000, loop.quit)
        t0 = time.perf_counter()
        win.calibrate_deepfocus()
        if not done:
            loop.exec()
        seconds = time.perf_counter() - t0
        if not done:
            raise RuntimeError("the calibration did not finish")
    finally:
        if saved is None:
            os.environ.pop("XDG_CONFIG_HOME", None)
        else:
            os.environ["XDG_CONFIG_HOME"] = saved
    cal = done[0]
    view = win.calibration.view
    if cal is None or view is None:
        text = win.last_dialog.text() if win.last_dialog is not None else "no calibration"
        raise RuntimeError(f"the calibration failed: {text}")
    _wait(app, lambda: False, 1.0)
    _save(view, file)
    return {
        "seconds": round(seconds, 1),
        "fwhm_um": round(cal.fwhm_um, 3),
        "fit_rms": round(cal.fit_rms, 4),
        "focus_z_um": round(cal.focus_z_um, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--cols", type=int, default=5)
    parser.add_argument("--profile", default="simulator")
    parser.add_argument("--size", default="1600x1000")
    parser.add_argument("--focus", default=None, help="focus method (default: the panel's)")
    parser.add_argument(
        "--slide", type=Path, default=None, help="a stitched scan for slide-viewer.png"
    )
    parser.add_argument(
        "--weights", type=Path, default=None, help="DeepFocus network (default: the shipped one)"
    )
    parser.add_argument(
        "--only", default="", help=f"comma-separated shots to take ({', '.join(SHOTS)})"
    )
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    only = tuple(args.only.split(",")) if args.only else SHOTS
    if not set(only) <= set(SHOTS):
        parser.error(f"--only takes {', '.join(SHOTS)}")
    figures = run(
        args.out,
        args.rows,
        args.cols,
        args.profile,
        (w, h),
        args.focus,
        args.slide,
        only,
        args.weights,
    )
    print(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
