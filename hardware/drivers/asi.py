"""ASI MS-2000 / Tiger stage driver (CR-terminated commands, positions in tenths of a micron).

Protocol (ASI serial command reference): every command is answered at once, `:A` plus data
on success or `:N-1` .. `:N-7` on failure. Moves (`M X=.. Y=.. Z=..`) answer `:A` when
accepted; completion is polled with `/` (STATUS), which answers `N` (not busy) or `B` (busy).
`W X` (WHERE) reads a position, one axis per command: a reply to `W X Y Z` comes in the
controller's hardware order whatever the order asked (on a Tiger the cards' order, Z often
first), as Micro-Manager's Tiger adapter also found; `\\` (HALT) stops every axis.

Because replies are strictly one per command, a reply that went missing (timeout) or arrived
broken (garbage) would shift every later reply by one; the connection therefore drops whatever
is still on the line before the next command (`SerialConnection.resync_if_needed`).

Tiger controllers accept the same commands for axes named X, Y and Z (the default 115200 baud
there must be set in the profile; MS-2000 defaults to 9600).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from slidescan.hardware.base import AxisCalibration, SoftLimits
from slidescan.hardware.drivers.connection import PortOpener, SerialConnection
from slidescan.hardware.drivers.serial_stage import SerialStage
from slidescan.hardware.errors import DeviceError, DeviceTimeout

DEFAULT_BAUD = 9600

ASI_ERRORS: dict[int, str] = {
    1: "unknown command",
    2: "unrecognised axis parameter",
    3: "missing parameters",
    4: "parameter out of range",
    5: "operation failed",
    6: "undefined error",
    7: "invalid card address",
    21: "serial command halted by HALT",
}


class AsiConnection(SerialConnection):
    """The ASI port: one reply per command."""

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = DEFAULT_BAUD,
        timeout_s: float = 1.0,
        opener: PortOpener | None = None,
    ) -> None:
        super().__init__(
            url, baudrate=baudrate, eol=b"\r", timeout_s=timeout_s, name="ASI", opener=opener
        )

    def command(self, command: str, timeout_s: float | None = None) -> str:
        """Send `command`; return the data after `:A` (or the bare reply of `/`)."""
        with self.lock:
            self.resync_if_needed()
            self.write_line(command)
            line = self.read_line(timeout_s)
        if line.startswith(":N"):
            try:
                code: int | None = -int(line[2:].split()[0])
            except (ValueError, IndexError):
                code = None
            meaning = ASI_ERRORS.get(code, "error") if code is not None else "error"
            raise DeviceError(f"ASI refused {command!r}: {meaning} ({line})")
        if line.startswith(":A"):
            return line[2:].strip()
        if command in ("/", "STATUS") and line in ("N", "B"):
            return line
        self.needs_resync = True
        raise DeviceError(f"ASI: unexpected reply {line[:60]!r} to {command!r}")

    def busy(self) -> bool:
        return self.command("/") == "B"


class AsiStage(SerialStage):
    """An XYZ stage on an ASI MS-2000 or Tiger. Native units: 0.1 um (10 per um)."""

    kind = "asi"
    label = "ASI"
    native_resolution = 1.0  # WHERE reports whole tenths of a micron
    native_units_per_um = 10.0

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
        poll_interval_s: float = 0.05,
        tolerance_um: float = 0.5,
        opener: PortOpener | None = None,
    ) -> None:
        conn = AsiConnection(port, baudrate=baudrate, timeout_s=reply_timeout_s, opener=opener)
        super().__init__(
            conn,
            limits=limits,
            calibration=calibration,
            backlash_um=backlash_um,
            move_timeout_s=move_timeout_s,
            tolerance_um=tolerance_um,
        )
        self.connection: AsiConnection = conn
        self.poll_interval_s = float(poll_interval_s)
        try:
            conn.flush_input(quiet_s=0.05)
            try:
                self.firmware = conn.command("V")
            except DeviceTimeout as exc:
                raise DeviceTimeout(
                    f"no ASI controller answered on {port}: wrong port or baud rate?"
                ) from exc
            self._read_native()
        except BaseException:
            conn.close()
            raise

    def _read_native(self) -> dict[str, float]:
        position = {}
        with self.connection.lock:
            for axis in ("x", "y", "z"):
                answer = self.connection.command(f"W {axis.upper()}")
                try:
                    (position[axis],) = (float(v) for v in answer.split())
                except ValueError:
                    raise DeviceError(
                        f"ASI: 'W {axis.upper()}' answered {answer!r}, not one number"
                    ) from None
        return self._remember(position)

    def _move_native(self, targets: dict[str, float]) -> None:
        args = " ".join(f"{a.upper()}={v:.1f}" for a, v in targets.items())
        with self.connection.lock:
            self.connection.command(f"M {args}")
            self._targets_native.update(targets)

    def _wait_native(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.connection.busy():
            if time.monotonic() >= deadline:
                raise DeviceTimeout(f"ASI move did not finish within {timeout_s:.1f} s")
            time.sleep(self.poll_interval_s)
        self._verify_arrival(self._read_native())

    def _stop_native(self) -> None:
        conn = self.connection
        limit_s = max(2.0, 5 * conn.timeout_s)
        deadline = time.monotonic() + limit_s
        try:
            conn.command("\\")
        except DeviceError as exc:
            if "(:N-21)" not in str(exc):
                raise
        while conn.busy():
            if time.monotonic() >= deadline:
                raise DeviceTimeout(f"ASI did not stop within {limit_s:.1f} s")
            time.sleep(0.02)
        self._targets_native.clear()
        self._read_native()

    def is_moving(self) -> bool:
        return self.connection.busy()
