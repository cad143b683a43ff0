"""In-process fake controllers behind `serial.serial_for_url`.

A fake is a pyserial port class (`FakeSerial`) wrapped around a model of the controller's
firmware (`FakeController`). The driver under test opens `fakegrbl://`, `fakeprior://` or
`fakeasi://` exactly as it opens `/dev/ttyUSB0` and cannot tell the difference, except that it
is fast and can be told to fail.

What the fakes model, because drivers get these wrong:
- replies that trickle in at the baud rate, so lines arrive in pieces (partial reads);
- motion that takes time (linear moves at a speed, scaled by `speedup`), so "queued" and
  "finished" differ;
- unsolicited messages interleaved with replies (GRBL);
- faults on demand: silence, garbage bytes, the port vanishing, error replies, alarms, resets.

URL options (query string), common to every fake:
  speedup=F      run motion F times faster than the modelled controller (default 1)
  wire=0         deliver replies instantly instead of at the baud rate
  fault=KIND     inject KIND while the first move is under way (see `FakeController.trigger`)
  fault_after=S  ... S seconds after that move started (default 0.02)
Each fake adds its own (see its module). Unknown options are an error.

Tests get the controller model as `port.device` (for a driver: `stage.connection.port.device`)
and call its fault methods (`arm_fault`, `mute`, `vanish`, ...) between driver calls.
"""

from __future__ import annotations

import abc
import collections
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from serial.serialutil import PortNotOpenError, SerialBase, SerialException

#: Fault kinds every fake understands; controllers add their own.
COMMON_FAULTS = ("mute", "garbage", "vanish", "error", "reset")

GARBAGE = b"\xfe\x13\xff\x80\x00}\xc3\x0e\x9b"


@dataclass
class LinearMove:
    """Constant-speed motion of some axes from `start` to `end` (native units)."""

    t0: float
    duration: float
    start: dict[str, float]
    end: dict[str, float]

    def at(self, t: float) -> dict[str, float]:
        if self.duration <= 0 or t >= self.t0 + self.duration:
            return dict(self.end)
        f = max(0.0, (t - self.t0) / self.duration)
        return {a: self.start[a] + f * (self.end[a] - self.start[a]) for a in self.end}

    def done(self, t: float) -> bool:
        return t >= self.t0 + self.duration

    @property
    def t_end(self) -> float:
        return self.t0 + self.duration


def move_duration(start: dict[str, float], end: dict[str, float], speed: float) -> float:
    """Seconds for a straight move at `speed` (native units per second)."""
    dist = sum((end[a] - start[a]) ** 2 for a in end) ** 0.5
    return dist / speed if speed > 0 else 0.0


