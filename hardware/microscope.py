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

    @property
    def z_backlash_um(self) -> float | None:
        """Play of the focus drive a focus method must take up (see `StageBase.z_play_um`)."""
        play = getattr(self.stage, "z_play_um", None)
        return None if play is None else float(play)

    def snap(self) -> Frame:
        return self.camera.snap()

    def now(self) -> float:
        return self.clock.now()

    # -- convenience -------------------------------------------------------------------------
    def move_xy(self, x_um: float, y_um: float) -> None:
        self.stage.move_to(x=x_um, y=y_um, wait=True)

    def move_xyz(
        self, x_um: float, y_um: float, z_um: float, via_z_um: float | None = None
    ) -> None:
        """One move of all three axes together: Z travels while the stage crosses to the next
        field, so a focus method's first position costs no extra time. With `via_z_um`, Z
        goes there first and then to `z_um` (an approach from below that takes up the drive's
        play): during the XY move where the stage can (`StageBase.move_via`), else after it."""
        if via_z_um is None:
            self.stage.move_to(x=x_um, y=y_um, z=z_um, wait=True)
            return
        move_via = getattr(self.stage, "move_via", None)
        if move_via is not None:
            move_via(x_um, y_um, z_um, via_z_um, wait=True)
        else:
            self.stage.move_to(x=x_um, y=y_um, z=via_z_um, wait=True)
            self.stage.move_to(z=z_um, wait=True)

    def close(self) -> None:
        for dev in (self.camera, self.stage):
            dev.close()
