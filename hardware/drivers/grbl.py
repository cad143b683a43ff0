"""GRBL 1.1 stage driver (115200 8N1, LF-terminated lines, positions in mm).

Protocol, per the GRBL 1.1 interface documents:
- Every line is answered `ok` or `error:N` when the parser takes it. For motion, `ok` means
  *queued*, not done. The host counts the characters of unanswered lines so the controller's
  128-byte receive buffer never overflows (`GrblConnection.send`), and keeps lines short of
  GRBL's 80-byte line buffer.
- Unsolicited lines can come between any two replies: `<...>` status reports, `ALARM:N`,
  `[MSG:...]`, and the `Grbl 1.1h ['$' for help]` banner, which means the controller reset:
  whatever was pending is lost, so pending commands fail (`ConnectionLost`) and the character
  count restarts from zero.
- Real-time bytes go without newline and act at once: `?` status, `!` hold, `~` resume,
  0x18 soft reset, 0x85 jog cancel.

Moves are jogs in machine coordinates (`$J=G53 X.. Y.. Z.. F..`): a jog is cancelled cleanly
with 0x85 (no alarm, no lost position). Completion is polled with `?` no faster than 5 Hz
(the GRBL documentation's advice) until the state is Idle and every line is answered.

An alarm stops the scan and asks the person: this driver never sends `$X` on its own. After
an alarm or a reset, moves are refused until `home()` or `unlock()` is called by the person.
"""

from __future__ import annotations

import collections
import logging
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from slidescan.hardware.base import AXES, AxisCalibration, SoftLimits
from slidescan.hardware.drivers.connection import LOCK_GAP_S, PortOpener, SerialConnection
from slidescan.hardware.drivers.serial_stage import SerialStage
from slidescan.hardware.errors import (
    ConnectionLost,
    DeviceError,
    DeviceTimeout,
    HardwareError,
    NotSupportedError,
)

log = logging.getLogger(__name__)

DEFAULT_BAUD = 115200
#: GRBL's line buffer is 80 bytes including the terminator and a trailing NUL; lines of 79
#: characters or more are refused with error:11.
MAX_LINE_CHARS = 78
#: Minimum time between two `?` status polls (5 Hz, as GRBL's documentation recommends).
MIN_POLL_INTERVAL_S = 0.2
JOG_CANCEL = b"\x85"
SOFT_RESET = b"\x18"

GRBL_ERRORS: dict[int, str] = {
    1: "expected a command letter",
    2: "bad number format",
    3: "invalid $ statement",
    4: "negative value",
    5: "homing is not enabled ($22)",
    8: "not idle",
    9: "G-code locked out during an alarm or jog",
    10: "soft limits need homing enabled",
    11: "line too long",
    15: "jog target exceeds machine travel",
    16: "invalid jog command",
    20: "unsupported G-code command",
    22: "feed rate not set",
}
GRBL_ALARMS: dict[int, str] = {
    0: "locked at start-up until homed",
    1: "hard limit triggered",
    2: "soft limit: target exceeds machine travel",
    3: "reset while in motion, position may be lost",
    4: "probe fail: not in the expected initial state",
    5: "probe fail: no contact",
    6: "homing fail: reset during homing",
    7: "homing fail: safety door opened",
    8: "homing fail: pull-off did not clear the limit switch",
    9: "homing fail: limit switch not found",
    10: "homing fail: dual-axis switch",
}
_STATUS = re.compile(r"^<([^|>]+)((?:\|[^|>]*)*)>$")


@dataclass
class GrblStatus:
    """One `<...>` report: the state and the machine position in mm."""

    state: str
    mpos: tuple[float, float, float]
    received_at: float
    feed: float = 0.0

    @property
    def moving(self) -> bool:
        return self.state in ("Run", "Jog", "Home") or self.state == "Hold:1"


@dataclass
class _Line:
    text: str
    nbytes: int
    reply: str | None = None
    info: list[str] = field(default_factory=list)


