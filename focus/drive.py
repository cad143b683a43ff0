"""`FocusDrive`: the one object that commands the focus drive.

A scan builds one for its microscope and keeps it for the whole scan; the focus eval builds one
per trial around the replayed stack. Focus methods get it and ask it for moves and shots; they
never command the device themselves, and nothing else moves Z while a scan runs.

Two jobs. Safety: every target is clamped to the device's soft limits before anything is
commanded, whatever was asked (a NaN is refused with `FocusError`, an infinity or a model's
wild prediction is clamped), so no focus method can drive the objective into the slide.
Repeatability: every target is approached from the same side. A focus drive's play (gear and
lead-screw backlash) means the position reached depends on the direction of the last move; if
a target lies below the current z the drive first goes `overshoot_um` further down (clamped)
and then up to the target, so every frame of a search, and the final one, is taken after an
upward move. The drive remembers where it settled, so a later move up from there needs no
take-up; it notices when something else moved Z (the device no longer reports that z).

The overshoot is the drive's stated play (`FocusDevice.z_play_um`) plus `PLAY_MARGIN_UM`,
nothing on a drive without play, `DEFAULT_OVERSHOOT_UM` when the device does not say.

`approach(z, carry)` lets the scan engine bring Z to a method's first position during the XY
move to a tile: the drive chooses the point below (`via`) and `carry(z, via)` makes the one
combined stage move, so the approach is still the drive's own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from slidescan.focus.protocol import FocusDevice, FocusError, FrameLike, OpticsLike

Side = Literal["below", "above", "none"]

#: Default distance (um) past a target on the approach side: more than a focus drive's
#: backlash (0.5-3 um on a stepper-driven fine focus; the simulator's low-cost stage has 3 um).
DEFAULT_OVERSHOOT_UM = 5.0

#: Extra distance past a drive's *stated* play (um): the play of a real drive is measured, and
#: varies a little with load and wear.
PLAY_MARGIN_UM = 0.5

#: Step rounding of a drive's reported z: within this of the drive's last target it is still
#: where it was put; an approach from unknown history must travel at least the overshoot less
#: this (or half the overshoot when that is smaller).
APPROACH_SLACK_UM = 0.25

#: Positions closer than this (um) count as the same.
Z_TOLERANCE_UM = 1e-6


@dataclass(frozen=True)
class GuardedMove:
    """What one move did: the target asked for, the z reached, and the commands sent."""

    requested_um: float
    z_um: float
    clamped: bool
    commands: tuple[float, ...]


def play_um(device: FocusDevice) -> float | None:
    """The device's stated play, or None when it does not say or says nonsense."""
    try:
        play = device.z_play_um
        if play is None:
            return None
        play = float(play)
    except (TypeError, ValueError):
        return None
    return play if math.isfinite(play) and play >= 0 else None


def default_overshoot_um(device: FocusDevice) -> float:
    """How far past a target to start the approach on this device (module docstring)."""
    play = play_um(device)
    if play is None:
        return DEFAULT_OVERSHOOT_UM
    return play + PLAY_MARGIN_UM if play > 0 else 0.0


