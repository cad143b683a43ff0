"""How the simulated camera sits on the microscope: turned by a small angle and/or mirrored
relative to the stage axes, as a real camera often is. The camera-to-stage calibration
(`slidescan hw calibrate-camera`) measures exactly this, so the simulator can test it.

Convention (also the calibration's): a specimen point seen at image pixel (u, v) (column, row)
lies at stage position  stage + pixel_size * M @ ((u, v) - centre), where
M = R(rotation) @ diag(-1 if flip_x else 1, -1 if flip_y else 1). A camera mounted square has
M = I: columns run along +x, rows along +y.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def mount_matrix(rotation_deg: float, flip_x: bool, flip_y: bool) -> np.ndarray:
    """M (2 x 2) of the module docstring."""
    t = math.radians(rotation_deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return rot @ np.diag([-1.0 if flip_x else 1.0, -1.0 if flip_y else 1.0])


def mount_image(image: np.ndarray, rotation_deg: float, flip_x: bool, flip_y: bool) -> np.ndarray:
    """The camera's view of a stage-aligned `image` (H, W[, C], any dtype; same shape out):
    camera pixel (u, v) shows the aligned image at centre + M @ ((u, v) - centre). Pixels
    whose source falls outside are filled by reflection (keep angles small)."""
    if rotation_deg == 0 and not flip_x and not flip_y:
        return image
    h, w = image.shape[:2]
    if rotation_deg == 0:  # mirrors only: exact
        out = image[:, ::-1] if flip_x else image
        return np.ascontiguousarray(out[::-1] if flip_y else out)
    m = mount_matrix(rotation_deg, flip_x, flip_y)
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    affine = np.hstack([m, (centre - m @ centre)[:, None]]).astype(np.float64)
    src = np.ascontiguousarray(image)
    return cv2.warpAffine(
        src,
        affine,
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT_101,
    ).reshape(image.shape)
