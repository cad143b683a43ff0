"""GUI benchmarks: live-view display rate for big frames.

`live_view_fps` feeds a `LiveView` from a source that always has a new frame ready (the fastest
camera imaginable) and counts the frames actually painted per second of wall time, window shown
at a realistic size. Run it with `python -m slidescan.app.gui.bench` (offscreen or under Xvfb).
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
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 5)
    elapsed = time.perf_counter() - t0
    shown = view.frames_shown - start_count
    view.set_frame_source(None)
    view.close()
    view.deleteLater()
    return {
        "size": size,
        "channels": channels,
        "dtype": dtype,
        "window": list(window),
        "frames": shown,
        "seconds": elapsed,
        "fps": shown / elapsed,
        "platform": QtWidgets.QApplication.platformName(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    results = [
        live_view_fps(args.size, 1, "uint16", args.seconds),
        live_view_fps(args.size, 1, "uint8", args.seconds),
        live_view_fps(args.size, 3, "uint8", args.seconds),
    ]
    print(json.dumps(results, indent=2))
    app.quit()


if __name__ == "__main__":
    main()