class FocusDrive:
    """Clamp every Z target to the soft limits and approach it from one side.

    `side="below"` (the default) makes every move end upwards; `"above"` downwards; `"none"`
    moves directly (drives without backlash). `overshoot_um` (default
    `default_overshoot_um(device)`) is how far past the target the approach starts.
    `commanded` records every Z command sent, `frames` counts the snaps taken through it.
    """

    def __init__(
        self,
        device: FocusDevice,
        overshoot_um: float | None = None,
        side: Side = "below",
    ) -> None:
        if overshoot_um is None:
            overshoot_um = default_overshoot_um(device)
        if not (math.isfinite(overshoot_um) and overshoot_um >= 0):
            raise ValueError(f"overshoot_um must be a finite number >= 0, got {overshoot_um}")
        if side not in ("below", "above", "none"):
            raise ValueError(f"side must be 'below', 'above' or 'none', got {side!r}")
        self.device = device
        self.overshoot_um = float(overshoot_um)
        self.side: Side = side
        self.commanded: list[float] = []
        self.frames = 0
        # Where the drive settled after a move it made (or an approach it chose): the z it was
        # put at, moving the configured way with the play taken up. None: unknown history.
        self._settled_at: float | None = None

    # -- what the device offers, read through the drive ----------------------------------------
    @property
    def optics(self) -> OpticsLike:
        return self.device.optics

    def now(self) -> float:
        return float(self.device.now())

    def get_z(self) -> float:
        return float(self.device.get_z())

    @property
    def moves(self) -> int:
        return len(self.commanded)

    @property
    def limits(self) -> tuple[float, float]:
        """The device's Z soft limits, checked to be a finite, ordered pair."""
        lo, hi = (float(v) for v in self.device.z_limits)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise FocusError(f"device reports invalid z limits ({lo}, {hi})")
        return lo, hi

    @property
    def needed_travel_um(self) -> float:
        """Travel along the approach direction that takes up the play from unknown history:
        the overshoot less the step-rounding slack."""
        return self.overshoot_um - min(APPROACH_SLACK_UM, 0.5 * self.overshoot_um)

    def forget(self) -> None:
        """Something else moved Z: the next move must not assume the last approach."""
        self._settled_at = None

    def clamp(self, z_um: float) -> tuple[float, bool]:
        """`z_um` clamped to the limits, and whether it had to be. NaN raises `FocusError`."""
        z = float(z_um)
        if math.isnan(z):
            raise FocusError("refusing to move Z to NaN")
        lo, hi = self.limits
        clamped = min(max(z, lo), hi)
        return clamped, clamped != z

    # -- moves and shots -------------------------------------------------------------------------
    def move_to(self, z_um: float) -> GuardedMove:
        """Move to `z_um` (clamped), approaching from the configured side."""
        target, clamped = self.clamp(z_um)
        current = self.get_z()
        at_target = abs(current - target) <= Z_TOLERANCE_UM
        commands: list[float] = []
        if self.side == "none":
            if not at_target:
                commands.append(target)
        else:
            sign = -1.0 if self.side == "below" else 1.0
            # Distance travelled towards the target along the approach direction (> 0: the
            # move ends the right way). A move ending the right way has taken up the play only
            # if the drive itself settled here that way (the reported z may differ from its
            # last target by step rounding), or if it travels about an overshoot: a shorter
            # one - down to a single sub-step nudge - may leave the play open.
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
            self._command(z)
        self._settled_at = target
        return GuardedMove(float(z_um), target, clamped, tuple(commands))

    def snap(self) -> FrameLike:
        """One frame where the drive stands."""
        self.frames += 1
        return self.device.snap()

    def snap_at(self, z_um: float) -> tuple[FrameLike, GuardedMove]:
        """Move to `z_um` through the drive and take one frame; returns (frame, move)."""
        move = self.move_to(z_um)
        return self.snap(), move

    def approach(self, z_um: float, carry: Callable[[float, float | None], None]) -> float:
        """Bring the drive to `z_um` (clamped) from below inside a move someone else makes:
        `carry(z, via)` must move Z to `via` and then to `z` (None: straight to `z`), together
        with whatever else moves (the stage's XY). `via` is the overshoot point below `z`
        (clamped to the limits). Afterwards the drive counts as settled at `z` when the last
        leg took up the play and the device reports `z`; otherwise its next move takes the
        play up itself. Returns the z. Only for a drive that approaches from below."""
        if self.side != "below":
            raise FocusError("an approach inside another move needs a drive approaching from below")
        z, _ = self.clamp(z_um)
        via, _ = self.clamp(z - self.overshoot_um)
        lo, hi = self.limits
        for target in (via, z):
            if not lo <= target <= hi:  # defence in depth; clamp() makes this unreachable
                raise FocusError(f"internal error: z {target} outside limits [{lo}, {hi}]")
        carry(z, via if z - via > Z_TOLERANCE_UM else None)
        self._settled_at = None
        travel = z - via
        if travel >= self.needed_travel_um and abs(self.get_z() - z) <= APPROACH_SLACK_UM:
            self._settled_at = z
        return z

    def _command(self, z: float) -> None:
        lo, hi = self.limits
        if not lo <= z <= hi:  # defence in depth; clamp() makes this unreachable
            raise FocusError(f"internal error: z {z} outside limits [{lo}, {hi}]")
        self.device.move_z(z)
        self.commanded.append(z)
