"""Camera-to-stage calibration: the pixel size, the camera's rotation and whether it is mirrored,
measured by moving the stage by known steps and finding how far the image moved.

Convention (hardware/sim/mount.py uses the same): a specimen point seen at image pixel (u, v)
lies at stage position  stage + A @ ((u, v) - centre), A = pixel_size * R(rotation) @ F, where
F = diag(-1, 1) when the camera is mirrored and I otherwise. (A mirror in y is a mirror in x
turned by 180 degrees, so one flag is enough.) A camera mounted square has A = pixel_size * I.

A stage move d shifts the image content by s = -A^-1 d (the view moves with the stage, the
specimen against it). Two moves, along x and along y, give the two columns of B = -A^-1, so
A = -B^-1. Each move starts from a point `step` below the base on both axes, so every frame is
taken after the same approach and XY backlash does not enter. Shifts come from phase
correlation of the green channel with a Hann window (sub-pixel); each move is measured
forwards and, from the far point, the reverse shift averaged in, and each is repeated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from slidescan.hardware.microscope import Microscope

#: Below this phase-correlation peak a shift is not trusted (in-focus tissue gives 0.5-0.8;
#: bare glass about 0.1, tissue 15 um out of focus about 0).
MIN_RESPONSE = 0.2
#: Above this departure from a rotation times a scale, the moves or the shifts were wrong.
MAX_SKEW = 0.05


@dataclass(frozen=True)
class CameraCalibration:
    """What the calibration found. `matrix_um_per_px` is A of the module docstring;
    `skew` is how far A is from a rotation times a scale (0 for a perfect measurement; a few
    per cent means the moves or the shifts were not what they seemed); `response` the weakest
    phase-correlation peak (below ~0.1 the field had too little texture)."""

    matrix_um_per_px: np.ndarray
    pixel_size_um: float
    rotation_deg: float
    flipped: bool
    skew: float
    response: float
    step_um: float

    def stage_offset_um(self, du_px: float, dv_px: float) -> tuple[float, float]:
        """The stage displacement that brings a feature `(du, dv)` px from the image centre
        to the centre (click-to-move)."""
        d = self.matrix_um_per_px @ np.array([du_px, dv_px])
        return float(d[0]), float(d[1])

    def to_dict(self) -> dict[str, object]:
        return {
            "pixel_size_um": self.pixel_size_um,
            "rotation_deg": self.rotation_deg,
            "flipped": self.flipped,
            "matrix_um_per_px": self.matrix_um_per_px.tolist(),
            "skew": self.skew,
            "response": self.response,
            "step_um": self.step_um,
        }


def decompose(matrix_um_per_px: np.ndarray) -> tuple[float, float, bool, float]:
    """(pixel size, rotation in degrees, mirrored, skew) of A = p R(theta) F (+ skew)."""
    a = np.asarray(matrix_um_per_px, float)
    det = float(np.linalg.det(a))
    p = math.sqrt(abs(det))
    flipped = det < 0
    r = a / p
    if flipped:
        r = r @ np.diag([-1.0, 1.0])
    theta = math.degrees(math.atan2(r[1, 0] - r[0, 1], r[0, 0] + r[1, 1]))
    t = math.radians(theta)
    pure = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    skew = float(np.abs(r - pure).max())
    return p, theta, flipped, skew


def image_shift_px(before: np.ndarray, after: np.ndarray) -> tuple[float, float, float]:
    """How far the content moved from `before` to `after`: (columns, rows, peak response)."""
    a, b = _green(before), _green(after)
    window = cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F)
    (dx, dy), response = cv2.phaseCorrelate(a, b, window)
    return float(dx), float(dy), float(response)


def _green(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, np.float32)
    if img.ndim == 3:
        img = img[:, :, 1] if img.shape[2] >= 3 else img[:, :, 0]
    return np.ascontiguousarray(img)


def calibrate_camera(
    microscope: Microscope,
    step_um: float | None = None,
    repeats: int = 3,
    progress: Callable[[str], None] | None = None,
) -> CameraCalibration:
    """Measure A at the stage's current position (on tissue: it needs texture). `step_um`
    defaults to 0.3 of the field of view at the nominal pixel size (most of the field still
    overlaps; the scale comes out to about 0.1 %). Each axis is measured `repeats` times from
    a fresh approach and averaged: the stage's repeatability error shrinks with the count."""
    stage = microscope.stage
    h, w = (int(v) for v in microscope.camera.shape[:2])
    nominal = float(microscope.optics.pixel_size_um)
    step = float(step_um) if step_um is not None else 0.3 * min(h, w) * nominal
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"step must be a positive number of um, got {step_um}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    here = stage.position()
    x0, y0 = here.x, here.y
    moves, shifts, responses = [], [], []
    for axis, (dx, dy) in (("x", (step, 0.0)), ("y", (0.0, step))):
        if progress is not None:
            progress(f"moving {step:.1f} um along {axis}, {repeats} times")
        for _ in range(repeats):
            stage.move_to(x=x0 - step, y=y0 - step)  # the same approach for every frame
            stage.move_to(x=x0, y=y0)
            at_base = stage.position()
            base = microscope.snap().image
            stage.move_to(x=x0 + dx, y=y0 + dy)
            at_moved = stage.position()
            moved = microscope.snap().image
            su, sv, r1 = image_shift_px(base, moved)
            ru, rv, r2 = image_shift_px(moved, base)
            # the move the stage reports (a stepper rounds to whole steps, an encoder knows)
            moves.append([at_moved.x - at_base.x, at_moved.y - at_base.y])
            shifts.append([(su - ru) / 2.0, (sv - rv) / 2.0])
            responses += [r1, r2]
    stage.move_to(x=x0 - step, y=y0 - step)
    stage.move_to(x=x0, y=y0)
    response = float(min(responses))
    if response < MIN_RESPONSE:
        raise ValueError(
            f"too little texture to see the image move (phase-correlation peak {response:.2f} "
            f"< {MIN_RESPONSE}): move to tissue, focus, and try again"
        )
    # content shift (px) per um of stage move: least squares over every move, shifts = B moves
    d, sh = np.asarray(moves, float).T, np.asarray(shifts, float).T
    b = sh @ np.linalg.pinv(d)
    if abs(np.linalg.det(b)) < 1e-12:
        raise ValueError("the image did not move with the stage")
    a = -np.linalg.inv(b)
    p, theta, flipped, skew = decompose(a)
    if skew > MAX_SKEW:
        raise ValueError(
            f"the image did not move like a camera fixed to the microscope (skew {skew:.3f}): "
            "check the stage's axis units and signs in the profile"
        )
    return CameraCalibration(a, p, theta, flipped, skew, response, step)
