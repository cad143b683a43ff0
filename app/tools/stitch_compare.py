"""Offline stitching benchmark: simulated scans with stage XY errors, placed by slidescan, by
m2stitch (MIST) and by ASHLAR on the same tiles, against the simulator's true positions; and
the seam-visibility figure before and after flat-field and blending.

m2stitch and ASHLAR are not dependencies of slidescan: install them into the environment to
compare (`pip install m2stitch ashlar`; ASHLAR also needs a Java runtime, it starts a JVM for
Bio-Formats on import). A tool that is missing or fails is reported with the reason.
"m2stitch-hp" is m2stitch on tiles high-passed first (see `place_m2stitch`: as they are,
brightfield tiles defeat it).

    python -m slidescan.app.tools.stitch_compare make --out DIR [--stage lowcost] ...
    python -m slidescan.app.tools.stitch_compare compare SCAN.h5 ... [--json]
    python -m slidescan.app.tools.stitch_compare seams SCAN.h5 [--json]

Positions are compared after removing the best global translation (the mosaic origin is
arbitrary). Times are wall-clock seconds: slidescan's from the scan file (flat-field sample,
registration, placement; nothing written), the other tools' with the grey tiles already in
memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from slidescan.app.stitch.accuracy import error_summary
from slidescan.app.stitch.geometry import StageToMosaic, TileLayout
from slidescan.app.stitch.register import grey

#: A corner of the default simulated slide's tissue: about a third of a 10 x 10 scan of
#: 256 px tiles at 20x is empty glass, the rest tissue.
EDGE_CENTRE_UM = (20278.0, 9998.0)


# -- making scans -------------------------------------------------------------------------------
def make_scan(
    path: Path,
    *,
    size: int = 256,
    rows: int = 10,
    cols: int = 10,
    overlap: float = 0.1,
    stage: dict[str, Any] | str = "lowcost",
    vignetting: float = 0.08,
    seed: int = 0,
    centre_um: tuple[float, float] = EDGE_CENTRE_UM,
) -> dict[str, Any]:
    """A simulated z-sweep scan into `path`; returns the scan summary."""
    from slidescan.app.plan import ScanPlan
    from slidescan.app.runner import ScanRunner
    from slidescan.hardware.sim import SimConfig, build_simulator

    sim = {
        "seed": seed,
        "camera": {"width": size, "height": size, "vignetting": vignetting},
        "stage": stage,
    }
    scope = build_simulator(SimConfig.model_validate(sim))
    px = float(scope.optics.pixel_size_um)
    plan = ScanPlan.grid(
        rows, cols, centre_um, (size * px, size * px), overlap=overlap, output=str(path)
    )
    profile = {"name": "stitch-bench", "stage": {"type": "sim"}, "camera": {"type": "sim"},
               "simulator": sim}  # fmt: skip
    runner = ScanRunner(plan, scope, profile=profile, overwrite=True)
    runner.start()
    finished = runner.wait()
    return {"reason": finished.reason.value, **finished.summary}


# -- the tools ----------------------------------------------------------------------------------
def _tiles(path: Path) -> tuple[TileLayout, list[np.ndarray], float, float]:
    """The tiles to place (layout), their grey images, the pixel size and the search radius
    (um) the stage's stated errors give."""
    from slidescan.app.stitch.stitcher import search_radius_px
    from slidescan.app.stitch.tolerance import stage_tolerance
    from slidescan.app.store import ScanReader

    with ScanReader(path) as r:
        layout = TileLayout.from_records(
            r.tiles, r.tile_shape, StageToMosaic.from_pixel_size(r.pixel_size_um)
        )
        images = [grey(r.image(int(row))) for row in layout.rows]
        radius_um = search_radius_px(r, stage_tolerance(r.profile), None) * r.pixel_size_um
        return layout, images, r.pixel_size_um, radius_um


def place_slidescan(path: Path) -> np.ndarray:
    """The whole `slidescan stitch` run but the writing: flat-field (registration looks at
    corrected tiles), registration, placement."""
    from slidescan.app.stitch.stitcher import stitch
    from slidescan.app.store import ScanReader

    with ScanReader(path) as r:
        return stitch(r).xy


