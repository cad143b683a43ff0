"""The main window's permanent status-bar fields: profile, stage position, camera, frame rate
and scan state."""

from __future__ import annotations

from PySide6 import QtWidgets

from slidescan.hardware.base import Position
from slidescan.hardware.microscope import Microscope


class StatusFields:
    def __init__(self, bar: QtWidgets.QStatusBar) -> None:
        self.profile = QtWidgets.QLabel("no hardware")
        self.stage = QtWidgets.QLabel("stage: --")
        self.camera = QtWidgets.QLabel("camera: --")
        self.fps = QtWidgets.QLabel("-- fps")
        self.scan = QtWidgets.QLabel("scan: idle")
        for w in (self.profile, self.stage, self.camera, self.fps, self.scan):
            w.setContentsMargins(6, 0, 6, 0)
            bar.addPermanentWidget(w)

    def show_position(self, p: Position) -> None:
        self.stage.setText(f"X {p.x:.1f}  Y {p.y:.1f}  Z {p.z:.2f} µm")

    def show_microscope(self, microscope: Microscope, profile_name: str) -> None:
        cam = microscope.camera
        shape = tuple(cam.shape)
        pixel = float(microscope.optics.pixel_size_um)
        kind = "RGB" if len(shape) == 3 else "mono"
        self.camera.setText(f"camera {shape[1]}×{shape[0]} {kind} {cam.dtype}, {pixel:.3f} µm/px")
        objective = microscope.optics.objective_name or "?"
        self.profile.setText(f"profile: {profile_name or 'custom'} ({objective})")
