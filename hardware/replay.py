"""The stack-replay microscope: a stage and a camera that serve a recorded focus stack.

Every focus method talks to `slidescan.focus.protocol.FocusDevice`; `ReplayMicroscope` is the
ordinary `Microscope` built from a `ReplayStage` and a `ReplayCamera`, so a method runs on a
recorded stack exactly as it would on hardware: it moves Z, snaps, reads the clock. The stack's
z range is the stage's Z soft limits (a move outside is refused with `LimitExceeded`); X and Y
are fixed at the field the stack was taken at.

A snap returns the plane at the current z, linearly interpolated between the two nearest
recorded planes (computed in float, rounded back to the stack's dtype). On a recorded plane it
returns that plane unchanged. Frame metadata carries `true_focus_um` and `defocus_um` when the
stack knows its true focus.

Time runs on a `VirtualClock` with the `ReplayTiming` model below, so an evaluation can report
how many seconds of hardware time a method would cost, separate from its compute time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from slidescan.hardware.base import CameraBase, Position, SoftLimits, StageBase
from slidescan.hardware.clock import Clock, VirtualClock
from slidescan.hardware.errors import LimitExceeded
from slidescan.hardware.microscope import Microscope
from slidescan.hardware.stackfile import FocusStack, StackOpticsLike


@dataclass(frozen=True)
class ReplayTiming:
    """Hardware time model of the replayed microscope. The defaults are the simulator's
    defaults (`SimStageConfig`, `SimCameraConfig`), so a replayed stack costs what the same
    moves and snaps cost on the default simulated microscope.

    - A Z move of distance d > 0 follows a trapezoidal velocity profile (acceleration
      `z_accel_um_per_s2` up to `z_speed_um_per_s`; triangular when d is too short to reach
      top speed; `None` acceleration means constant speed) and then settles for `z_settle_s`.
      A zero move is free.
    - A snap costs the light time (`strobe_ms` when the light is strobed, else the camera's
      current `exposure_ms`) plus `readout_s`. The recorded images do not change with exposure.
    - `stream_interval_s` is a *wall-clock* pause between live-view frames so streaming a
      replay does not spin a CPU core; it is not hardware time.

    Synthesised stack files record the timing of the simulator they came from (file attribute
    `replay_timing`); `timing_for(file)` reads it back.
    """

    z_speed_um_per_s: float = 2000.0
    z_accel_um_per_s2: float | None = 50000.0
    z_settle_s: float = 0.003
    exposure_ms: float = 10.0
    strobe_ms: float | None = None
    readout_s: float = 0.008
    stream_interval_s: float = 1.0 / 30.0

    def __post_init__(self) -> None:
        for name in ("z_speed_um_per_s", "z_accel_um_per_s2", "strobe_ms"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive, got {value}")
        for name in ("z_settle_s", "exposure_ms", "readout_s", "stream_interval_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be >= 0, got {value}")

    def z_move_s(self, distance_um: float) -> float:
        d = abs(float(distance_um))
        if d == 0.0:
            return 0.0
        v, a = self.z_speed_um_per_s, self.z_accel_um_per_s2
        if a is None:
            travel = d / v
        elif d <= v * v / a:  # never reaches top speed
            travel = 2.0 * math.sqrt(d / a)
        else:
            travel = d / v + v / a
        return travel + self.z_settle_s

    def snap_s(self, exposure_ms: float) -> float:
        light_ms = self.strobe_ms if self.strobe_ms is not None else exposure_ms
        return light_ms / 1000.0 + self.readout_s

    def to_dict(self) -> dict[str, float | None]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReplayTiming:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown replay timing field(s): {', '.join(sorted(unknown))}")
        return cls(**data)


def timing_for(stack_file: Any) -> tuple[ReplayTiming, str]:
    """The timing recorded in a focus-stack file (attribute `replay_timing`, JSON), else the
    default; with where it came from ("file" or "default")."""
    raw = getattr(stack_file, "attrs", {}).get("replay_timing")
    if raw is None:
        return ReplayTiming(), "default"
    try:
        return ReplayTiming.from_dict(json.loads(raw)), "file"
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad replay_timing attribute in the stack file: {exc}") from None


class StackInterpolator:
    """Image of a focus stack at any z inside its range, by linear interpolation in z."""

    def __init__(self, stack: FocusStack) -> None:
        order = np.argsort(stack.z_um)
        self.z_um = stack.z_um[order]
        self._images = stack.images
        self._order = order
        self.dtype = stack.images.dtype

    @property
    def z_range_um(self) -> tuple[float, float]:
        return float(self.z_um[0]), float(self.z_um[-1])

    def bracket(self, z_um: float) -> tuple[int, int, float]:
        """Sorted-plane indices (i, j) around `z_um` and the weight w of plane j (0 <= w <= 1)."""
        lo, hi = self.z_range_um
        if not (np.isfinite(z_um) and lo <= z_um <= hi):
            raise LimitExceeded(
                f"z = {z_um:.3f} um is outside the recorded stack's range [{lo:.3f}, {hi:.3f}] um"
            )
        j = int(np.searchsorted(self.z_um, z_um, side="left"))
        if j < len(self.z_um) and self.z_um[j] == z_um:
            return j, j, 0.0
        i = j - 1
        w = (z_um - self.z_um[i]) / (self.z_um[j] - self.z_um[i])
        return i, j, float(w)

    def image_at(self, z_um: float) -> np.ndarray:
        i, j, w = self.bracket(z_um)
        a = self._images[self._order[i]]
        if w == 0.0:
            return a.copy()
        b = self._images[self._order[j]]
        # (1 - w) a + w b in float, rounded to nearest and saturated to the dtype; cv2 does
        # this in one pass (~0.2 ms for 512 x 512 RGB, 30x faster than numpy temporaries).
        mixed = cv2.addWeighted(np.ascontiguousarray(a), 1.0 - w, np.ascontiguousarray(b), w, 0.0)
        return mixed.reshape(a.shape)


class ReplayStage(StageBase):
    """A stage whose Z travels within a recorded stack's z range; X and Y stay where the stack
    was taken (their soft limits are that single point). Moves advance the clock."""

    def __init__(
        self,
        z_range_um: tuple[float, float],
        *,
        x_um: float = 0.0,
        y_um: float = 0.0,
        start_z_um: float | None = None,
        clock: Clock | None = None,
        timing: ReplayTiming | None = None,
    ) -> None:
        lo, hi = (float(v) for v in z_range_um)
        super().__init__(limits=SoftLimits(x=(x_um, x_um), y=(y_um, y_um), z=(lo, hi)))
        self.clock: Clock = clock or VirtualClock()
        self.timing = timing or ReplayTiming()
        z0 = (lo + hi) / 2.0 if start_z_um is None else float(start_z_um)
        self.limits.check("z", z0)
        self._pos = {"x": float(x_um), "y": float(y_um), "z": z0}
        self.moves = 0
        self.z_travel_um = 0.0

    def _read_native(self) -> dict[str, float]:
        return dict(self._pos)

    def _move_native(self, targets: dict[str, float]) -> None:
        dz = targets.get("z", self._pos["z"]) - self._pos["z"]
        self._pos.update(targets)
        if dz != 0.0:
            self.moves += 1
            self.z_travel_um += abs(dz)
            self.clock.sleep(self.timing.z_move_s(dz))

    def _wait_native(self, timeout_s: float) -> None:
        """Moves complete instantly in wall time (their hardware time is on the clock)."""

    def _stop_native(self) -> None:
        """Nothing is ever in motion."""


class ReplayCamera(CameraBase):
    """A camera that returns the stack's image at the stage's current z."""

    def __init__(
        self,
        stack: FocusStack,
        z_source: Callable[[], float],
        *,
        pixel_size_um: float,
        clock: Clock | None = None,
        timing: ReplayTiming | None = None,
        position_source: Callable[[], Position] | None = None,
    ) -> None:
        self.timing = timing or ReplayTiming()
        super().__init__(
            exposure_ms=self.timing.exposure_ms,
            clock=clock or VirtualClock(),
            position_source=position_source,
        )
        self.stack = stack
        self._interp = StackInterpolator(stack)
        self._z_source = z_source
        self._pixel_size_um = float(pixel_size_um)
        self.frames_taken = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return self.stack.plane_shape

    @property
    def dtype(self) -> np.dtype:
        return self.stack.images.dtype

    @property
    def pixel_size_um(self) -> float:
        return self._pixel_size_um

    def _acquire(self) -> tuple[np.ndarray, dict[str, Any]]:
        z = float(self._z_source())
        image = self._interp.image_at(z)  # refuses a z outside the stack before time passes
        self.clock.sleep(self.timing.snap_s(self.exposure_ms))
        self.frames_taken += 1
        meta: dict[str, Any] = {"z_um": z, "stack_id": self.stack.id}
        if self.stack.true_focus_um is not None:
            meta["true_focus_um"] = float(self.stack.true_focus_um)
            meta["defocus_um"] = z - float(self.stack.true_focus_um)
        return image, meta

    def _stream_pause(self) -> None:
        time.sleep(self.timing.stream_interval_s)


class ReplayMicroscope(Microscope):
    """A `Microscope` (hence a `FocusDevice`) that replays one recorded focus stack.

    `optics` is what the focus method sees (the stack file's `optics`). The stage starts at
    `start_z_um` (default: the middle of the stack). `frames_taken`, `moves` and `now()` let
    an evaluation count what a method spent.
    """

    def __init__(
        self,
        stack: FocusStack,
        optics: StackOpticsLike,
        *,
        timing: ReplayTiming | None = None,
        clock: Clock | None = None,
        start_z_um: float | None = None,
    ) -> None:
        timing = timing or ReplayTiming()
        clock = clock or VirtualClock()
        x = float(stack.meta.get("x_um", 0.0))
        y = float(stack.meta.get("y_um", 0.0))
        stage = ReplayStage(
            stack.z_range_um, x_um=x, y_um=y, start_z_um=start_z_um, clock=clock, timing=timing
        )
        camera = ReplayCamera(
            stack,
            lambda: stage.position().z,
            pixel_size_um=optics.pixel_size_um,
            clock=clock,
            timing=timing,
            position_source=stage.position,
        )
        super().__init__(
            stage=stage,
            camera=camera,
            optics=optics,  # type: ignore[arg-type]  # any OpticsLike will do
            clock=clock,
            name=f"replay:{stack.id}",
        )
        self.stack = stack
        self.timing = timing
        self.replay_stage = stage
        self.replay_camera = camera

    def move_z(self, z_um: float) -> None:
        lo, hi = self.z_limits
        if not (np.isfinite(z_um) and lo <= z_um <= hi):
            raise LimitExceeded(
                f"z = {z_um:.3f} um is outside stack {self.stack.id!r}'s recorded range "
                f"[{lo:.3f}, {hi:.3f}] um"
            )
        super().move_z(z_um)

    @property
    def frames_taken(self) -> int:
        return self.replay_camera.frames_taken

    @property
    def moves(self) -> int:
        return self.replay_stage.moves
