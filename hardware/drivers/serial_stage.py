"""What every serial stage driver shares: fail-safe moves, arrival checks, cached positions.

A driver subclass speaks its controller's native units through `_read_native`,
`_move_native`, `_wait_native` and `_stop_native`; `StageBase` converts to um, checks the
soft limits before anything is commanded and adds backlash compensation.

Failing safe: when a move or a wait fails for any reason other than a refused target
(`LimitExceeded`, raised before anything was sent), the driver tries to stop the stage before
the exception leaves it. After a move reports done, the position is read back and compared
with the target; a stage that stopped short (an obstacle, a limit switch, a controller that
reset and forgot its move) raises `DeviceError` instead of being taken for arrived.

A stop asked for (`stop()`, typically from another thread than the one waiting for the move)
is no failure: the move ends quietly where the stage stopped, and none of its remaining legs
(backlash approach, `move_via`'s second Z leg) is sent. `stop()` records the request before
it tells the controller anything, so a waiting thread that sees the stage still short of its
target has already seen the request too, however the threads are scheduled.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

from slidescan.hardware.base import AXES, AxisCalibration, Position, SoftLimits, StageBase
from slidescan.hardware.drivers.connection import SerialConnection
from slidescan.hardware.errors import DeviceError, HardwareError, LimitExceeded

log = logging.getLogger(__name__)


class SerialStage(StageBase):
    """Base of the GRBL, Prior and ASI stage drivers."""

    #: Native controller units per um for an axis the profile does not calibrate.
    native_units_per_um: float = 1.0
    #: Controller kind, as used in hardware profiles ("grbl", "prior", "asi").
    kind: str = ""
    #: Name for messages.
    label: str = ""
    #: Smallest position step the controller reports, in native units.
    native_resolution: float = 0.0

    def __init__(
        self,
        connection: SerialConnection,
        *,
        limits: SoftLimits | None = None,
        calibration: Mapping[str, AxisCalibration] | None = None,
        backlash_um: Mapping[str, float] | None = None,
        move_timeout_s: float = 30.0,
        tolerance_um: float = 1.0,
    ) -> None:
        default = {a: AxisCalibration(units_per_um=self.native_units_per_um) for a in AXES}
        default.update(calibration or {})
        super().__init__(limits, default, backlash_um, move_timeout_s)
        self.connection = connection
        self.tolerance_um = float(tolerance_um)
        self.firmware = ""
        self._targets_native: dict[str, float] = {}
        self._last_native: dict[str, float] | None = None
        self._last_read_at: float | None = None
        #: Stops asked for so far, and how many there had been when the current move began.
        self._stops_asked = 0
        self._stops_before_move = 0
        self._move_depth = 0

    # -- fail safe -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _fail_safe(self) -> Iterator[None]:
        try:
            yield
        except LimitExceeded:
            raise
        except HardwareError:
            self._targets_native.clear()
            self._stop_quietly()
            raise

    def _stop_quietly(self) -> None:
        """Best-effort stop after a failure; its own failure is logged, never raised."""
        if self.connection.is_lost:
            return
        try:
            self._stop_native()
        except HardwareError as exc:
            log.warning("%s: stop after a failure also failed: %s", self.label, exc)

    # -- stops asked for ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _one_move(self) -> Iterator[None]:
        """The span of one public move, all its legs included (`move_via` runs `move_to`
        twice): a stop asked for anywhere in it ends all of it."""
        if self._move_depth == 0:
            self._stops_before_move = self._stops_asked
        self._move_depth += 1
        try:
            yield
        finally:
            self._move_depth -= 1

    def _stopped_on_request(self) -> bool:
        """Whether `stop()` was called since the current (or last) move began: a stage at rest
        short of its target is then where the stop left it, not a failure."""
        return self._stops_asked != self._stops_before_move

    def stop(self) -> None:
        """Stop all motion now and return once the controller reports the stage still.

        The request is recorded first, under the connection's lock (so never between a leg's
        command and the recording of its target): a thread waiting for the move takes a stage
        at rest short of its target for stopped, and sends no further leg.
        """
        with self.connection.lock:
            self._stops_asked += 1
            self._targets_native.clear()
        try:
            self._stop_native()
        finally:
            self._targets_native.clear()

    def _command(self, targets_um: dict[str, float]) -> None:
        with self.connection.lock:  # checked and sent before a stop() can come between
            if self._stopped_on_request():
                return  # the move was stopped: no further leg
            super()._command(targets_um)

    # -- public moves ----------------------------------------------------------------------------
    def move_to(
        self,
        x: float | None = None,
        y: float | None = None,
        z: float | None = None,
        *,
        wait: bool = True,
    ) -> None:
        with self._one_move(), self._fail_safe():
            super().move_to(x, y, z, wait=wait)

    def move_via(self, x: float, y: float, z: float, z_via: float, *, wait: bool = True) -> None:
        with self._one_move(), self._fail_safe():
            super().move_via(x, y, z, z_via, wait=wait)

    def wait(self, timeout_s: float | None = None) -> None:
        with self._fail_safe():
            super().wait(timeout_s)

    # -- shared helpers --------------------------------------------------------------------------
    def _remember(self, native: dict[str, float]) -> dict[str, float]:
        self._last_native = dict(native)
        self._last_read_at = time.monotonic()
        return native

    def cached_position(self) -> Position | None:
        """The last position read from the controller, without asking it again (for frame
        metadata: asking on every snap would flood a slow serial line)."""
        if self._last_native is None:
            return None
        return Position(*(self.calibration[a].to_um(self._last_native[a]) for a in AXES))

    def _verify_arrival(self, native: dict[str, float]) -> None:
        """Raise `DeviceError` if the stage came to rest away from the commanded target (unless
        a stop was asked for: then that is where it was meant to rest)."""
        targets, self._targets_native = dict(self._targets_native), {}
        if self._stopped_on_request():
            return
        for axis, target in targets.items():
            cal = self.calibration[axis]
            error = cal.to_um(native[axis]) - cal.to_um(target)
            if abs(error) > self.axis_tolerance_um(axis):
                raise DeviceError(
                    f"{self.label} stage stopped at {axis} = {cal.to_um(native[axis]):.2f} um, "
                    f"{abs(error):.2f} um from the target {cal.to_um(target):.2f} um "
                    "(an obstacle, a limit switch, or the controller reset)"
                )

    def axis_tolerance_um(self, axis: str) -> float:
        """How far from its target `axis` may rest: the configured tolerance, but never less
        than what the controller can resolve."""
        resolution_um = self.native_resolution / self.calibration[axis].units_per_um
        return max(self.tolerance_um, resolution_um)

    def describe(self) -> dict[str, Any]:
        """Facts for `slidescan hw check` and the scan file."""
        return {"kind": self.kind, "port": self.connection.url, "firmware": self.firmware}

    def close(self) -> None:
        """Stop a move nobody waited for, then release the port."""
        if self._targets_native:
            self._stop_quietly()
        self.connection.close()

    def __enter__(self) -> SerialStage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
