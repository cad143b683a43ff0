"""The camera's mounting (measured by `slidescan hw calibrate-camera`, kept in the hardware
profile the scan file records): how stitching turns stage positions into mosaic pixels and
reads the tiles.

A specimen point at image pixel (u, v) lies at stage + p R(theta) F ((u, v) - centre)
(app/camera_calibration.py). A mirrored camera's tiles are mirrored back as they are read
(exact, no resampling), so the slide is never exported mirror-imaged; the small rotation is
kept: tiles are placed in the camera's frame, turned by theta against the stage axes, which
registration handles and which needs no resampling of the tiles either.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from slidescan.app.stitch.geometry import StageToMosaic


def mount_of(profile: dict) -> tuple[float, bool]:
    """(rotation in degrees, mirrored) from a profile (as the scan file stores it)."""
    mount = profile.get("camera_mount") or {}
    return float(mount.get("rotation_deg", 0.0)), bool(mount.get("flipped", False))


def transform_for(reader) -> StageToMosaic:
    """Stage um to mosaic pixels for the scan `reader` reads: (p R(theta))^-1."""
    rotation, _ = mount_of(reader.profile)
    p = float(reader.pixel_size_um)
    if rotation == 0.0:
        return StageToMosaic.from_pixel_size(p)
    t = math.radians(rotation)
    a = p * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    inv = np.linalg.inv(a)
    return StageToMosaic(((inv[0, 0], inv[0, 1]), (inv[1, 0], inv[1, 1])))


def tile_images(reader) -> Callable[[int], np.ndarray | None]:
    """`reader.image`, with a mirrored camera's tiles mirrored back."""
    _, flipped = mount_of(reader.profile)
    if not flipped:
        return reader.image

    def image(row: int) -> np.ndarray | None:
        tile = reader.image(row)
        return None if tile is None else np.ascontiguousarray(tile[:, ::-1])

    return image
