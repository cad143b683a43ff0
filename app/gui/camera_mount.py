"""How the camera sits on the stage, for the views: where an image pixel lies on the stage.

The hardware profile's `camera_mount` (measured by `slidescan hw calibrate-camera`) says the
camera is turned by `rotation_deg` and maybe mirrored. The convention is the calibration's
(app/camera_calibration.py): a specimen point at image pixel (u, v) lies at stage position
``centre + pixel * R(rotation) @ F @ ((u, v) - (W/2, H/2))``, F mirroring x when `flipped`.
A square camera (no calibration) is the identity: columns run along +x, rows along +y.

The live view uses it to turn a double-click into a stage target; the tile map to draw the
field of view and each tile's footprint turned as the camera sees it, and thumbnails the
right way round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6 import QtCore, QtGui


@dataclass(frozen=True)
class CameraMount:
    rotation_deg: float = 0.0
    flipped: bool = False

    @classmethod
    def of(cls, profile: Any) -> CameraMount:
        """The mount of a `HardwareProfile` or of a profile dict (as a scan file stores it);
        square when the profile has none."""
        if profile is None:
            return cls()
        mount = (
            profile.get("camera_mount")
            if isinstance(profile, dict)
            else getattr(profile, "camera_mount", None)
        )
        if not mount:
            return cls()
        if isinstance(mount, dict):
            return cls(float(mount.get("rotation_deg", 0.0)), bool(mount.get("flipped", False)))
        return cls(float(mount.rotation_deg), bool(mount.flipped))

    @property
    def square(self) -> bool:
        return self.rotation_deg == 0.0 and not self.flipped

    def matrix(self) -> np.ndarray:
        """R(rotation) @ F (2 x 2): image axes (u, v) to stage axes (x, y), unit scale."""
        t = math.radians(self.rotation_deg)
        rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
        return rot @ np.diag([-1.0 if self.flipped else 1.0, 1.0])

    def pixel_to_stage(
        self,
        col: float,
        row: float,
        shape: tuple[int, ...],
        centre_xy: tuple[float, float],
        pixel_size_um: float,
    ) -> tuple[float, float]:
        """Stage (x, y) um of image point (col, row) of a frame of `shape` centred on
        `centre_xy`."""
        h, w = shape[0], shape[1]
        d = pixel_size_um * self.matrix() @ np.array([col - w / 2.0, row - h / 2.0])
        return centre_xy[0] + float(d[0]), centre_xy[1] + float(d[1])

    def footprint(self, cx: float, cy: float, w_um: float, h_um: float) -> np.ndarray:
        """The four corners (4, 2) of a field of `w_um` x `h_um` centred at (cx, cy), in the
        order of the image's corners (0, 0), (W, 0), (W, H), (0, H)."""
        half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) * [w_um / 2, h_um / 2]
        return half @ self.matrix().T + [cx, cy]

    def polygon(self, cx: float, cy: float, w_um: float, h_um: float) -> QtGui.QPolygonF:
        return QtGui.QPolygonF(
            [QtCore.QPointF(float(x), float(y)) for x, y in self.footprint(cx, cy, w_um, h_um)]
        )

    def image_transform(
        self, cx: float, cy: float, w_um: float, h_um: float, shape: tuple[int, ...]
    ) -> QtGui.QTransform:
        """Image pixels to stage um for an image of `shape` (a tile or its thumbnail) showing
        the field of `w_um` x `h_um` centred at (cx, cy): set on an ImageItem, it shows the
        image where and how the specimen lies (turned, and mirrored back)."""
        h, w = shape[0], shape[1]
        a = self.matrix() @ np.diag([w_um / w, h_um / h])
        t = np.array([cx, cy]) - a @ np.array([w / 2.0, h / 2.0])
        # QTransform(m11, m12, m21, m22, dx, dy): x' = m11 u + m21 v + dx, y' = m12 u + m22 v + dy
        return QtGui.QTransform(a[0, 0], a[1, 0], a[0, 1], a[1, 1], t[0], t[1])
