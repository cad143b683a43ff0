"""One serial connection per controller: it owns the port, a lock, line framing and timeouts.

Every driver talks to its controller through a `SerialConnection` (python-microscope's
pattern): the port is opened with `serial.serial_for_url`, so a test, or a person trying the
program without hardware, can put an in-process fake controller (`fakegrbl://`, `fakeprior://`,
`fakeasi://`: the registry's fake schemes) behind the unchanged driver. The fakes' URL schemes
are made known to pyserial when such a URL is first opened, not when this package is imported.

Framing: outgoing lines end in the controller's terminator; incoming lines may end in CR, LF or
CR LF (GRBL and ASI send CR LF, Prior sends CR), so both count as terminators and empty lines
are skipped. Reads accept partial chunks and reassemble them. A line that is not printable
ASCII is garbage (line noise, a wrong baud rate) and raises `DeviceError`.

Port failures (`SerialException`, `OSError`: the cable pulled, the adapter gone) become
`ConnectionLost`; once lost, every later call raises at once without touching the port.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import serial

from slidescan.hardware.errors import ConnectionLost, DeviceError, DeviceTimeout
from slidescan.hardware.registry import fake_schemes

log = logging.getLogger(__name__)

#: Longest incoming line kept before it is declared garbage (no controller here sends more).
_MAX_LINE = 4096
#: The port's own read timeout. Reads loop in slices this long until their deadline, so the
#: port is configured once and never reconfigured per call (that would be a tcsetattr each time).
READ_SLICE_S = 0.02
#: How long a loop that waits for a move stays out of the connection's lock between two reads.
#: Python's locks are not fair: a loop that takes the lock again at once can keep another
#: thread's `stop()` waiting for as long as the move lasts.
LOCK_GAP_S = 0.002

PortOpener = Callable[..., Any]
#: Where pyserial finds the fakes' URL handlers (`protocol_fakegrbl.py` and friends).
FAKE_PROTOCOL_PACKAGE = "slidescan.hardware.drivers"
_registering = threading.Lock()


def register_fake_protocols() -> None:
    """Let `serial.serial_for_url` find the fake controllers (`fakegrbl://` and friends).

    pyserial looks up `<package>.protocol_<scheme>` in `serial.protocol_handler_packages`, a
    process-wide list; this adds the package once, however many threads ask.
    """
    with _registering:
        if FAKE_PROTOCOL_PACKAGE not in serial.protocol_handler_packages:
            serial.protocol_handler_packages.append(FAKE_PROTOCOL_PACKAGE)


def is_fake_url(url: str) -> bool:
    """Whether `url` names one of the registered fake controllers (`fakeasi://?speedup=2`)."""
    return urllib.parse.urlsplit(url).scheme in fake_schemes()


class SerialConnection:
    """A serial port with line framing, a re-entrant lock and one-line errors.

    `lock` is public: a driver holds it across a command and its reply so that a second thread
    (a stop button) cannot interleave its own command between them. Waiting loops take it per
    poll, never for a whole move, so `stop()` always gets through.
    """

    def __init__(
        self,
        url: str,
        *,
        baudrate: int,
        eol: bytes,
        timeout_s: float = 1.0,
        name: str = "controller",
        opener: PortOpener | None = None,
    ) -> None:
        if is_fake_url(url):
            register_fake_protocols()
        self.url = url
        self.name = name
        self.eol = eol
        self.timeout_s = float(timeout_s)
        self.lock = threading.RLock()
        self._rx = bytearray()
        self._lost: str | None = None
        #: Set when a read timed out or hit garbage: a late or broken reply may still be on
        #: the wire, so `resync_if_needed` drops it before the next command.
        self.needs_resync = False
        open_port = opener or serial.serial_for_url
        try:
            self.port = open_port(url, baudrate=baudrate, timeout=READ_SLICE_S, write_timeout=2.0)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ConnectionLost(
                f"{name}: cannot open serial port {url!r}: {_first_line(exc)}"
            ) from exc

    # -- state -------------------------------------------------------------------------------
    @property
    def is_lost(self) -> bool:
        return self._lost is not None

    def mark_lost(self, reason: str) -> None:
        """Remember that the link is gone; every later call raises `ConnectionLost`."""
        if self._lost is None:
            self._lost = reason
            if reason == "closed":
                return
            log.warning("%s on %s: connection lost: %s", self.name, self.url, reason)

    def _check(self) -> None:
        if self._lost is not None:
            raise ConnectionLost(f"{self.name} on {self.url}: connection lost ({self._lost})")

    def _port_failed(self, exc: BaseException) -> ConnectionLost:
        self.mark_lost(_first_line(exc))
        return ConnectionLost(
            f"{self.name} on {self.url}: serial port failed ({_first_line(exc)}); "
            "check the cable and power"
        )

    # -- writing -----------------------------------------------------------------------------
    def write_raw(self, data: bytes) -> None:
        """Send bytes as they are (real-time commands such as GRBL's `?` or 0x85)."""
        with self.lock:
            self._check()
            try:
                self.port.write(data)
                self.port.flush()
            except (serial.SerialException, OSError) as exc:
                raise self._port_failed(exc) from exc

    def write_line(self, text: str) -> None:
        """Send one command line followed by the controller's terminator."""
        if any(ch in text for ch in "\r\n"):
            raise ValueError(f"command {text!r} contains a line terminator")
        self.write_raw(text.encode("ascii") + self.eol)

    # -- reading -----------------------------------------------------------------------------
    def read_line(self, timeout_s: float | None = None) -> str:
        """The next non-empty line, without its terminator.

        Raises `DeviceTimeout` if no complete line arrives within `timeout_s` (default: the
        connection's reply timeout) and `DeviceError` for a line that is not printable ASCII.
        """
        line = self.read_line_or_none(self.timeout_s if timeout_s is None else timeout_s)
        if line is None:
            self.needs_resync = True
            raise DeviceTimeout(
                f"{self.name} on {self.url}: no reply within "
                f"{self.timeout_s if timeout_s is None else timeout_s:.2f} s"
            )
        return line

    def read_line_or_none(self, timeout_s: float) -> str | None:
        """Like `read_line` but returns None when nothing complete arrived in time."""
        with self.lock:
            self._check()
            deadline = time.monotonic() + max(0.0, timeout_s)
            filled = False
            while True:
                line = self._pop_line()
                if line is not None:
                    if line:
                        return line
                    continue  # empty line between CR and LF, or a bare terminator
                if filled and time.monotonic() >= deadline:
                    return None
                self._fill()
                filled = True

    def _pop_line(self) -> str | None:
        ends = [i for i in (self._rx.find(b"\r"), self._rx.find(b"\n")) if i >= 0]
        if ends:
            i = min(ends)
            raw = bytes(self._rx[:i])
            del self._rx[: i + 1]
            return self._decode(raw)
        if len(self._rx) > _MAX_LINE:
            raw = bytes(self._rx)
            self._rx.clear()
            raise DeviceError(
                f"{self.name} on {self.url}: garbled reply ({len(raw)} bytes without a "
                "line end); wrong baud rate?"
            )
        return None

    def _decode(self, raw: bytes) -> str:
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            text = None
        if text is None or not text.isprintable():
            self.needs_resync = True
            raise DeviceError(
                f"{self.name} on {self.url}: garbled reply {raw[:40]!r}; "
                "wrong baud rate or electrical noise"
            )
        return text.strip()

    def _fill(self) -> None:
        """Read what arrives within one read slice (may be nothing)."""
        try:
            chunk = self.port.read(1)
            if chunk:
                waiting = self.port.in_waiting
                if waiting:
                    chunk += self.port.read(waiting)
        except (serial.SerialException, OSError) as exc:
            raise self._port_failed(exc) from exc
        self._rx += chunk

    def flush_input(self, quiet_s: float = 0.0) -> bytes:
        """Resynchronise: drop every byte received so far.

        With `quiet_s > 0`, keep reading until the line has been silent that long, so that the
        tail of a reply still on the wire is dropped too. Returns what was dropped.
        """
        with self.lock:
            self._check()
            dropped = bytes(self._rx)
            self._rx.clear()
            try:
                if self.port.in_waiting:
                    dropped += self.port.read(self.port.in_waiting)
                silent_since = time.monotonic()
                while quiet_s > 0 and time.monotonic() - silent_since < quiet_s:
                    chunk = self.port.read(1)
                    if chunk:
                        dropped += chunk
                        if self.port.in_waiting:
                            dropped += self.port.read(self.port.in_waiting)
                        silent_since = time.monotonic()
            except (serial.SerialException, OSError) as exc:
                raise self._port_failed(exc) from exc
            if dropped:
                log.debug("%s: resync dropped %r", self.name, dropped[:200])
            return dropped

    def resync_if_needed(self, quiet_s: float = 0.05) -> None:
        """After a timeout or garbage: drop whatever is still arriving, then carry on."""
        if self.needs_resync:
            self.flush_input(quiet_s)
            self.needs_resync = False

    def close(self) -> None:
        with self.lock:
            with contextlib.suppress(serial.SerialException, OSError):  # a vanished port
                self.port.close()
            self.mark_lost("closed")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, name={self.name!r})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