class FakeController(abc.ABC):
    """Model of a controller's firmware. All methods run under the port's lock.

    Subclasses implement `feed` (bytes from the host), `advance` (time-driven behaviour up to
    `now`: motion ending, scheduled events) and `next_event_at`. They answer with `emit`.
    """

    #: Fault kinds this controller understands (for URL validation).
    faults: ClassVar[tuple[str, ...]] = COMMON_FAULTS
    #: URL options this controller adds, with their defaults (strings, parsed by the subclass).
    options: ClassVar[dict[str, str]] = {}

    def __init__(self, opts: dict[str, str], clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.speedup = float(opts.get("speedup", "1"))
        if not self.speedup > 0:
            raise ValueError(f"speedup must be positive, got {self.speedup}")
        self.outbox = bytearray()
        self.muted = False
        self.vanished = False
        self.received = bytearray()  # every byte the host sent, for tests
        self.lines_received: list[str] = []
        self.rx = bytearray()  # host bytes not yet framed into a line
        self._fault: str | None = None
        self._fault_after = 0.02
        self._fault_at: float | None = None
        if opts.get("fault"):
            self.arm_fault(opts["fault"], float(opts.get("fault_after", "0.02")))
        self.moves_started = 0

    # -- host side -----------------------------------------------------------------------------
    @abc.abstractmethod
    def feed(self, data: bytes, now: float) -> None:
        """Bytes written by the host."""

    def _take_lines(self, data: bytes) -> Iterator[str]:
        """Append host bytes to `self.rx` and yield each complete non-blank line (CR or LF ends
        a line), stripped and recorded in `lines_received`. Partial lines stay buffered."""
        self.rx += data
        while True:
            ends = [i for i in (self.rx.find(b"\r"), self.rx.find(b"\n")) if i >= 0]
            if not ends:
                return
            i = min(ends)
            raw = bytes(self.rx[:i]).decode("ascii", "replace").strip()
            del self.rx[: i + 1]
            if raw:
                self.lines_received.append(raw)
                yield raw

    @abc.abstractmethod
    def advance(self, now: float) -> None:
        """Run time-driven behaviour (motion, scheduled messages) up to `now`."""

    @abc.abstractmethod
    def next_event_at(self) -> float | None:
        """Absolute time of the next time-driven event (None: nothing scheduled)."""

    @abc.abstractmethod
    def is_moving(self, now: float) -> bool:
        """True while any axis moves (for tests: 'the stage is stopped')."""

    @abc.abstractmethod
    def position(self, now: float) -> dict[str, float]:
        """Where the axes are now, in the controller's native units."""

    def on_open(self, now: float) -> None:  # noqa: B027 - optional hook
        """The host opened the port (a GRBL board reboots here)."""

    def emit(self, data: str | bytes) -> None:
        """Queue bytes for the host (dropped while muted)."""
        if self.muted:
            return
        self.outbox += data.encode("ascii") if isinstance(data, str) else data

    # -- faults ----------------------------------------------------------------------------------
    def mute(self) -> None:
        """The controller keeps obeying but its transmit line is dead: no reply ever arrives."""
        self.muted = True

    def unmute(self) -> None:
        self.muted = False

    def inject_garbage(self, data: bytes = GARBAGE) -> None:
        """Line noise: bytes that are no valid reply, followed by a line end."""
        self.outbox += data + b"\r\n"

    def vanish(self) -> None:
        """The USB adapter is unplugged: the port raises on every call; the controller stops."""
        self.vanished = True
        self.halt(self.clock())

    @abc.abstractmethod
    def halt(self, now: float) -> None:
        """Stop all motion at once (power loss, hard stop)."""

    @abc.abstractmethod
    def fail_next_move(self, code: int | None = None) -> None:
        """Answer the next move command with an error reply."""

    @abc.abstractmethod
    def reset(self) -> None:
        """The controller resets (watchdog, power glitch): motion stops, state is lost."""

    def trigger(self, kind: str) -> None:
        """Inject fault `kind` now."""
        if kind == "mute":
            self.mute()
        elif kind == "garbage":
            self.inject_garbage()
        elif kind == "vanish":
            self.vanish()
        elif kind == "error":
            self.fail_next_move()
        elif kind == "reset":
            self.reset()
        else:
            raise ValueError(f"unknown fault {kind!r}")

    def arm_fault(self, kind: str, after_s: float = 0.02) -> None:
        """Inject `kind` `after_s` seconds into the next move (an 'error' fault answers the next
        move command with an error reply instead)."""
        if kind not in self.faults:
            raise ValueError(f"unknown fault {kind!r}; this fake knows: {', '.join(self.faults)}")
        self._fault, self._fault_after, self._fault_at = kind, float(after_s), None

    def _move_started(self, now: float) -> None:
        """Subclasses call this when a move begins: starts the clock of an armed fault."""
        self.moves_started += 1
        if self._fault and self._fault != "error" and self._fault_at is None:
            self._fault_at = now + self._fault_after

    def _scheduled_fault_due(self, now: float) -> None:
        if self._fault_at is not None and now >= self._fault_at:
            kind, self._fault, self._fault_at = self._fault, None, None
            assert kind is not None
            self.trigger(kind)

    def _take_error_fault(self) -> bool:
        """True once when an 'error' fault is armed (the caller answers with an error)."""
        if self._fault == "error":
            self._fault = None
            return True
        return False

    def _next_fault_time(self) -> float | None:
        return self._fault_at

    @staticmethod
    def _earliest(times: Iterable[float | None]) -> float | None:
        ts = [t for t in times if t is not None]
        return min(ts) if ts else None


class FakeSerial(SerialBase):
    """A pyserial port whose other end is a `FakeController`.

    Bytes from the controller reach the host at the configured baud rate (10 bit times per
    byte) unless `wire=0`, so a reply can arrive in pieces, as on a real line.
    """

    scheme: ClassVar[str] = ""
    controller_class: ClassVar[type[FakeController]]
    BAUDRATES = (9600, 19200, 38400, 57600, 115200, 230400)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.device: FakeController | None = None
        self._lock = threading.Condition()
        self._wire: collections.deque[tuple[float, int]] = collections.deque()
        self._last_release = 0.0
        self._paced = True
        super().__init__(*args, **kwargs)

    @property
    def controller_lock(self) -> threading.Condition:
        """Held while the controller model runs; hold it to act on the model from a test."""
        return self._lock

    # -- pyserial plumbing -----------------------------------------------------------------------
    def open(self) -> None:
        if self.is_open:
            raise SerialException("port is already open")
        if self._port is None:
            raise SerialException("port must be configured before it can be used")
        opts = self._parse_url(self.portstr)
        self._paced = opts.pop("wire", "1") not in ("0", "false", "no")
        try:
            self.device = self.controller_class(opts)
        except ValueError as exc:
            raise SerialException(f"{self.portstr}: {exc}") from exc
        self.is_open = True
        with self._lock:
            now = time.monotonic()
            self._last_release = now
            self.device.on_open(now)
            self._collect(now)

    def _parse_url(self, url: str) -> dict[str, str]:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != self.scheme:
            raise SerialException(f"expected a URL starting with {self.scheme}://, got {url!r}")
        opts = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query).items()}
        known = {"speedup", "wire", "fault", "fault_after", *self.controller_class.options}
        unknown = sorted(set(opts) - known)
        if unknown:
            raise SerialException(
                f"{url}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return opts

    def close(self) -> None:
        self.is_open = False
        with self._lock:
            self._lock.notify_all()

    def _reconfigure_port(self, *args: Any, **kwargs: Any) -> None:
        pass  # nothing to configure on a fake line

    def _device(self) -> FakeController:
        if not self.is_open or self.device is None:
            raise PortNotOpenError()
        if self.device.vanished:
            raise SerialException(
                "device reports readiness to read but returned no data "
                "(device disconnected or multiple access on port?)"
            )
        return self.device

    def _byte_time(self) -> float:
        return 10.0 / float(self._baudrate or 9600) if self._paced else 0.0

    def _collect(self, now: float) -> None:
        """Advance the controller to `now` and move its output onto the wire."""
        dev = self.device
        assert dev is not None
        dev.advance(now)
        if dev.outbox:
            bt = self._byte_time()
            t = max(now, self._last_release)
            for byte in bytes(dev.outbox):
                t += bt
                self._wire.append((t, byte))
            self._last_release = t
            dev.outbox.clear()

    def _available(self, now: float) -> int:
        n = 0
        for t, _ in self._wire:
            if t > now:
                break
            n += 1
        return n

    @property
    def in_waiting(self) -> int:
        with self._lock:
            self._device()
            now = time.monotonic()
            self._collect(now)
            return self._available(now)

    def read(self, size: int = 1) -> bytes:
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        out = bytearray()
        with self._lock:
            while len(out) < size:
                dev = self._device()
                now = time.monotonic()
                self._collect(now)
                while self._wire and len(out) < size and self._wire[0][0] <= now:
                    out.append(self._wire.popleft()[1])
                if len(out) >= size:
                    break
                wake = [deadline] if deadline is not None else []
                if self._wire:
                    wake.append(self._wire[0][0])
                nxt = dev.next_event_at()
                if nxt is not None:
                    wake.append(nxt)
                if deadline is not None and now >= deadline:
                    break
                wait = max(0.0005, min(wake) - now) if wake else None
                self._lock.wait(wait)
                if not self.is_open:
                    break
        return bytes(out)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        data = bytes(data)
        with self._lock:
            dev = self._device()
            now = time.monotonic()
            dev.advance(now)
            dev.received += data
            dev.feed(data, now)
            self._collect(now)
            self._lock.notify_all()
            if dev.vanished:  # vanished while handling this write
                self._device()
        return len(data)

    def flush(self) -> None:
        with self._lock:
            self._device()

    def reset_input_buffer(self) -> None:
        with self._lock:
            self._device()
            now = time.monotonic()
            self._collect(now)
            while self._wire and self._wire[0][0] <= now:
                self._wire.popleft()

    def reset_output_buffer(self) -> None:
        pass

    @property
    def out_waiting(self) -> int:
        return 0

    # pyserial's modem lines: a fake has none worth modelling
    def _update_dtr_state(self) -> None:
        pass

    def _update_rts_state(self) -> None:
        pass

    def _update_break_state(self) -> None:
        pass

    @property
    def cts(self) -> bool:
        return True

    @property
    def dsr(self) -> bool:
        return True

    @property
    def ri(self) -> bool:
        return False

    @property
    def cd(self) -> bool:
        return True