def place_m2stitch(
    layout: TileLayout, images: list[np.ndarray], radius_px: float, highpass: float = 0.0
) -> np.ndarray:
    """m2stitch (MIST in Python): grid rows/cols, the stage positions as the initial guess,
    searched within the same radius as slidescan. `highpass` > 0: each tile less its Gaussian
    blur of that sigma first. As they are, brightfield tiles defeat m2stitch 0.7.2 twice: its
    phase correlation over whole, unwindowed tiles peaks at zero shift (the tile borders)
    whenever the image is smooth at the pixel scale, and its NCC divides by norms that keep
    the mean, so a correct alignment of tiles with a bright background scores about 0.1,
    under its 0.5 threshold ("there is no good top pair")."""
    import cv2
    import m2stitch

    if highpass > 0:
        images = [im - cv2.GaussianBlur(im, (0, 0), highpass) for im in images]
    size = max(layout.tile_shape[:2])
    grid, _ = m2stitch.stitch_images(
        np.stack(images),
        rows=layout.grid[:, 0],
        cols=layout.grid[:, 1],
        position_initial_guess=layout.stage_px[:, ::-1],  # (y, x)
        overlap_diff_threshold=min(100.0, 100.0 * radius_px / size),
        row_col_transpose=False,
    )
    return np.stack([grid["x_pos"].to_numpy(float), grid["y_pos"].to_numpy(float)], axis=1)


def place_ashlar(
    layout: TileLayout, images: list[np.ndarray], pixel_size_um: float, radius_um: float
) -> np.ndarray:
    """ASHLAR's EdgeAligner on the tiles in memory, stage positions as its nominal ones,
    max_shift the same search radius as slidescan's."""
    from ashlar import reg

    class Metadata(reg.Metadata):
        @property
        def _num_images(self) -> int:
            return len(images)

        @property
        def num_channels(self) -> int:
            return 1

        @property
        def pixel_size(self) -> float:
            return pixel_size_um

        @property
        def pixel_dtype(self) -> np.dtype:
            return np.dtype(np.float32)

        def tile_position(self, i: int) -> np.ndarray:
            return layout.stage_px[i, ::-1].copy()  # (y, x) pixels

        def tile_size(self, i: int) -> np.ndarray:
            return np.array(images[i].shape[:2])

    class Reader(reg.Reader):
        metadata = Metadata()

        def read(self, series: int, c: int) -> np.ndarray:
            return images[series]

    aligner = reg.EdgeAligner(Reader(), channel=0, max_shift=radius_um, do_make_thumbnail=False)
    aligner.run()
    return np.asarray(aligner.positions, float)[:, ::-1]


def compare(path: Path, tools: list[str]) -> dict[str, Any]:
    """Each tool's error against the true positions, and its time, on one scan."""
    layout, images, pixel_size, radius_um = _tiles(path)
    if not layout.has_truth:
        raise ValueError(f"{path} holds no true positions (not a simulator scan)")
    out: dict[str, Any] = {
        "scan": str(path),
        "tiles": layout.n,
        "tile_shape": list(layout.tile_shape),
        "search_radius_um": round(radius_um, 2),
        "stage": error_summary(layout.stage_px, layout.true_px),
    }
    runners = {
        "slidescan": lambda: place_slidescan(path),
        "m2stitch": lambda: place_m2stitch(layout, images, radius_um / pixel_size),
        "m2stitch-hp": lambda: place_m2stitch(layout, images, radius_um / pixel_size, 4.0),
        "ashlar": lambda: place_ashlar(layout, images, pixel_size, radius_um),
    }
    for name in tools:
        t0 = time.perf_counter()
        try:
            xy = runners[name]()
        except Exception as exc:  # a comparison tool that cannot run says why
            out[name] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}
            if "--debug" in sys.argv:
                traceback.print_exc()
            continue
        seconds = time.perf_counter() - t0
        out[name] = {**error_summary(xy, layout.true_px), "seconds": round(seconds, 3)}
    return out


