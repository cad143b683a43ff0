"""The whole slide at low resolution, before the scan: where to look for tissue, and the macro
image an exported slide carries.

On the simulator the slide's truth gives it (`SlideTruth.overview`: the specimen's optical
density rendered without optics, as a macro camera would see it). On hardware, a fast pre-scan:
the slide area is covered by non-overlapping fields with no autofocus, at the z of a plane
through a few focused points, each frame averaged down to the overview's pixel size and pasted
at its stage position. It is meant for the profile's lowest-magnification objective: at 20x a
75 x 25 mm slide is thousands of fields.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from slidescan.app.records import Overview
from slidescan.focus.classical import ZSweep
from slidescan.focus.drive import FocusDrive
from slidescan.focus.protocol import FocusHint
from slidescan.hardware.microscope import Microscope

#: Default overview pixel (um): a 75 x 25 mm slide is 3000 x 1000 px.
OVERVIEW_PIXEL_UM = 25.0
#: Glass kept around the simulated slide's tissue area in its overview (um).
SIMULATOR_MARGIN_UM = 1000.0


def acquire_overview(
    microscope: Microscope,
    *,
    area_um: tuple[float, float, float, float] | None = None,
    pixel_size_um: float = OVERVIEW_PIXEL_UM,
    progress: Callable[[int, int], None] | None = None,
) -> Overview:
    """The slide's overview: the simulator's truth, else a pre-scan of `area_um` (x0, y0, x1,
    y1 in stage um: the slide holder's opening, from the hardware profile)."""
    truth = microscope.truth
    if truth is not None:
        image = truth.overview(pixel_size_um, SIMULATOR_MARGIN_UM)
        x0, y0, _, _ = truth.slide_bounds_um
        m = SIMULATOR_MARGIN_UM
        return Overview(image, x0 - m, y0 - m, pixel_size_um)
    if area_um is None:
        raise ValueError(
            "a pre-scan needs the slide area: give it in the hardware profile (slide_area_um)"
        )
    return prescan_overview(microscope, area_um, pixel_size_um, progress=progress)


def prescan_overview(
    microscope: Microscope,
    area_um: tuple[float, float, float, float],
    pixel_size_um: float = OVERVIEW_PIXEL_UM,
    *,
    focus_points: int = 3,
    progress: Callable[[int, int], None] | None = None,
) -> Overview:
    """Cover `area_um` with fields edge to edge, no autofocus, Z on a plane through
    `focus_points` z-sweeps (inset from the corners), each frame block-averaged to
    `pixel_size_um` and pasted where the stage says it was."""
    x0, y0, x1, y1 = (float(v) for v in area_um)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"slide area {area_um}: need x1 > x0 and y1 > y0")
    cam_px = float(microscope.optics.pixel_size_um)
    h, w = (int(v) for v in microscope.camera.shape[:2])
    fov_w, fov_h = w * cam_px, h * cam_px
    if pixel_size_um < cam_px:
        raise ValueError(
            f"an overview pixel ({pixel_size_um} um) finer than the camera's ({cam_px:.3f} um)"
        )
    plane = _focus_plane(microscope, (x0, y0, x1, y1), focus_points)
    cols, rows = math.ceil((x1 - x0) / fov_w), math.ceil((y1 - y0) / fov_h)
    out_w, out_h = math.ceil((x1 - x0) / pixel_size_um), math.ceil((y1 - y0) / pixel_size_um)
    image = np.full((out_h, out_w, 3), 255, np.uint8)
    drive = FocusDrive(microscope)
    done, total = 0, rows * cols
    for r in range(rows):
        order = range(cols) if r % 2 == 0 else range(cols - 1, -1, -1)
        for c in order:
            x, y = x0 + (c + 0.5) * fov_w, y0 + (r + 0.5) * fov_h
            microscope.move_xy(x, y)
            frame, _ = drive.snap_at(plane(x, y))
            left, top = x - fov_w / 2 - x0, y - fov_h / 2 - y0
            edges = (left, top, left + fov_w, top + fov_h)
            _paste(image, _to_rgb8(np.asarray(frame.image)), edges, pixel_size_um)
            done += 1
            if progress is not None:
                progress(done, total)
    return Overview(image, x0, y0, pixel_size_um)


def _focus_plane(
    microscope: Microscope, area: tuple[float, float, float, float], points: int
) -> Callable[[float, float], float]:
    """z(x, y) of a plane through z-sweeps at `points` spots inset from the area's corners
    (a constant z with fewer than three)."""
    x0, y0, x1, y1 = area
    spots = [
        (x0 + 0.25 * (x1 - x0), y0 + 0.25 * (y1 - y0)),
        (x0 + 0.75 * (x1 - x0), y0 + 0.25 * (y1 - y0)),
        (x0 + 0.5 * (x1 - x0), y0 + 0.75 * (y1 - y0)),
    ][: max(1, points)]
    drive = FocusDrive(microscope)
    sweep = ZSweep()
    found = []
    z = drive.get_z()
    for x, y in spots:
        microscope.move_xy(x, y)
        result = sweep.focus(drive, FocusHint(z))
        if result.ok and result.z_um is not None:
            z = float(result.z_um)
            found.append((x, y, z))
    if len(found) < 3:
        level = float(np.median([p[2] for p in found])) if found else z
        return lambda x, y: level
    a = np.array([[1.0, px, py] for px, py, _ in found])
    coef = np.linalg.lstsq(a, np.array([pz for _, _, pz in found]), rcond=None)[0]
    return lambda x, y: float(coef[0] + coef[1] * x + coef[2] * y)


def _to_rgb8(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        full = float(np.iinfo(image.dtype).max) if np.issubdtype(image.dtype, np.integer) else 1.0
        image = np.clip(np.rint(image.astype(np.float32) / full * 255.0), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return image


def _paste(
    canvas: np.ndarray, frame: np.ndarray, edges_um: tuple[float, float, float, float], pixel: float
) -> None:
    """Average `frame` down onto the canvas pixels between its edges (left, top, right,
    bottom in um from the canvas origin, rounded to whole pixels so neighbouring fields meet
    without gaps), clipped to the canvas."""
    j0, i0 = round(edges_um[0] / pixel), round(edges_um[1] / pixel)
    j1, i1 = round(edges_um[2] / pixel), round(edges_um[3] / pixel)
    if j1 <= j0 or i1 <= i0:
        return
    small = cv2.resize(frame, (j1 - j0, i1 - i0), interpolation=cv2.INTER_AREA)
    ch, cw = canvas.shape[:2]
    ci0, cj0, ci1, cj1 = max(i0, 0), max(j0, 0), min(i1, ch), min(j1, cw)
    if ci1 > ci0 and cj1 > cj0:
        canvas[ci0:ci1, cj0:cj1] = small[ci0 - i0 : ci1 - i0, cj0 - j0 : cj1 - j0]
