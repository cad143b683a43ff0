"""Drive the application on the simulator and save screenshots (docs, visual checks).

    xvfb-run -s "-screen 0 1600x1000x24" python -m slidescan.app.gui.tools.screenshots --out DIR

Takes `main-window.png` while a simulated scan is running (about two thirds done; with
`--focus NAME`, that method is chosen and its settings form is open) and `review.png` of the
finished scan with one tile open. Also reports the event-loop stall
figures measured while the scan ran (JSON on stdout).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

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


def run(
    out: Path,
    rows: int,
    cols: int,
    profile: str,
    size: tuple[int, int],
    focus: str | None = None,
) -> dict[str, Any]:
    from slidescan.app.gui.app import ensure_app
    from slidescan.app.gui.main_window import MainWindow
    from slidescan.app.gui.settings import gui_settings
    from slidescan.app.gui.tools.stall import StallMonitor

    app = ensure_app()
    work = Path(tempfile.mkdtemp(prefix="slidescan-shots-"))
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
    # a region in the middle of the tissue, slightly off-centre so the map shows context
    m = win.microscope
    if m is None or m.truth is None:
        raise RuntimeError(f"profile {profile} is not a simulator: no slide to centre on")
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
    out.mkdir(parents=True, exist_ok=True)
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
    win.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--cols", type=int, default=5)
    parser.add_argument("--profile", default="simulator")
    parser.add_argument("--size", default="1600x1000")
    parser.add_argument("--focus", default=None, help="focus method (default: the panel's)")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    figures = run(args.out, args.rows, args.cols, args.profile, (w, h), args.focus)
    print(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
