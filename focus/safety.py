"""`ZGuard`: the only way a focus method moves Z.

Two jobs. Safety: every target is clamped to the device's `z_limits` before anything is
commanded, whatever was asked (a NaN is refused with `FocusError`, an infinity or a model's wild
prediction is clamped), so no focus method can drive the objective into the slide. Repeatability:
every target is approached from the same side. A focus drive's backlash (gear and lead-screw
play) means the position reached depends on the direction of the last move; if a target lies
below the current z the guard first goes `overshoot_um` further down (clamped) and then up to
the target, so every frame of a search, and the final one, is taken after an upward move.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from slidescan.focus.protocol import FocusDevice, FocusError, FrameLike, ZApproach, z_play_um

Approach = Literal["below", "above", "none"]

#: Default distance (um) past a target on the approach side: more than a focus drive's
#: backlash (0.5-3 um on a stepper-driven fine focus; the simulator's low-cost stage has 3 um).
DEFAULT_OVERSHOOT_UM = 5.0

#: Extra distance past a drive's *stated* play (um): the play of a real drive is measured, and
#: varies a little with load and wear.
PLAY_MARGIN_UM = 0.5

#: Step rounding of a drive's reported z: within this of the guard's last target the drive is
#: still where the guard put it; an approach from unknown history must travel at least the
#: overshoot less this (or half the overshoot when that is smaller).
APPROACH_SLACK_UM = 0.25

#: Positions closer than this (um) count as the same.
Z_TOLERANCE_UM = 1e-6


@dataclass(frozen=True)
class GuardedMove:
    """What one guarded move did: the target asked for, the z reached, and how."""

    requested_um: float
    z_um: float
    clamped: bool
    commands: tuple[float, ...]


def default_overshoot_um(device: FocusDevice) -> float:
    """How far past a target to start the approach on this device: its stated play plus
    `PLAY_MARGIN_UM`, nothing on a drive without play (or one that compensates itself), and
    `DEFAULT_OVERSHOOT_UM` when the device does not say."""
    play = z_play_um(device)
    if play is None:
        return DEFAULT_OVERSHOOT_UM
    return play + PLAY_MARGIN_UM if play > 0 else 0.0


class ZGuard:
    """Clamp every Z target to the soft limits and approach it from one side.

    `approach="below"` (the default) makes every move end upwards; `"above"` makes it end
    downwards; `"none"` moves directly (for drives without backlash). `overshoot_um` (default
    `default_overshoot_um(device)`: the drive's stated play plus a margin, 0 without play,
    `DEFAULT_OVERSHOOT_UM` when unknown) is how far past the target the approach starts.
    `moves` counts the commands sent to the device and `commanded` records them in order.
    """

    def __init__(
        self,
        device: FocusDevice,
        overshoot_um: float | None = None,
        approach: Approach = "below",
    ) -> None:
        if overshoot_um is None:
            overshoot_um = default_overshoot_um(device)
        if not (math.isfinite(overshoot_um) and overshoot_um >= 0):
            raise ValueError(f"overshoot_um must be a finite number >= 0, got {overshoot_um}")
        if approach not in ("below", "above", "none"):
            raise ValueError(f"approach must be 'below', 'above' or 'none', got {approach!r}")
        self.device = device
        self.overshoot_um = float(overshoot_um)
        self.approach: Approach = approach
        self.commanded: list[float] = []
        # Whether the guard itself made the last move that put the drive where it is.
        self._settled_at: float | None = None

    @property
    def moves(self) -> int:
        return len(self.commanded)

    def forget(self) -> None:
        """Something else moved Z: the next move must not assume the guard's last approach."""
        self._settled_at = None

    @property
    def needed_travel_um(self) -> float:
        """Travel along the approach direction that takes up the play from unknown history:
        the overshoot less the step-rounding slack."""
        return self.overshoot_um - min(APPROACH_SLACK_UM, 0.5 * self.overshoot_um)

    def adopt(self, approach: ZApproach | None) -> bool:
        """Count the drive as settled where someone else brought it (the scan runner, during
        the XY move) if that approach is one this guard would have made: it ended moving up
        ("below" guards only) by at least `needed_travel_um`, and the drive reports that z
        (within the step-rounding slack). Then a move to `approach.z_um` commands nothing.
        Returns whether it was adopted; if not, the guard's next move takes up the play itself.
        """
        if approach is None or self.approach != "below":
            return False
        z, travel = float(approach.z_um), float(approach.travel_um)
        if not (math.isfinite(z) and math.isfinite(travel)) or travel < self.needed_travel_um:
            return False
        if abs(float(self.device.get_z()) - z) > APPROACH_SLACK_UM:
            return False
        self._settled_at = z
        return True

    @property
    def limits(self) -> tuple[float, float]:
        """The device's Z soft limits, checked to be a finite, ordered pair."""
        lo, hi = (float(v) for v in self.device.z_limits)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise FocusError(f"device reports invalid z limits ({lo}, {hi})")
        return lo, hi

    def clamp(self, z_um: float) -> tuple[float, bool]:
        """`z_um` clamped to the limits, and whether it had to be. NaN raises `FocusError`."""
        z = float(z_um)
        if math.isnan(z):
            raise FocusError("refusing to move Z to NaN")
        lo, hi = self.limits
        clamped = min(max(z, lo), hi)
        return clamped, clamped != z

    def move_to(self, z_um: float) -> GuardedMove:
        """Move to `z_um` (clamped), approaching from the configured side."""
        target, clamped = self.clamp(z_um)
        current = float(self.device.get_z())
        at_target = abs(current - target) <= Z_TOLERANCE_UM
        commands: list[float] = []
        if self.approach == "none":
            if not at_target:
                commands.append(target)
        else:
            sign = -1.0 if self.approach == "below" else 1.0
            # Distance travelled towards the target along the approach direction (> 0: the
            # move ends the right way). A move ending the right way has taken up the play only
            # if the guard itself brought the drive here that way (the reported z may differ
            # from its last target by step rounding), or if it travels about an overshoot: a
            # shorter one - down to a single sub-step nudge - may leave the play open.
            travel = -sign * (target - current)
            known = (
                self._settled_at is not None
                and abs(current - self._settled_at) <= APPROACH_SLACK_UM
            )
            direct = travel >= -Z_TOLERANCE_UM and (known or travel >= self.needed_travel_um)
            if known and abs(target - self._settled_at) <= Z_TOLERANCE_UM:
                pass  # already there, approached the right way (the drive may round the z)
            elif not direct:
                pre, _ = self.clamp(target + sign * self.overshoot_um)
                if abs(pre - current) > Z_TOLERANCE_UM and abs(pre - target) > Z_TOLERANCE_UM:
                    commands.append(pre)
                if commands or not at_target:
                    commands.append(target)
            elif not at_target:
                commands.append(target)
        for z in commands:
            lo, hi = self.limits
            if not lo <= z <= hi:  # defence in depth; clamp() makes this unreachable
                raise FocusError(f"internal error: z {z} outside limits [{lo}, {hi}]")
            self.device.move_z(z)
            self.commanded.append(z)
        self._settled_at = target
        return GuardedMove(float(z_um), target, clamped, tuple(commands))

    def snap_at(self, z_um: float) -> tuple[FrameLike, GuardedMove]:
        """Move to `z_um` through the guard and take one frame; returns (frame, move)."""
        move = self.move_to(z_um)
        return self.device.snap(), move
