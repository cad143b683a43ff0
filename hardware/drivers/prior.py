"""Prior ProScan III stage driver (9600 8N1 by default, CR-terminated lines both ways).

Protocol (ProScan III manual, standard mode): at connect `COMP,0` selects standard mode, in
which a move command (`G,x,y`, `GX`, `GY`, `GZ,z`) sends nothing when accepted and `R` when it
finishes, while other commands are answered at once (`P` -> `x,y,z`, `$` -> bit mask of moving
axes). So a query's reply can overtake a pending `R`, and a refused move answers `E,n` at once.

This driver keeps a count of moves awaiting `R`. After sending a move it asks `$` as a sync
marker: an `E,n` arriving before the marker's answer is the move's refusal. Waiting reads `R`s
and, every poll interval, asks `$`; a stage that reports still while an `R` is missing stopped
short (limit switch, joystick stop, controller reset) and raises instead of hanging.
Stopping is `I`, then `$` until nothing moves, then dropping any late `R`.

Native units are the controller's (microns or steps, per its RES setting): give the profile's
`units_per_um` per axis; positions are integers.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping

from slidescan.hardware.base import AxisCalibration, SoftLimits
from slidescan.hardware.drivers.connection import LOCK_GAP_S, PortOpener, SerialConnection
from slidescan.hardware.drivers.serial_stage import SerialStage
from slidescan.hardware.errors import DeviceError, DeviceTimeout

log = logging.getLogger(__name__)

DEFAULT_BAUD = 9600

PRIOR_ERRORS: dict[int, str] = {
    1: "no stage",
    2: "not idle",
    3: "no drive",
    4: "string parse error",
    5: "command not found",
    7: "no focus drive",
    8: "value out of range",
    10: "argument 1 out of range",
    11: "argument 2 out of range",
    12: "argument 3 out of range",
    16: "incorrect state",
    18: "queue full",
    19: "compatibility mode set",
    60: "encoder error",
    61: "encoder run-off",
}


#: The stage's bits in the `$` status: X, Y and Z.
STAGE_AXES_MASK = 0b111


class PriorConnection(SerialConnection):
    """The ProScan port: replies in order, with `R` for finished moves mixed in."""

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = DEFAULT_BAUD,
        timeout_s: float = 1.0,
        opener: PortOpener | None = None,
    ) -> None:
        super().__init__(
            url,
            baudrate=baudrate,
            eol=b"\r",
            timeout_s=timeout_s,
            name="Prior ProScan",
            opener=opener,
        )
        self.pending_moves = 0
        self.move_error: DeviceError | None = None

    def _error(self, what: str, line: str) -> DeviceError:
        try:
            code: int | None = int(line.split(",", 1)[1])
        except (IndexError, ValueError):
            code = None
        meaning = PRIOR_ERRORS.get(code, "error") if code is not None else "error"
        return DeviceError(f"Prior ProScan refused {what}: {meaning} ({line})")

    def take_move_line(self, line: str) -> bool:
        """Account for `R` and, while moves are pending, `E,n`; True if the line was one."""
        if line == "R":
            self.pending_moves = max(0, self.pending_moves - 1)
            return True
        if line.startswith("E,") and self.pending_moves > 0:
            self.pending_moves -= 1
            self.move_error = self.move_error or self._error("a move", line)
            return True
        return False

    def query(self, command: str, timeout_s: float | None = None) -> str:
        """Send `command` and return its answer, accounting for `R`s that arrive first."""
        with self.lock:
            self.resync_if_needed()
            self.write_line(command)
            while True:
                line = self.read_line(timeout_s)
                if self.take_move_line(line):
                    continue
                if line.startswith("E,"):
                    raise self._error(repr(command), line)
                return line

    def send(self, command: str) -> None:
        """Send a command whose answer is read elsewhere (a move's `R`, a stop's `R`)."""
        with self.lock:
            self.resync_if_needed()
            self.write_line(command)

    def start_move(self, command: str) -> None:
        with self.lock:
            self.send(command)
            self.pending_moves += 1

    def moving_mask(self) -> int:
        """Which stage axes move: bits 1 X, 2 Y, 4 Z of `$` (its higher bits are the
        controller's other axes, filter wheels and shutters, which are not ours to wait for)."""
        answer = self.query("$")
        try:
            return int(answer) & STAGE_AXES_MASK
        except ValueError:
            self.needs_resync = True
            raise DeviceError(f"Prior ProScan: '$' answered {answer!r}, not a number") from None

    def raise_move_error(self) -> None:
        if self.move_error is not None:
            exc, self.move_error = self.move_error, None
            raise exc


class PriorStage(SerialStage):
    """An XYZ stage on a Prior ProScan III. Native units: controller units (default 1/um)."""

    kind = "prior"
    label = "Prior ProScan"
    native_resolution = 1.0  # integer positions
    native_units_per_um = 1.0

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = DEFAULT_BAUD,
        limits: SoftLimits | None = None,
        calibration: Mapping[str, AxisCalibration] | None = None,
        backlash_um: Mapping[str, float] | None = None,
        move_timeout_s: float = 30.0,
        reply_timeout_s: float = 1.0,
        poll_interval_s: float = 0.25,
        tolerance_um: float = 1.0,
        opener: PortOpener | None = None,
    ) -> None:
        conn = PriorConnection(port, baudrate=baudrate, timeout_s=reply_timeout_s, opener=opener)
        super().__init__(
            conn,
            limits=limits,
            calibration=calibration,
            backlash_um=backlash_um,
            move_timeout_s=move_timeout_s,
            tolerance_um=tolerance_um,
        )
        self.connection: PriorConnection = conn
        self.poll_interval_s = float(poll_interval_s)
        try:
            self._connect()
        except BaseException:
            conn.close()
            raise

    def _connect(self) -> None:
        conn = self.connection
        conn.flush_input(quiet_s=0.05)  # whatever the controller said before we listened
        answer = conn.query("COMP,0")
        if answer != "0":
            raise DeviceError(
                f"no Prior ProScan on {conn.url}: 'COMP,0' answered {answer!r}; "
                "wrong port or baud rate?"
            )
        self.firmware = f"ProScan version {conn.query('VERSION')}"
        self._check_resolution()
        self._read_native()

    def _check_resolution(self) -> None:
        """Refuse a controller whose unit (`RES,s` for XY, `RES,z`) is not the one the profile's
        calibration assumes: every move would be scaled wrong and the soft limits in um would
        no longer be the real travel. A controller that does not say (an old firmware, or the
        0 some report) is taken at the profile's word, with a warning."""
        for query, axes in (("RES,s", ("x", "y")), ("RES,z", ("z",))):
            try:
                answer = self.connection.query(query)
                um_per_unit = abs(float(answer))
            except (DeviceError, ValueError):
                log.warning("Prior ProScan: %s not answered; unit taken from the profile", query)
                continue
            if not um_per_unit > 0:
                log.warning(
                    "Prior ProScan: %s answered %r; unit taken from the profile", query, answer
                )
                continue
            for axis in axes:
                expected = 1.0 / self.calibration[axis].units_per_um
                if abs(um_per_unit - expected) > 0.01 * expected:
                    raise DeviceError(
                        f"Prior ProScan counts {axis.upper()} in {um_per_unit:g} um ({query}) but "
                        f"the profile expects {expected:g} um per unit: set the axis calibration "
                        f"to {1 / um_per_unit:g} units per um, or the controller's resolution"
                    )

    def describe(self) -> dict[str, object]:
        info = super().describe()
        with contextlib.suppress(DeviceError):  # long at 9600 baud: asked only on demand
            info["date"] = self.connection.query("DATE")
        return info

    # -- StageBase hooks -------------------------------------------------------------------------
    def _read_native(self) -> dict[str, float]:
        answer = self.connection.query("P")
        try:
            x, y, z = (float(v) for v in answer.split(","))
        except ValueError:
            self.connection.needs_resync = True
            raise DeviceError(f"Prior ProScan: 'P' answered {answer!r}, not x,y,z") from None
        return self._remember({"x": x, "y": y, "z": z})

    def _move_native(self, targets: dict[str, float]) -> None:
        conn = self.connection
        native = {a: int(round(v)) for a, v in targets.items()}
        commands = []
        if "x" in native and "y" in native:
            commands.append(f"G,{native['x']},{native['y']}")
        elif "x" in native:
            commands.append(f"GX,{native['x']}")
        elif "y" in native:
            commands.append(f"GY,{native['y']}")
        if "z" in native:
            commands.append(f"GZ,{native['z']}")
        with conn.lock:
            conn.raise_move_error()
            for command in commands:
                conn.start_move(command)
            self._targets_native.update({a: float(v) for a, v in native.items()})
            conn.moving_mask()  # sync marker: a refusal (E,n) arrives before its answer
            conn.raise_move_error()

    def _wait_native(self, timeout_s: float) -> None:
        conn = self.connection
        deadline = time.monotonic() + timeout_s
        next_poll = time.monotonic() + self.poll_interval_s
        while True:
            with conn.lock:
                if conn.pending_moves == 0:
                    break
                line = conn.read_line_or_none(0.05)
                if line is not None and not conn.take_move_line(line):
                    conn.needs_resync = True
                    raise DeviceError(f"Prior ProScan: unexpected line {line!r} during a move")
                conn.raise_move_error()
                if conn.pending_moves and time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self.poll_interval_s
                    if conn.moving_mask() == 0 and conn.pending_moves:
                        self._expect_late_r()
            if time.monotonic() >= deadline:
                raise DeviceTimeout(f"Prior ProScan move did not finish within {timeout_s:.1f} s")
            time.sleep(LOCK_GAP_S)  # outside the lock, so stop() from another thread gets in
        conn.raise_move_error()
        self._verify_arrival(self._read_native())

    def _expect_late_r(self) -> None:
        """Nothing moves but an `R` is missing: allow it one reply time, then give up."""
        conn = self.connection
        deadline = time.monotonic() + conn.timeout_s
        while conn.pending_moves and time.monotonic() < deadline:
            line = conn.read_line_or_none(0.05)
            if line is not None and not conn.take_move_line(line):
                raise DeviceError(f"Prior ProScan: unexpected line {line!r} during a move")
        if conn.pending_moves:
            conn.pending_moves = 0
            if self._stopped_on_request():
                return  # the stop (its `I`) cut the move short: no `R` comes for it
            raise DeviceError(
                "Prior ProScan stopped without finishing its move (no 'R'): a limit switch, "
                "the joystick, or a controller reset"
            )

    def _stop_native(self) -> None:
        conn = self.connection
        limit_s = max(2.0, 5 * conn.timeout_s)
        deadline = time.monotonic() + limit_s
        with conn.lock:
            conn.send("I")  # answered by R, which the '$' queries below skip over
            while conn.moving_mask() != 0:
                if time.monotonic() >= deadline:
                    raise DeviceTimeout(f"Prior ProScan did not stop within {limit_s:.1f} s")
                time.sleep(0.02)
            conn.flush_input(quiet_s=0.03)  # late R of a move cut short
            conn.pending_moves = 0
            conn.move_error = None
            self._targets_native.clear()
            self._read_native()

    def is_moving(self) -> bool:
        return self.connection.moving_mask() != 0
