"""Simulated XYZ stage on a virtual clock: steps, backlash, repeatability and motion timing.

Like an open-loop stepper stage, it *reports* the commanded position (quantised to whole
steps) while the *true* position, the one the camera sees, differs by:

* backlash (mechanical play of width b): the true position follows the command exactly while
  moving up (+); after a reversal the drive first takes up the play, so moving down the true
  position stays b above the command (`true = min(max(true_prev, cmd), cmd + b)`).
  StageBase's software compensation (approach every target from below by going
  `compensate_*_um` further down first) removes it when compensate >= b;
* repeatability: each move of an axis ends with a fresh random error (`z_repeatability_um`,
  `xy_jitter_um`, standard deviations, seeded).

Moves follow a trapezoidal velocity profile per axis (acceleration, top speed; triangular for
short moves), axes move together, and a settle time follows (the longest of the moving axes',
counted from the end of the last axis's motion). `move_via` runs a Z via point inside the XY
move: Z's two legs, each from rest to rest, one after the other. The shared `VirtualClock`
advances by the move's duration when someone waits on it. `position()` and `true_position()`
interpolate along the profile while a move is in progress (`wait=False`).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from slidescan.hardware.base import AXES, Position, SoftLimits, StageBase
from slidescan.hardware.clock import VirtualClock
from slidescan.hardware.errors import DeviceTimeout
from slidescan.hardware.sim.config import SimStageConfig


def trapezoid_time_s(distance_um: float, speed_um_s: float, accel_um_s2: float) -> float:
    """Duration of a trapezoidal (or, if short, triangular) move of `distance_um`."""
    d = abs(distance_um)
    if d == 0:
        return 0.0
    if d <= speed_um_s**2 / accel_um_s2:
        return 2.0 * math.sqrt(d / accel_um_s2)
    return d / speed_um_s + speed_um_s / accel_um_s2


def trapezoid_fraction(t_s: float, distance_um: float, speed: float, accel: float) -> float:
    """Fraction of `distance_um` covered `t_s` after the start of the move."""
    d = abs(distance_um)
    total = trapezoid_time_s(d, speed, accel)
    if d == 0 or t_s >= total:
        return 1.0
    if t_s <= 0:
        return 0.0
    t_acc = min(speed / accel, total / 2.0)
    v_peak = accel * t_acc
    if t_s < t_acc:
        s = 0.5 * accel * t_s**2
    elif t_s < total - t_acc:
        s = 0.5 * accel * t_acc**2 + v_peak * (t_s - t_acc)
    else:
        s = d - 0.5 * accel * (total - t_s) ** 2
    return min(max(s / d, 0.0), 1.0)


@dataclass
class _Move:
    start_s: float
    end_s: float  # includes settling
    cmd_from: dict[str, float]
    cmd_to: dict[str, float]
    true_from: dict[str, float]
    true_to: dict[str, float]
    #: A Z via point (`move_via`): (duration of the first leg, commanded z, true z there)
    z_via: tuple[float, float, float] | None = None


class SimStage(StageBase):
    """A simulated stage; native units are um (identity calibration)."""

    can_home = True

    def __init__(
        self,
        config: SimStageConfig,
        clock: VirtualClock,
        seed: int,
        start_um: tuple[float, float, float] | None = None,
    ) -> None:
        limits = SoftLimits(x=config.x_limits_um, y=config.y_limits_um, z=config.z_limits_um)
        super().__init__(
            limits=limits,
            backlash_um={
                "x": config.compensate_xy_um,
                "y": config.compensate_xy_um,
                "z": config.compensate_z_um,
            },
        )
        self.config = config
        self.clock = clock
        self._rng = np.random.default_rng(seed)
        if start_um is None:
            start_um = tuple(sum(limits.range(a)) / 2 for a in AXES)  # type: ignore[assignment]
        start = {
            a: self._quantise(a, limits.clamp(a, v)) for a, v in zip(AXES, start_um, strict=True)
        }
        self._cmd = dict(start)
        self._mech = dict(start)
        self._err = {a: 0.0 for a in AXES}
        self._move: _Move | None = None
        self._lock = threading.RLock()
        self.moves = 0

    # -- mechanics ----------------------------------------------------------------------------
    def _step(self, axis: str) -> float:
        return self.config.z_step_um if axis == "z" else self.config.xy_step_um

    def _play(self, axis: str) -> float:
        return self.config.z_backlash_um if axis == "z" else self.config.xy_backlash_um

    def _quantise(self, axis: str, value: float) -> float:
        step = self._step(axis)
        lo, hi = self.limits.range(axis)
        q = round(value / step) * step
        if q > hi + 1e-9:
            q -= step
        if q < lo - 1e-9:
            q += step
        return round(q, 9)

    def _timing(self, axis: str) -> tuple[float, float]:
        c = self.config
        if axis == "z":
            return c.z_speed_um_s, c.z_accel_um_s2
        return c.xy_speed_um_s, c.xy_accel_um_s2

    def _at(self, now: float) -> tuple[dict[str, float], dict[str, float]]:
        """(reported, true) positions at clock time `now`."""
        m = self._move
        true_now = {a: self._mech[a] + self._err[a] for a in AXES}
        if m is None or now >= m.end_s:
            return dict(self._cmd), true_now
        cmd, true = {}, {}
        for a in AXES:
            t = now - m.start_s
            c0, c1, t0, t1 = m.cmd_from[a], m.cmd_to[a], m.true_from[a], m.true_to[a]
            if a == "z" and m.z_via is not None:
                leg1_s, c_via, t_via = m.z_via
                if t < leg1_s:
                    c1, t1 = c_via, t_via
                else:
                    c0, t0, t = c_via, t_via, t - leg1_s
            d = c1 - c0
            f = trapezoid_fraction(t, d, *self._timing(a))
            cmd[a] = self._quantise(a, c0 + f * d)
            true[a] = t0 + f * (t1 - t0)
        return cmd, true

    def true_position(self) -> Position:
        """Where the stage really is (what the camera sees), in um."""
        with self._lock:
            _, true = self._at(self.clock.now())
            return Position(true["x"], true["y"], true["z"])

    # -- StageBase hooks ------------------------------------------------------------------------
    def _read_native(self) -> dict[str, float]:
        with self._lock:
            cmd, _ = self._at(self.clock.now())
            return cmd

    def _move_native(self, targets: dict[str, float]) -> None:
        self._start(targets, None)

    #: Both Z legs of `move_via` run during the XY move (each a trapezoid from rest to rest:
    #: Z stops to reverse at the via point); the move lasts as long as the longer of XY and
    #: the two Z legs, then the settle.
    blends_z_via = True

    def _move_via_native(self, targets: dict[str, float], z_via: float) -> None:
        self._start(targets, z_via)

    def _start(self, targets: dict[str, float], z_via: float | None) -> None:
        with self._lock:
            now = self.clock.now()
            if self._move is not None and now < self._move.end_s:
                self._freeze(now)
            cmd_from = dict(self._cmd)
            true_from = {a: self._mech[a] + self._err[a] for a in AXES}
            duration, settle = 0.0, 0.0
            via: tuple[float, float, float] | None = None
            for axis, target in targets.items():
                q = self._quantise(axis, target)
                b = self._play(axis)
                legs = 0.0
                if axis == "z" and z_via is not None:
                    qv = self._quantise(axis, z_via)
                    leg1 = trapezoid_time_s(qv - self._cmd[axis], *self._timing(axis))
                    if leg1 > 0:
                        self._mech[axis] = min(max(self._mech[axis], qv), qv + b)
                        self._cmd[axis] = qv
                        via = (leg1, qv, self._mech[axis] + self._err[axis])
                        legs = leg1
                distance = q - self._cmd[axis]
                if distance == 0 and legs == 0:
                    continue
                self._mech[axis] = min(max(self._mech[axis], q), q + b)
                sd = self.config.z_repeatability_um if axis == "z" else self.config.xy_jitter_um
                self._err[axis] = float(self._rng.normal(0.0, sd)) if sd > 0 else 0.0
                self._cmd[axis] = q
                legs += trapezoid_time_s(distance, *self._timing(axis))
                duration = max(duration, legs)
                s = self.config.z_settle_ms if axis == "z" else self.config.xy_settle_ms
                settle = max(settle, s / 1000.0)
            if duration == 0.0:
                return
            self.moves += 1
            self._move = _Move(
                start_s=now,
                end_s=now + duration + settle,
                cmd_from=cmd_from,
                cmd_to=dict(self._cmd),
                true_from=true_from,
                true_to={a: self._mech[a] + self._err[a] for a in AXES},
                z_via=via,
            )

    def _freeze(self, now: float) -> None:
        """Stop where the profile is now: that becomes both the command and the mechanics."""
        cmd, true = self._at(now)
        for a in AXES:
            self._cmd[a] = cmd[a]
            self._mech[a] = true[a] - self._err[a]
        self._move = None

    def _wait_native(self, timeout_s: float) -> None:
        with self._lock:
            if self._move is None:
                return
            remaining = self._move.end_s - self.clock.now()
            if remaining > timeout_s:
                self.clock.sleep(timeout_s)
                raise DeviceTimeout(f"simulated stage move did not finish within {timeout_s} s")
            if remaining > 0:
                self.clock.sleep(remaining)
            self._move = None

    def _stop_native(self) -> None:
        with self._lock:
            if self._move is not None:
                self._freeze(self.clock.now())

    def is_moving(self) -> bool:
        with self._lock:
            return self._move is not None and self.clock.now() < self._move.end_s

    def home(self) -> None:
        """Drive to the home position and zero the mechanics there (play taken up, no error)."""
        c = self.config
        home = c.home_um or (c.x_limits_um[0], c.y_limits_um[0], c.z_limits_um[1])
        self.move_to(*home, wait=True)
        with self._lock:
            for a in AXES:
                self._mech[a] = self._cmd[a]
                self._err[a] = 0.0

    @property
    def z_play_um(self) -> float | None:
        """The Z play the drive really has, less what the stage's own compensation takes up."""
        play = self.config.z_backlash_um
        return 0.0 if self.config.compensate_z_um >= play else play

    def move_duration_s(self, z_via: float | None = None, **deltas_um: float) -> float:
        """Time a relative move of the given axes would take, settling included. `z_via`
        (relative, like the deltas): Z goes there first and then to its delta, both legs
        within the move (`move_via`)."""
        duration, settle = 0.0, 0.0
        if z_via is not None:
            deltas_um.setdefault("z", 0.0)
        for axis, d in deltas_um.items():
            if axis == "z" and z_via is not None:
                t = trapezoid_time_s(z_via, *self._timing(axis))
                t += trapezoid_time_s(d - z_via, *self._timing(axis))
            else:
                t = trapezoid_time_s(d, *self._timing(axis))
            if t > 0:
                duration = max(duration, t)
                s = self.config.z_settle_ms if axis == "z" else self.config.xy_settle_ms
                settle = max(settle, s / 1000.0)
        return duration + settle if duration else 0.0