# -- seams --------------------------------------------------------------------------------------
def seam_figures(path: Path, region: tuple[int, int, int, int] | None = None) -> dict[str, Any]:
    """Seam visibility of the stitched mosaic (registered placement): raw tiles pasted, with
    flat-field only, with feathering only, with both; as the metric's own noise, the corrected
    and blended mosaic measured at boundaries moved off the real ones; and how even bare glass
    is (relative standard deviation of the mosaic smoothed over 4 px, on the glass of the
    corrected mosaic): the vignetting's grid, which feathering alone does not remove. The
    corrected mosaics are made with glass at 90 % of full scale here, so that clipping at
    white does not flatter their glass."""
    from scipy.ndimage import binary_erosion, gaussian_filter

    from slidescan.app.stitch.blend import FEATHER, HARD
    from slidescan.app.stitch.mosaic import ScanMosaic
    from slidescan.app.stitch.seams import paste_labels, seam_visibility
    from slidescan.app.store import ScanReader

    with ScanReader(path) as r:
        if r.stitch_generation == 0:
            raise ValueError(f"{path} is not stitched yet (slidescan stitch {path})")
        out: dict[str, Any] = {"scan": str(path)}
        variants = (
            ("raw_pasted", False, HARD),
            ("flatfield_pasted", True, HARD),
            ("raw_feathered", False, FEATHER),
            ("flatfield_feathered", True, FEATHER),
        )
        images = {}
        for name, corrected, blend in variants:
            m = ScanMosaic(r, corrected=corrected, blend=blend)
            if corrected:  # glass 10 % below full scale: its noise is measured, not clipped
                m._gains = m._gains * np.float32(0.9)
            y0, x0, h, w = region or (0, 0, *m.shape[:2])
            images[name] = m.read(y0, x0, h, w)
            labels = paste_labels(m.positions, m.tile_shape, y0, x0, h, w)
            out[name] = round(seam_visibility(images[name], labels)["ratio"], 3)
            if name == "flatfield_feathered":
                moved = []
                for off in ((37, 53), (110, 90), (-60, 20), (80, -30), (-100, -100)):
                    fake = paste_labels(m.positions + off, m.tile_shape, y0, x0, h, w)
                    moved.append(round(seam_visibility(images[name], fake)["ratio"], 3))
                out["no_seam_baseline"] = moved
        corrected_grey = images["flatfield_feathered"].astype(float).mean(axis=2)
        glass = binary_erosion((corrected_grey > 0.85 * 255) & (labels >= 0), iterations=6)
        out["glass_pixels"] = int(glass.sum())
        if glass.sum() > 1000:
            for name, image in images.items():
                smooth = gaussian_filter(image.astype(float).mean(axis=2), 4.0)
                out[f"glass_rel_std_{name}"] = round(
                    float(smooth[glass].std() / smooth[glass].mean()), 4
                )
        out["region"] = [y0, x0, h, w]
        return out


# -- command line -------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m slidescan.app.tools.stitch_compare")
    sub = p.add_subparsers(dest="what", required=True)
    mk = sub.add_parser("make", help="make a simulated scan with stage XY errors")
    mk.add_argument("--out", required=True)
    mk.add_argument("--size", type=int, default=256)
    mk.add_argument("--rows", type=int, default=10)
    mk.add_argument("--cols", type=int, default=10)
    mk.add_argument("--overlap", type=float, default=0.1)
    mk.add_argument("--stage", default="lowcost", help="preset name, or JSON of SimStageConfig")
    mk.add_argument("--vignetting", type=float, default=0.08)
    mk.add_argument("--seed", type=int, default=0)
    cmp = sub.add_parser("compare", help="place the tiles with each tool, against the truth")
    cmp.add_argument("scans", nargs="+")
    cmp.add_argument("--tools", default="slidescan,m2stitch,m2stitch-hp,ashlar")
    cmp.add_argument("--json", action="store_true")
    cmp.add_argument("--debug", action="store_true")
    sm = sub.add_parser("seams", help="seam visibility before and after correction")
    sm.add_argument("scans", nargs="+")
    sm.add_argument("--region", help="y0,x0,h,w (default: the whole mosaic)")
    args = p.parse_args(argv)

    if args.what == "make":
        stage: Any = args.stage
        if stage.strip().startswith("{"):
            stage = json.loads(stage)
        summary = make_scan(Path(args.out), size=args.size, rows=args.rows, cols=args.cols,
                            overlap=args.overlap, stage=stage, vignetting=args.vignetting,
                            seed=args.seed)  # fmt: skip
        print(json.dumps({k: summary.get(k) for k in ("reason", "tiles_done", "tiles_skipped",
                                                      "wall_s")}))  # fmt: skip
        return 0
    if args.what == "compare":
        results = [compare(Path(s), args.tools.split(",")) for s in args.scans]
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            for res in results:
                print(f"{res['scan']}: {res['tiles']} tiles {res['tile_shape']}, stage rms "
                      f"{res['stage']['rms_error_px']:.2f} px")  # fmt: skip
                for name in args.tools.split(","):
                    r = res[name]
                    if "error" in r:
                        print(f"  {name:10s} could not run: {r['error']}")
                    else:
                        print(f"  {name:10s} rms {r['rms_error_px']:.3f} px  max "
                              f"{r['max_error_px']:.3f} px  {r['seconds']:.2f} s")  # fmt: skip
        return 0
    region = tuple(int(v) for v in args.region.split(",")) if args.region else None
    for s in args.scans:
        print(json.dumps(seam_figures(Path(s), region)))  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
