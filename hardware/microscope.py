"""A microscope: one stage, one camera, one optical path and one clock.

It satisfies `slidescan.focus.protocol.FocusDevice` structurally (move_z, get_z, snap, optics,
z_limits, z_play_um, now), so every focus method runs unchanged on the simulator, on recorded
stacks and on real hardware.

`truth` is what only a simulator knows (`slidescan.hardware.truth.SlideTruth`); None on real
hardware. Callers ask it instead of probing the microscope for simulator attributes.
"""

from __future__ import annotations

from dataclasses import dataclass

from slidescan.hardware.base import Camera, Frame, Stage
from slidescan.hardware.clock import Clock
from slidescan.hardware.optics import OpticalPath
from slidescan.hardware.truth import SlideTruth


@dataclass
class Microscope:
    stage: Stage
    camera: Camera
    optics: OpticalPath
    clock: Clock
    name: str = "microscope"

    @property
    def truth(self) -> SlideTruth | None:
        """What only a simulator knows; None for real hardware (and recorded stacks)."""
        return None

    # -- FocusDevice -------------------------------------------------------------------------
    @property
    def z_limits(self) -> tuple[float, float]:
        return self.stage.limits.range("z")

    def move_z(self, z_um: float) -> None:
        self.stage.move_to(z=z_um, wait=True)

    def get_z(self) -> float:
        return self.stage.position().z

    @property
    def z_play_um(self) -> float | None:
        """Play of the focus drive a caller must take up itself (`Stage.z_play_um`)."""
        play = self.stage.z_play_um
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
        play): during the XY move where the stage can (`Stage.move_via`), else after it."""
        if via_z_um is None:
            self.stage.move_to(x=x_um, y=y_um, z=z_um, wait=True)
        else:
            self.stage.move_via(x_um, y_um, z_um, via_z_um, wait=True)

    def close(self) -> None:
        for dev in (self.camera, self.stage):
            dev.close()
