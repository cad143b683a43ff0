"""GUI benchmarks: live-view display rate for big frames, event-loop stalls during a scan.

`live_view_fps` feeds a `LiveView` from a source that always has a new frame ready (the fastest
camera imaginable) and counts the frames actually painted per second of wall time, window shown
at a realistic size. `scan_stalls` runs a scan on the simulator from the main window and
reports the `StallMonitor` figures (the longest event-loop gap, wall clock, and the GUI
thread's own CPU time in its busiest turn). Run them with `python -m slidescan.app.gui.tools.bench`
(offscreen or under Xvfb).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from typing import Any

import numpy as np
from PySide6 import QtCore, QtWidgets

from slidescan.hardware.base import Frame, Position


def _frames(size: int, channels: int, dtype: np.dtype, n: int, seed: int = 0) -> list[Frame]:
    rng = np.random.default_rng(seed)
    top = 255 if dtype == np.uint8 else 4095
    shape = (size, size) if channels == 1 else (size, size, channels)
    base = rng.integers(0, top, size=shape, dtype=np.int64)
    frames = []
    for i in range(n):
        img = np.roll(base, 7 * i, axis=1).astype(dtype)
        frames.append(
            Frame(
                image=img,
                timestamp=float(i),
                exposure_ms=1.0,
                position=Position(0, 0, 0),
                pixel_size_um=0.325,
            )
        )
    return frames


def live_view_fps(
    size: int = 2048,
    channels: int = 1,
    dtype: str = "uint16",
    seconds: float = 3.0,
    window: tuple[int, int] = (1200, 900),
) -> dict[str, Any]:
    """Frames painted per second for `size` x `size` frames; needs a QApplication."""
    from slidescan.app.gui.live_view import LiveView

    app = QtWidgets.QApplication.instance()
    if app is None:
        raise RuntimeError("live_view_fps needs a QApplication")
    frames = _frames(size, channels, np.dtype(dtype), 6)
    cycle = itertools.cycle(frames)
    current: list[Frame] = [next(cycle)]

    def source() -> Frame:  # a camera that always has a fresh frame
        current[0] = next(cycle)
        return current[0]

    view = LiveView(poll_ms=1)
    view.resize(*window)
    view.show()
    view.set_frame_source(source)
    t_end = time.perf_counter() + 0.5  # warm-up: first frame, auto levels, layout
    while time.perf_counter() < t_end:
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 5)
    start_count = view.frames_shown
    start_paints = view.paints
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 5)
    elapsed = time.perf_counter() - t0
    shown = view.frames_shown - start_count
    painted = view.paints - start_paints
    view.set_frame_source(None)
    view.close()
    view.deleteLater()
    return {
        "size": size,
        "channels": channels,
        "dtype": dtype,
        "window": list(window),
        "frames": shown,
        "paints": painted,
        "seconds": elapsed,
        # frames that reached the screen: a new frame is shown per paint at most
        "fps": min(shown, painted) / elapsed,
        "platform": QtWidgets.QApplication.platformName(),
    }


def scan_stalls(
    camera_px: int = 1024,
    rows: int = 3,
    cols: int = 3,
    method: str = "zsweep",
    window: tuple[int, int] = (1600, 1000),
) -> dict[str, Any]:
    """Scan `rows` x `cols` tiles of the simulator from a shown `MainWindow`; stall figures."""
    import tempfile
    from pathlib import Path

    from slidescan.app.gui.main_window import MainWindow
    from slidescan.app.gui.settings import gui_settings
    from slidescan.app.gui.tools.stall import StallMonitor
    from slidescan.hardware.sim import SimConfig, build_simulator

    app = QtWidgets.QApplication.instance()
    if app is None:
        raise RuntimeError("scan_stalls needs a QApplication")
    work = Path(tempfile.mkdtemp(prefix="slidescan-bench-"))
    settings = gui_settings(work / "gui.ini")
    settings.setValue("camera/live", "false")
    win = MainWindow(settings=settings)
    win.resize(*window)
    win.show()
    win.set_microscope(
        build_simulator(SimConfig(camera={"width": camera_px, "height": camera_px})), "simulator"
    )

    def spin(until: Any, timeout_s: float) -> None:
        end = time.perf_counter() + timeout_s
        while not until() and time.perf_counter() < end:
            app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 20)

    spin(lambda: win.stage_controller is not None and win.stage_controller.position is not None, 60)
    win.worker.wait_idle(60)
    p = win.scan_panel
    p.rows.setValue(rows)
    p.cols.setValue(cols)
    p.mode_grid.setChecked(True)
    p.method.setCurrentText(method)
    p.output.setText(str(work / "scan.h5"))
    done: list[Any] = []
    win.scanFinished.connect(done.append)
    monitor = StallMonitor(5)
    monitor.start()
    t0 = time.perf_counter()
    win.start_scan()
    spin(lambda: bool(done), 3600)
    monitor.stop()
    elapsed = time.perf_counter() - t0
    win.close()
    return {
        "camera_px": camera_px,
        "tiles": rows * cols,
        "method": method,
        "scan_wall_s": elapsed,
        "tiles_per_s": rows * cols / elapsed,
        "platform": QtWidgets.QApplication.platformName(),
        **monitor.summary(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=("live", "stalls", "all"), default="all")
    parser.add_argument("--size", type=int, default=2048, help="live-view frame size (px)")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--camera", type=int, default=1024, help="simulator frame size (px)")
    parser.add_argument("--tiles", type=int, default=3, help="scan is N x N tiles")
    args = parser.parse_args()
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    results: dict[str, Any] = {}
    if args.what in ("live", "all"):
        results["live_view"] = [
            live_view_fps(args.size, 1, "uint16", args.seconds),
            live_view_fps(args.size, 1, "uint8", args.seconds),
            live_view_fps(args.size, 3, "uint8", args.seconds),
        ]
    if args.what in ("stalls", "all"):
        results["scan_stalls"] = scan_stalls(args.camera, args.tiles, args.tiles)
    print(json.dumps(results, indent=2, default=str))
    app.quit()


if __name__ == "__main__":
    main()