def alarm_text(code: int | None) -> str:
    if code is None:
        return "alarm"
    return f"alarm {code} ({GRBL_ALARMS.get(code, 'unknown alarm')})"


class GrblConnection(SerialConnection):
    """The GRBL port: character counting, reply matching and unsolicited-message handling."""

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = DEFAULT_BAUD,
        timeout_s: float = 1.0,
        poll_interval_s: float = MIN_POLL_INTERVAL_S,
        opener: PortOpener | None = None,
    ) -> None:
        super().__init__(
            url, baudrate=baudrate, eol=b"\n", timeout_s=timeout_s, name="GRBL", opener=opener
        )
        self.rx_buffer_size = 128
        self.poll_interval_s = float(poll_interval_s)
        self.inflight: collections.deque[_Line] = collections.deque()
        self.max_bytes_in_flight = 0
        self.status: GrblStatus | None = None
        self.wco = (0.0, 0.0, 0.0)
        self.alarm: int | None = None  # last alarm code; None when not in alarm
        self.locked = False  # in Alarm state: motion refused until $H / $X
        self.needs_reset = False  # "[MSG:Reset to continue]": a soft reset must come first
        self.homing = False  # a homing cycle runs: GRBL answers no status query until it ends
        self.resets_seen = 0
        #: An unexpected banner came: the controller reset, its position may be wrong. Moves
        #: are refused until a person homes or unlocks (`GrblStage.home` / `unlock`).
        self.reset_unacknowledged = False
        self.banner = ""
        self.messages: collections.deque[str] = collections.deque(maxlen=20)
        self.poll_times: list[float] = []
        self._last_poll = 0.0
        self._sent_since_status = True
        self._expect_banner = False
        self._async_error: HardwareError | None = None
        self._waiting_for: _Line | None = None

    # -- incoming lines --------------------------------------------------------------------------
    def handle(self, line: str) -> None:
        """Dispatch one incoming line; raises for alarms, resets and garbage."""
        if line == "ok" or line.startswith("error:"):
            if not self.inflight:
                raise DeviceError(f"GRBL on {self.url}: reply {line!r} to no command (out of sync)")
            entry = self.inflight.popleft()
            entry.reply = line
            if line.startswith("error:") and not self._waited(entry):
                self._async_error = self._error_for(entry)
            return
        if line.startswith("<"):
            self._parse_status(line)
            return
        if line.startswith("ALARM:"):
            code = _int_or_none(line[6:])
            self.alarm, self.locked = code, True
            self.inflight.clear()  # GRBL drops its buffers on an alarm; nothing more will answer
            raise DeviceError(
                f"GRBL {alarm_text(code)}: motion stopped. Check the machine, then home it "
                "or unlock it by hand (slidescan never unlocks on its own)"
            )
        if line.startswith("Grbl "):
            self.banner = line
            self.resets_seen += 1
            self.inflight.clear()  # the reset emptied GRBL's receive buffer
            self._sent_since_status = True
            if self._expect_banner:
                self._expect_banner = False
                return
            self.reset_unacknowledged = True
            raise ConnectionLost(
                f"GRBL on {self.url} reset itself ({line!r}): pending commands were lost and "
                "the position may be wrong; check the machine, then home or unlock it"
            )
        if line.startswith("[MSG:"):
            msg = line[5:].rstrip("]")
            self.messages.append(msg)
            if "Reset to continue" in msg:
                self.needs_reset, self.locked = True, True
            elif "to unlock" in msg:
                self.locked = True
                self.alarm = 0 if self.alarm is None else self.alarm
            elif "Unlocked" in msg:
                self.locked, self.alarm = False, None
            return
        if line.startswith(">"):
            # A stored startup line ($N0/$N1) that GRBL ran after a reset or homing, echoed
            # with its own result (">G54G20:ok", ">...:error:N"): not a reply to anything we
            # sent (GRBL 1.1 interface docs), so it is kept as a message, not taken as one.
            self.messages.append(f"startup line {line[1:]}")
            return
        if line.startswith("[") or re.fullmatch(r"\$\d+=\S+", line):
            if self.inflight:
                self.inflight[0].info.append(line)
            return
        raise DeviceError(f"GRBL on {self.url}: unexpected reply {line[:60]!r}")

    def _waited(self, entry: _Line) -> bool:
        return entry is self._waiting_for

    def _error_for(self, entry: _Line) -> DeviceError:
        code = _int_or_none(entry.reply.split(":", 1)[1]) if entry.reply else None
        meaning = GRBL_ERRORS.get(code, "unknown error") if code is not None else "error"
        return DeviceError(f"GRBL refused {entry.text!r}: {meaning} ({entry.reply})")

    def _parse_status(self, line: str) -> None:
        m = _STATUS.match(line)
        if not m:
            raise DeviceError(f"GRBL on {self.url}: malformed status report {line[:60]!r}")
        state = m.group(1)
        fields = dict(f.split(":", 1) for f in m.group(2).split("|")[1:] if ":" in f)
        try:
            if "WCO" in fields:
                self.wco = _xyz(fields["WCO"])
            if "MPos" in fields:
                mpos = _xyz(fields["MPos"])
            elif "WPos" in fields:  # $10=0: machine position = work position + offset
                wpos = _xyz(fields["WPos"])
                mpos = tuple(round(w + o, 4) for w, o in zip(wpos, self.wco, strict=True))  # type: ignore[assignment]
            else:
                raise ValueError("no position")
            feed = float(fields.get("FS", fields.get("F", "0")).split(",")[0])
        except ValueError as exc:
            raise DeviceError(f"GRBL on {self.url}: malformed status report {line[:60]!r}") from exc
        if state == "Alarm":
            self.locked = True
        elif self.locked and state in ("Idle", "Jog", "Run"):  # unlocked (by a person)
            self.locked, self.alarm, self.needs_reset = False, None, False
        self.status = GrblStatus(state, mpos, time.monotonic(), feed)
        self._sent_since_status = False

    def read_one(self, timeout_s: float | None = None) -> None:
        self.handle(self.read_line(timeout_s))

    def raise_pending(self) -> None:
        """Raise an error reply to an earlier line that nobody waited for."""
        if self._async_error is not None:
            exc, self._async_error = self._async_error, None
            raise exc

    # -- outgoing --------------------------------------------------------------------------------
    def send(self, text: str, *, wait: bool = True, timeout_s: float | None = None) -> _Line:
        """Send one line, never overfilling GRBL's receive buffer; with `wait`, return once it
        is answered (raising `DeviceError` on `error:N`)."""
        if len(text) > MAX_LINE_CHARS:
            raise DeviceError(f"GRBL line too long ({len(text)} > {MAX_LINE_CHARS}): {text!r}")
        entry = _Line(text, len(text) + 1)
        with self.lock:
            self.raise_pending()
            while self.inflight and self.bytes_in_flight + entry.nbytes > self.rx_buffer_size - 1:
                self.read_one(timeout_s)  # wait for GRBL to take earlier lines
            self.inflight.append(entry)
            self.max_bytes_in_flight = max(self.max_bytes_in_flight, self.bytes_in_flight)
            self._sent_since_status = True
            try:
                self.write_line(text)
            except HardwareError:
                self.inflight.clear()
                raise
            if wait:
                self.wait_reply(entry, timeout_s)
        return entry

    def wait_reply(self, entry: _Line, timeout_s: float | None = None) -> None:
        with self.lock:
            self._waiting_for = entry
            try:
                while entry.reply is None:
                    if entry not in self.inflight:  # a reset or alarm dropped it
                        raise DeviceError(f"GRBL dropped {entry.text!r} unanswered")
                    self.read_one(timeout_s)
            finally:
                self._waiting_for = None
            if entry.reply.startswith("error:"):
                raise self._error_for(entry)

    def pump(self, timeout_s: float) -> None:
        """Handle at most one incoming line, waiting up to `timeout_s` for it."""
        with self.lock:
            line = self.read_line_or_none(timeout_s)
            if line is not None:
                self.handle(line)

    @property
    def bytes_in_flight(self) -> int:
        return sum(e.nbytes for e in self.inflight)

    def realtime(self, byte: bytes) -> None:
        self.write_raw(byte)

    def poll_status(self, timeout_s: float | None = None, *, fresh: bool = True) -> GrblStatus:
        """A status report, polling with `?` at most every `poll_interval_s`.

        Without `fresh`, a report younger than the poll interval is reused when nothing was
        sent since (it is still exact then).
        """
        while True:
            with self.lock:
                now = time.monotonic()
                status = self.status
                if self.homing or self.needs_reset:
                    # GRBL answers no `?` while it homes or after a critical alarm (a hard or
                    # soft limit: "Reset to continue"; realtime_cmds.md): say so, unasked
                    last = status.mpos if status is not None else (math.nan,) * 3
                    return GrblStatus("Home" if self.homing else "Alarm", last, now)
                if (
                    not fresh
                    and status is not None
                    and not self._sent_since_status
                    and now - status.received_at < self.poll_interval_s
                ):
                    return status
                delay = self._last_poll + self.poll_interval_s - now
                if delay <= 0:
                    return self._poll(timeout_s)
            time.sleep(delay)  # outside the lock, so stop() from another thread gets in

    def _poll(self, timeout_s: float | None) -> GrblStatus:
        self._last_poll = time.monotonic()
        self.poll_times.append(self._last_poll)
        before = self.status
        self.realtime(b"?")
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while self.status is before:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeviceTimeout(f"GRBL on {self.url}: no status report to '?'")
            self.read_one(remaining)
        assert self.status is not None
        return self.status

    def wait_banner(self, timeout_s: float) -> bool:
        """Read until the start-up banner; False if none came within `timeout_s`."""
        with self.lock:
            self._expect_banner = True
            deadline = time.monotonic() + timeout_s
            try:
                while self._expect_banner:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    line = self.read_line_or_none(remaining)
                    if line is not None:
                        self.handle(line)
                return True
            finally:
                self._expect_banner = False


