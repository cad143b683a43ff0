"""A microscope: one stage, one camera, one optical path and one clock.

It satisfies `slidescan.focus.protocol.FocusDevice` structurally (move_z, get_z, snap, optics,
z_limits, now), so every focus method runs unchanged on the simulator, on recorded stacks and
on real hardware.
"""

from __future__ import annotations

from dataclasses import dataclass

from slidescan.hardware.base import Camera, Frame, Stage
from slidescan.hardware.clock import Clock, RealClock
from slidescan.hardware.optics import OpticalPath


@dataclass
class Microscope:
    stage: Stage
    camera: Camera
    optics: OpticalPath
    clock: Clock
    name: str = "microscope"

    @classmethod
    def from_devices(
        cls, stage: Stage, camera: Camera, optics: OpticalPath, clock: Clock | None = None
    ) -> Microscope:
        return cls(stage=stage, camera=camera, optics=optics, clock=clock or RealClock())

    # -- FocusDevice -------------------------------------------------------------------------
    @property
    def z_limits(self) -> tuple[float, float]:
        return self.stage.limits.range("z")

    def move_z(self, z_um: float) -> None:
        self.stage.move_to(z=z_um, wait=True)

    def get_z(self) -> float:
        return self.stage.position().z

    def snap(self) -> Frame:
        return self.camera.snap()

    def now(self) -> float:
        return self.clock.now()

    # -- convenience -------------------------------------------------------------------------
    def move_xy(self, x_um: float, y_um: float) -> None:
        self.stage.move_to(x=x_um, y=y_um, wait=True)

    def close(self) -> None:
        for dev in (self.camera, self.stage):
            dev.close()
