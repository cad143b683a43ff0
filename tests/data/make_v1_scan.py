"""Regenerate `scan_v1.h5`: a scan file in format version 1, written by slidescan 0.1's own
ScanWriter (commit 4b08c54), so tests can check that today's code reads, upgrades and resumes
the files people already have. It must run against the 0.1 code, not today's:

    git archive 4b08c54 app hardware focus resources | tar -x -C /tmp/old
    mkdir -p /tmp/oldpkg/slidescan && touch /tmp/oldpkg/slidescan/__init__.py
    cp -r /tmp/old/* /tmp/oldpkg/slidescan/
    python tests/data/make_v1_scan.py /tmp/oldpkg

Six tiles are planned and four written (status cancelled, so the scan can be resumed): a
z-sweep capture, a diffcnn per-slide calibration tile (0.1 named it "diffcnn+calibration"), an
empty-glass tile and a tile that fell back to the predicted z; plus one focus-map survey point.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "scan_v1.h5"
SHAPE = (48, 64, 3)


def main(old_package_root: str) -> None:
    # Import the 0.1 package from `old_package_root`, not the installed one.
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path.insert(0, old_package_root)
    from slidescan.app.plan import RectRegion, ScanPlan
    from slidescan.app.store import FORMAT_VERSION, ScanWriter, TileRecord

    assert FORMAT_VERSION == 1, "run this against slidescan 0.1"
    plan = ScanPlan(
        region=RectRegion(x0=0, y0=0, x1=180, y1=90), overlap=0.0, output=str(OUT), profile="x"
    )
    tiles = plan.tiles(64, 48)
    assert len(tiles) == 6
    if OUT.exists():
        OUT.unlink()
    w = ScanWriter.create(OUT, plan, tiles, SHAPE, np.uint8, pixel_size_um=1.0)
    rng = np.random.default_rng(1)
    kinds = [
        {"method": "zsweep", "frames": 22},
        {"method": "diffcnn+calibration", "frames": 15},
        {"method": "skipped", "skipped": True},
        {"method": "zsweep", "fallback": "predicted", "ok": False},
    ]
    for t, kind in zip(tiles, kinds, strict=False):
        rec = TileRecord(t.index, t.row, t.col, t.x_um, t.y_um, 1.0 + 0.1 * t.index, **kind)
        rec.curve_z_um = np.linspace(-1, 1, 5).astype(np.float32)
        rec.curve_values = np.exp(-(np.linspace(-1, 1, 5) ** 2)).astype(np.float32)
        image = None if rec.skipped else rng.integers(0, 255, SHAPE, dtype=np.uint8)
        w.append(rec, image)
    w.add_survey_point(30.0, 20.0, 1.5, 0.9, True)
    w.close("cancelled", "cancelled by the user")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main(sys.argv[1])