class GrblStage(SerialStage):
    """An XYZ stage on a GRBL 1.1 controller. Native units: mm (0.001 per um)."""

    kind = "grbl"
    label = "GRBL"
    native_resolution = 0.001  # status reports carry 3 decimals of a mm
    native_units_per_um = 0.001

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = DEFAULT_BAUD,
        limits: SoftLimits | None = None,
        calibration: Mapping[str, AxisCalibration] | None = None,
        backlash_um: Mapping[str, float] | None = None,
        speed_um_s: Mapping[str, float] | None = None,
        move_timeout_s: float = 30.0,
        reply_timeout_s: float = 1.0,
        poll_interval_s: float = MIN_POLL_INTERVAL_S,
        boot_timeout_s: float = 2.5,
        home_timeout_s: float = 120.0,
        tolerance_um: float = 1.5,
        opener: PortOpener | None = None,
    ) -> None:
        conn = GrblConnection(
            port,
            baudrate=baudrate,
            timeout_s=reply_timeout_s,
            poll_interval_s=poll_interval_s,
            opener=opener,
        )
        super().__init__(
            conn,
            limits=limits,
            calibration=calibration,
            backlash_um=backlash_um,
            move_timeout_s=move_timeout_s,
            tolerance_um=tolerance_um,
        )
        self.connection: GrblConnection = conn
        self.home_timeout_s = home_timeout_s
        self.settings: dict[int, float] = {}
        try:
            self._connect(boot_timeout_s)
        except BaseException:
            conn.close()
            raise
        max_rate = {a: self.settings.get(110 + i, 500.0) for i, a in enumerate(AXES)}
        self.speed_mm_min = {
            a: min(max_rate[a], speed_um_s[a] * 0.06)
            if speed_um_s and a in speed_um_s
            else max_rate[a]
            for a in AXES
        }

    # -- connection ------------------------------------------------------------------------------
    def _connect(self, boot_timeout_s: float) -> None:
        conn = self.connection
        if not conn.wait_banner(boot_timeout_s):
            # No reboot on open (auto-reset disabled, or a Bluetooth link): a soft reset makes
            # GRBL empty its buffers and say who it is.
            conn.realtime(SOFT_RESET)
            if not conn.wait_banner(max(0.5, 2 * conn.timeout_s)):
                raise DeviceTimeout(
                    f"no GRBL banner on {conn.url}: is it a GRBL 1.1 board at "
                    f"{conn.port.baudrate} baud?"
                )
        info = conn.send("$I").info
        # [VER:1.1h.20190825:optional build name]
        version = next((i[5:].split(":")[0] for i in info if i.startswith("[VER:")), "")
        if not version.startswith("1.1"):
            raise DeviceError(f"{conn.banner!r} on {conn.url}: need GRBL 1.1 (got {version!r})")
        opt = next((i[5:].rstrip("]") for i in info if i.startswith("[OPT:")), "")
        parts = opt.split(",")
        if len(parts) >= 3 and parts[2].isdigit():
            conn.rx_buffer_size = int(parts[2])
        self.firmware = f"GRBL {version}"
        for line in conn.send("$$").info:
            m = re.fullmatch(r"\$(\d+)=([-+.\d]+)", line)
            if m:
                self.settings[int(m.group(1))] = float(m.group(2))
        if self.settings.get(13, 0):
            raise DeviceError(f"GRBL on {conn.url} reports in inches ($13=1); set $13=0 (mm)")
        self.can_home = bool(self.settings.get(22, 0))
        self._remember(self._status_native(conn.poll_status()))

    def axis_tolerance_um(self, axis: str) -> float:
        """Also allow half a motor step ($100-$102 steps/mm): GRBL can only stop on a step."""
        steps_per_mm = self.settings.get(100 + "xyz".index(axis), 0.0)
        cal = self.calibration[axis]
        half_step_um = 0.5 / steps_per_mm / cal.units_per_um if steps_per_mm > 0 else 0.0
        return max(
            super().axis_tolerance_um(axis),
            half_step_um + 0.5 * self.native_resolution / cal.units_per_um,
        )

    def _status_native(self, status: GrblStatus) -> dict[str, float]:
        return dict(zip(AXES, status.mpos, strict=True))

    # -- StageBase hooks -------------------------------------------------------------------------
    def _read_native(self) -> dict[str, float]:
        self.connection.raise_pending()
        return self._remember(self._status_native(self.connection.poll_status(fresh=False)))

    def _check_unlocked(self) -> None:
        conn = self.connection
        if conn.locked or conn.needs_reset:
            raise DeviceError(
                f"GRBL is in {alarm_text(conn.alarm)}: motion refused. Check the machine, then "
                "home it or unlock it (stage.home() / stage.unlock())"
            )
        if conn.reset_unacknowledged:
            raise DeviceError(
                "GRBL reset since it was connected, so its position may be wrong: motion "
                "refused. Check the machine, then home it or unlock it"
            )

    def _start_native(self) -> dict[str, float] | None:
        """Where the next queued jog starts (native): the last queued target over the last
        read position; None before anything was read."""
        if self._last_native is None:
            return None
        return {**self._last_native, **self._targets_native}

    def _feed(self, start: dict[str, float] | None, end: dict[str, float]) -> float:
        """Jog feed (mm/min) for a straight move: the fastest at which no axis exceeds its
        own speed (GRBL's F is the speed along the path, so a move of XY with a short Z leg
        need not crawl at Z's speed). Without a known start: the slowest axis's speed."""
        speeds = {a: self.speed_mm_min[a] for a in end}
        if start is None:
            return min(speeds.values())
        delta = {a: abs(v - start[a]) for a, v in end.items()}
        length = math.sqrt(sum(d * d for d in delta.values()))
        limits = [speeds[a] * length / d for a, d in delta.items() if d > 0]
        return min(limits) if limits else min(speeds.values())

    def _jog(self, targets: dict[str, float], feed_mm_min: float) -> None:
        words = "".join(f"{a.upper()}{v:.4f}" for a, v in targets.items())
        # Streamed: `ok` only means queued. A refusal surfaces at the next wait or call.
        # With the planner full, room in GRBL's buffer comes only as moves finish.
        # G21 on the line: a jog takes the controller's inch/mm mode unless it says which, and
        # a startup line ($N0=G20) can leave a machine in inches (every figure 25.4x too far)
        self.connection.send(
            f"$J=G53G21{words}F{max(math.floor(feed_mm_min), 1)}",  # down: never over a speed
            wait=False,
            timeout_s=self.move_timeout_s,
        )

    def _move_native(self, targets: dict[str, float]) -> None:
        self._check_unlocked()
        with self.connection.lock:
            self._jog(targets, self._feed(self._start_native(), targets))
            self._targets_native.update(targets)

    #: `move_via` is two jogs GRBL's planner runs as one motion: XY to halfway with Z to the
    #: via point, then the rest of XY with Z to its target.
    blends_z_via = True

    def _move_via_native(self, targets: dict[str, float], z_via: float) -> None:
        self._check_unlocked()
        start = self._start_native() or self._read_native()
        mid = {a: 0.5 * (start[a] + targets[a]) for a in ("x", "y")}
        mid["z"] = z_via
        with self.connection.lock:
            if self._stopped_on_request():
                return  # stopped before it began (see `SerialStage._command`)
            self._jog(mid, self._feed(start, mid))
            self._jog(targets, self._feed(mid, targets))
            self._targets_native.update(targets)

    def _wait_native(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        conn = self.connection
        while conn.inflight:  # every queued line answered (in slices, so stop() gets in)
            conn.pump(0.05)
            if conn.inflight:
                if time.monotonic() >= deadline:
                    raise DeviceTimeout(f"GRBL move did not finish within {timeout_s:.1f} s")
                time.sleep(LOCK_GAP_S)
        conn.raise_pending()  # a refused move's error:N
        while True:
            status = conn.poll_status()
            if status.state == "Alarm":
                raise DeviceError(f"GRBL is in {alarm_text(conn.alarm)}; motion stopped")
            if not status.moving and not status.state.startswith("Hold") and not conn.inflight:
                break
            if time.monotonic() >= deadline:
                raise DeviceTimeout(f"GRBL move did not finish within {timeout_s:.1f} s")
        conn.raise_pending()
        self._verify_arrival(self._remember(self._status_native(status)))

    def _stop_native(self) -> None:
        """Cancel jogs (0x85) until GRBL is idle with every line answered.

        Jog cancel empties the planner but not the receive buffer: a jog still waiting there
        starts as soon as the planner is free, so this repeats until nothing is left.
        """
        conn = self.connection
        limit_s = max(2.0, 5 * conn.timeout_s)
        deadline = time.monotonic() + limit_s
        if conn.homing:
            self._abort_homing(limit_s)
            return
        with conn.lock:
            conn.realtime(JOG_CANCEL)
            idle_polls = 0
            while True:
                status = conn.poll_status()
                if status.state == "Run":
                    conn.realtime(b"!")  # G-code motion (not ours): feed hold
                elif status.moving:
                    conn.realtime(JOG_CANCEL)
                elif not conn.inflight:
                    break
                else:
                    # Still and silent with lines unanswered: an `ok` was lost (line noise).
                    # A soft reset while idle keeps the position and empties GRBL's buffers,
                    # which puts the character count back in step.
                    idle_polls += 1
                    if idle_polls >= 3:
                        log.warning(
                            "GRBL: %d line(s) unanswered while idle; resyncing with a soft reset",
                            len(conn.inflight),
                        )
                        self._soft_reset()
                        conn.inflight.clear()
                if time.monotonic() >= deadline:
                    raise DeviceTimeout(f"GRBL did not stop within {limit_s:.1f} s")
            self._targets_native.clear()
            self._remember(self._status_native(status))

    def is_moving(self) -> bool:
        status = self.connection.poll_status(fresh=False)
        return status.moving or bool(self.connection.inflight)

    # -- person-initiated recovery ---------------------------------------------------------------
    def home(self) -> None:
        """Run GRBL's homing cycle (`$H`); needs homing enabled ($22=1)."""
        if not self.can_home:
            raise NotSupportedError("GRBL homing is not enabled ($22=0); set it up first")
        conn = self.connection
        with self._fail_safe():
            if conn.needs_reset:
                self._soft_reset()
            stops = self._stops_asked
            deadline = time.monotonic() + self.home_timeout_s
            with conn.lock:
                entry = conn.send("$H", wait=False)
                conn.homing = True
            try:
                # its `ok` comes when the cycle ends: waited for in slices outside the lock,
                # so stop() can get in and abort it
                while entry.reply is None:
                    if entry not in conn.inflight:  # a reset emptied GRBL's buffers
                        if self._stops_asked != stops:
                            raise DeviceError(
                                "GRBL homing stopped on request: the machine is locked until "
                                "it is homed"
                            )
                        raise DeviceError("GRBL dropped the homing cycle ($H) unanswered")
                    if time.monotonic() >= deadline:
                        self._abort_homing(max(2.0, 5 * conn.timeout_s))
                        raise DeviceTimeout(
                            f"GRBL homing did not finish within {self.home_timeout_s:.0f} s"
                        )
                    conn.pump(0.05)
                    time.sleep(LOCK_GAP_S)
            finally:
                conn.homing = False
            conn.wait_reply(entry)  # answered: raises on error:N
            conn.reset_unacknowledged = False
            self._remember(self._status_native(conn.poll_status()))

    def unlock(self) -> None:
        """Clear an alarm or a reset (`$X`). Only for a person who has checked the machine:
        the position GRBL reports may not match the real one."""
        conn = self.connection
        if conn.needs_reset:
            self._soft_reset()
        conn.send("$X")
        conn.locked, conn.alarm = False, None
        conn.reset_unacknowledged = False
        self._remember(self._status_native(conn.poll_status()))

    def _abort_homing(self, limit_s: float) -> None:
        """Stop a homing cycle: only a soft reset does (GRBL then reports ALARM:6, homing
        failed, and stays locked until a person homes it again)."""
        conn = self.connection
        deadline = time.monotonic() + limit_s
        with conn.lock:
            conn.realtime(SOFT_RESET)
            while True:
                try:
                    if conn.wait_banner(max(0.0, deadline - time.monotonic())):
                        break
                except DeviceError:
                    continue  # the ALARM the reset caused, before the banner
                raise DeviceTimeout(f"GRBL on {conn.url} did not come back after a soft reset")
            conn.needs_reset = False
            conn.homing = False

    def _soft_reset(self) -> None:
        conn = self.connection
        with conn.lock:
            conn.realtime(SOFT_RESET)
            if not conn.wait_banner(max(0.5, 2 * conn.timeout_s)):
                raise DeviceTimeout(f"GRBL on {conn.url} did not come back after a soft reset")
            conn.needs_reset = False

    def describe(self) -> dict[str, object]:
        info = super().describe()
        info.update(
            rx_buffer_bytes=self.connection.rx_buffer_size,
            homing=self.can_home,
            state=self.connection.status.state if self.connection.status else None,
        )
        return info


def _xyz(text: str) -> tuple[float, float, float]:
    values = [float(v) for v in text.split(",")]
    if len(values) < 3:
        raise ValueError(f"need 3 axes in {text!r}")
    return values[0], values[1], values[2]


def _int_or_none(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None
