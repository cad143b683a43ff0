"""Slide viewer benchmark: how smooth the review's slide viewer stays on a big slide.

    python -m slidescan.app.gui.tools.slide_bench --make 10 [--sim] --out SCAN.h5 [--json]
    python -m slidescan.app.gui.tools.slide_bench --scan SCAN.h5 [--json]

`--make N` writes an N x N scan of 1024 px tiles (10 % overlap) and stitches it: procedural
tissue cut at positions off by up to 2 µm from the planned ones (seconds), or with `--sim`
a scan of the optical simulator (focus at the known true z, a few minutes on 2 cores).
`viewer_tour` then opens the scan's review window at a realistic size, shows the slide
and, with a `StallMonitor` on the event loop throughout, fits the slide, zooms by halves
into its centre down to level 0, pans at 60 steps a second, and zooms back out. It reports
the longest event-loop stall (wall clock) and the GUI thread's busiest turn, how soon the
first picture and the sharp view came, and the chunks read per step (only those on screen).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PySide6 import QtCore, QtWidgets

TILE_PX = 1024
PIXEL_UM = 0.325


def make_pattern_scan(path: Path, n: int = 10, size: int = TILE_PX, seed: int = 0) -> Path:
    """An n x n scan of `size` px tiles of procedural tissue, stitched (see the module)."""
    from slidescan.app.export.sources import PatternSlide
    from slidescan.app.plan import FocusSettings, ScanPlan
    from slidescan.app.records import TileRecord
    from slidescan.app.stitch import stored
    from slidescan.app.stitch.stitcher import stitch
    from slidescan.app.store import ScanReader, ScanWriter

    fov = size * PIXEL_UM
    margin = 40
    plan = ScanPlan.grid(
        n,
        n,
        (margin * PIXEL_UM + fov * (1 + 0.9 * (n - 1)) / 2,) * 2,
        (fov, fov),
        0.1,
        output=str(path),
        focus=FocusSettings(method="none"),
    )
    tiles = plan.tiles(fov, fov)
    side = size + round(0.9 * size) * (n - 1) + 2 * margin + 8
    slide = PatternSlide(side, side, seed=seed)
    rng = np.random.default_rng(seed)
    profile = {"name": "bench", "stage": {"type": "sim", "repeatability_um": 2.0}}
    writer = ScanWriter.create(
        path, plan, tiles, (size, size, 3), np.uint8, pixel_size_um=PIXEL_UM,
        profile=profile, overwrite=True,
    )  # fmt: skip
    try:
        for t in tiles:
            tx, ty = t.x_um + rng.uniform(-2, 2), t.y_um + rng.uniform(-2, 2)
            x0 = round(tx / PIXEL_UM - size / 2)
            y0 = round(ty / PIXEL_UM - size / 2)
            rec = TileRecord(t.index, t.row, t.col, t.x_um, t.y_um, 0.0)
            rec.stage_x_um, rec.stage_y_um = t.x_um, t.y_um
            rec.true_x_um, rec.true_y_um, rec.true_focus_um = tx, ty, 0.1 * (t.row - t.col)
            writer.append(rec, slide.read(y0, x0, size, size))
    finally:
        writer.close("completed")
    with ScanReader(path) as reader:
        result = stitch(reader)
    stored.save(path, result)
    return path


def make_sim_scan(path: Path, n: int = 10, size: int = TILE_PX) -> Path:
    """An n x n scan of the simulator at a tissue edge (focus map), stitched."""
    from slidescan.app.plan import FocusSettings, ScanPlan, TissueSettings
    from slidescan.app.runner import ScanRunner
    from slidescan.app.stitch import stored
    from slidescan.app.stitch.stitcher import stitch
    from slidescan.app.store import ScanReader
    from slidescan.hardware.profile import load_profile, open_microscope

    prof = load_profile("simulator")
    m = open_microscope(prof)
    if size != m.camera.shape[1]:
        raise ValueError(f"the simulator profile's camera is {m.camera.shape[1]} px")
    x0, y0, x1, y1 = m.truth.slide_bounds_um
    cx, cy = x0 + 0.25 * (x1 - x0), y0 + 0.17 * (y1 - y0)
    px = float(m.optics.pixel_size_um)
    plan = ScanPlan.grid(
        n,
        n,
        (cx, cy),
        (size * px, size * px),
        0.1,
        output=str(path),
        start_z_um=m.truth.true_focus_um(cx, cy),
        focus=FocusSettings(method="zsweep", strategy="focusmap", survey_points=9),
        tissue=TissueSettings(enabled=False),
    )
    runner = ScanRunner(plan, m, profile=prof.model_dump(mode="json"), overwrite=True)
    runner.start()
    finished = runner.wait()
    if finished.reason.value != "completed":
        raise RuntimeError(f"the scan did not complete: {finished.message}")
    with ScanReader(path) as reader:
        result = stitch(reader)
    stored.save(path, result)
    return path


def viewer_tour(path: Path, window: tuple[int, int] = (1400, 900)) -> dict[str, Any]:
    """Open `path` in review, show its slide and tour it (see the module); needs a
    QApplication."""
    from slidescan.app.gui.review import ReviewWindow
    from slidescan.app.gui.tools.stall import StallMonitor

    app = QtWidgets.QApplication.instance()
    if app is None:
        raise RuntimeError("viewer_tour needs a QApplication")

    def spin(seconds: float, until: Any = None) -> bool:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 5)
            if until is not None and until():
                return True
        return False

    win = ReviewWindow(path)
    win.resize(*window)
    win.show()
    spin(0.5)
    v = win.slide_viewer

    def sharp() -> bool:
        return v.slide is not None and v.settled

    def settle(timeout_s: float = 120.0) -> float:
        t = time.perf_counter()
        spin(0.03)
        spin(timeout_s, sharp)
        return time.perf_counter() - t

    monitor = StallMonitor(5)
    monitor.start()
    t0 = time.perf_counter()
    win.show_slide()
    spin(30, lambda: bool(v._items))
    first_picture = time.perf_counter() - t0
    spin(120, sharp)
    first_sharp = time.perf_counter() - t0
    h, w = v.slide.shape[:2]
    steps = []
    k = 0
    while True:
        k += 1
        side = w / 2**k
        r0 = v.loader.reads
        v.view.setRange(QtCore.QRectF(w / 2 - side / 2, h / 2 - side / 2, side, side), padding=0)
        took = settle()
        steps.append(
            {"level": v.factor, "chunks_read": v.loader.reads - r0, "sharp_s": round(took, 3)}
        )
        if v.factor == 1:
            break
    r0 = v.loader.reads
    t = time.perf_counter()
    frames = 0
    while time.perf_counter() - t < 3.0:  # a steady drag across the slide
        v.view.translateBy(x=12.0, y=5.0)
        frames += 1
        spin(1 / 60)
    pan_s = time.perf_counter() - t
    during = v.loader.reads - r0
    settle()
    pan_reads = v.loader.reads - r0
    r0 = v.loader.reads
    v.fit()
    fit_s = settle()
    fit_reads = v.loader.reads - r0
    monitor.stop()
    visible = len(v._items)
    tiles = int(len(v.slide.positions)) if v.slide is not None else None
    win.close()
    return {
        "scan": str(path),
        "slide_px": [int(h), int(w)],
        "tiles": tiles,
        "window": list(window),
        "platform": QtWidgets.QApplication.platformName(),
        "first_picture_s": round(first_picture, 3),
        "first_sharp_s": round(first_sharp, 3),
        "zoom_steps": steps,
        "pan": {
            "seconds": round(pan_s, 2),
            "steps": frames,
            "px_level0": [12 * frames, 5 * frames],
            "chunks_read_while_panning": during,
            "chunks_read_in_all": pan_reads,
        },
        "fit_again": {"chunks_read": fit_reads, "sharp_s": round(fit_s, 3)},
        "chunks_shown_at_the_end": visible,
        **monitor.summary(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", type=Path, help="a stitched scan file to tour")
    parser.add_argument("--make", type=int, metavar="N", help="make an N x N scan first")
    parser.add_argument("--sim", action="store_true", help="make it with the simulator")
    parser.add_argument("--out", type=Path, help="where --make writes the scan")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    path = args.scan
    made_s = None
    if args.make:
        if args.out is None:
            parser.error("--make needs --out")
        t = time.perf_counter()
        make = make_sim_scan if args.sim else make_pattern_scan
        path = make(args.out, args.make)
        made_s = time.perf_counter() - t
    if path is None:
        parser.error("give --scan FILE or --make N --out FILE")
    result = viewer_tour(path)
    if made_s is not None:
        result["made_s"] = round(made_s, 1)
    print(json.dumps(result, indent=None if args.json else 2))
    app.quit()


if __name__ == "__main__":
    main()
