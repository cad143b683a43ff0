"""Device interfaces: `Stage` and `Camera` protocols, the frame type, and the shared base classes.

Units: every public coordinate is in micrometres (um), in the stage frame. Drivers speak their
controller's native units and inherit the conversion from `StageBase` through `AxisCalibration`.

Z convention (DESIGN.md): `z` is the focus-drive coordinate in um; defocus is `z - true_focus`.
"""

from __future__ import annotations

import abc
import collections
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from slidescan.hardware.clock import Clock, RealClock
from slidescan.hardware.errors import DeviceTimeout, LimitExceeded, NotSupportedError

AXES = ("x", "y", "z")


@dataclass(frozen=True)
class Position:
    """A stage position in micrometres."""

    x: float
    y: float
    z: float

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.x, self.y, self.z)

    def get(self, axis: str) -> float:
        return float(getattr(self, axis))


@dataclass(frozen=True)
class SoftLimits:
    """Allowed travel per axis, in um, inclusive. No move outside is ever commanded."""

    x: tuple[float, float] = (-1e9, 1e9)
    y: tuple[float, float] = (-1e9, 1e9)
    z: tuple[float, float] = (-1e9, 1e9)

    def __post_init__(self) -> None:
        for axis in AXES:
            lo, hi = getattr(self, axis)
            if not lo <= hi:
                raise ValueError(f"soft limits for {axis}: lower {lo} exceeds upper {hi}")

    def range(self, axis: str) -> tuple[float, float]:
        lo, hi = getattr(self, axis)
        return float(lo), float(hi)

    def contains(self, axis: str, value: float) -> bool:
        lo, hi = self.range(axis)
        return lo <= value <= hi

    def check(self, axis: str, value: float) -> None:
        """Raise `LimitExceeded` if `value` is outside the limits of `axis`."""
        if not np.isfinite(value):
            raise LimitExceeded(f"{axis} target {value} is not a finite number")
        lo, hi = self.range(axis)
        if not lo <= value <= hi:
            raise LimitExceeded(
                f"{axis} = {value:.3f} um is outside the soft limits [{lo:.3f}, {hi:.3f}] um"
            )

    def clamp(self, axis: str, value: float) -> float:
        lo, hi = self.range(axis)
        return float(min(max(value, lo), hi))


@dataclass
class Frame:
    """One camera image with the metadata a scan stores next to it.

    `image` is (H, W) or (H, W, 3), uint8 or uint16. `timestamp` is on the device clock (virtual
    for the simulator). `position` is the stage position at exposure when the camera knows the
    stage. `meta` carries extras; the simulator puts `true_focus_um` and `defocus_um` there.
    """

    image: np.ndarray
    timestamp: float
    exposure_ms: float
    gain: float = 1.0
    position: Position | None = None
    pixel_size_um: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.image.shape)


@runtime_checkable
class Stage(Protocol):
    """An XYZ stage in micrometres with soft limits.

    `z_play_um`: the focus drive's play a caller must take up itself (0: none, or the stage
    compensates; None: unknown). `move_via` moves XY and Z with Z passing a via point first
    (an approach from one side); `blends_z_via` says whether both Z legs run within the XY
    move (see `StageBase.move_via`).
    """

    limits: SoftLimits
    can_home: bool
    blends_z_via: bool

    @property
    def z_play_um(self) -> float | None: ...

    def move_via(
        self, x: float, y: float, z: float, z_via: float, *, wait: bool = True
    ) -> None: ...

    def position(self) -> Position: ...

    def move_to(
        self,
        x: float | None = None,
        y: float | None = None,
        z: float | None = None,
        *,
        wait: bool = True,
    ) -> None: ...

    def move_by(
        self, dx: float = 0.0, dy: float = 0.0, dz: float = 0.0, *, wait: bool = True
    ) -> None: ...

    def wait(self, timeout_s: float | None = None) -> None: ...

    def is_moving(self) -> bool: ...

    def stop(self) -> None: ...

    def home(self) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Camera(Protocol):
    """A camera that snaps frames and can stream into a bounded buffer for live view."""

    exposure_ms: float
    gain: float

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype: ...

    @property
    def pixel_size_um(self) -> float: ...

    @property
    def exposure_range_ms(self) -> tuple[float, float] | None:
        """(min, max) exposure in ms this camera takes; None where it cannot say."""
        ...

    def snap(self) -> Frame: ...

    def start_stream(self) -> None: ...

    def stop_stream(self) -> None: ...

    def latest_frame(self) -> Frame | None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class AxisCalibration:
    """Native controller units per um and the axis sign: native = sign * um * units_per_um."""

    units_per_um: float = 1.0
    sign: int = 1

    def __post_init__(self) -> None:
        if self.units_per_um <= 0 or not np.isfinite(self.units_per_um):
            raise ValueError(f"units_per_um must be positive, got {self.units_per_um}")
        if self.sign not in (1, -1):
            raise ValueError(f"axis sign must be +1 or -1, got {self.sign}")

    def to_native(self, um: float) -> float:
        return self.sign * um * self.units_per_um

    def to_um(self, native: float) -> float:
        return self.sign * native / self.units_per_um


class StageBase(abc.ABC):
    """Shared stage logic in um: soft limits, axis calibration and backlash compensation.

    Subclasses implement the `_native` methods in controller units. `move_to` checks every
    target against the soft limits before anything is commanded. With `backlash_um[axis] > 0`,
    a move in the negative direction first goes `backlash` further down and then approaches the
    target from below, so every position is reached from the same side.
    """

    can_home: bool = False

    def __init__(
        self,
        limits: SoftLimits | None = None,
        calibration: Mapping[str, AxisCalibration] | None = None,
        backlash_um: Mapping[str, float] | None = None,
        move_timeout_s: float = 30.0,
    ) -> None:
        self.limits = limits or SoftLimits()
        self.calibration = {a: AxisCalibration() for a in AXES}
        if calibration:
            self.calibration.update(calibration)
        self.backlash_um = {a: 0.0 for a in AXES}
        if backlash_um:
            self.backlash_um.update({k: float(v) for k, v in backlash_um.items()})
        self.move_timeout_s = move_timeout_s
        self._last_target: dict[str, float] = {}

    @property
    def z_play_um(self) -> float | None:
        """Mechanical play of the focus drive that callers must take up themselves, in um.

        0 when this stage already approaches every Z target from below (software compensation
        on); None when unknown, so a focus method assumes the worst (`focus.safety`). Stages
        that know their play (the simulator) override this.
        """
        return 0.0 if self.backlash_um.get("z", 0.0) > 0 else None

    # -- native-unit hooks -------------------------------------------------------------------
    @abc.abstractmethod
    def _read_native(self) -> dict[str, float]:
        """Current position in native units, keys 'x', 'y', 'z'."""

    @abc.abstractmethod
    def _move_native(self, targets: dict[str, float]) -> None:
        """Start an absolute move of the given axes (native units); may return before done."""

    @abc.abstractmethod
    def _wait_native(self, timeout_s: float) -> None:
        """Block until motion ends; raise `DeviceTimeout` after `timeout_s`."""

    @abc.abstractmethod
    def _stop_native(self) -> None:
        """Stop all motion now."""

    def is_moving(self) -> bool:
        return False

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    # -- public API in um --------------------------------------------------------------------
    def position(self) -> Position:
        native = self._read_native()
        return Position(*(self.calibration[a].to_um(native[a]) for a in AXES))

    def move_to(
        self,
        x: float | None = None,
        y: float | None = None,
        z: float | None = None,
        *,
        wait: bool = True,
    ) -> None:
        targets = {a: float(v) for a, v in zip(AXES, (x, y, z), strict=True) if v is not None}
        if not targets:
            return
        for axis, value in targets.items():
            self.limits.check(axis, value)
        current = self.position()
        pre: dict[str, float] = {}
        for axis, value in targets.items():
            b = self.backlash_um.get(axis, 0.0)
            if b > 0 and value < current.get(axis) - 1e-9:
                pre[axis] = self.limits.clamp(axis, value - b)
        if pre:
            self._command(pre)
            self.wait()
        self._command(targets)
        if wait:
            self.wait()

    #: Whether `_move_via_native` runs both Z legs of `move_via` during the XY move.
    blends_z_via: bool = False

    def move_via(self, x: float, y: float, z: float, z_via: float, *, wait: bool = True) -> None:
        """Move XY to (x, y) and Z to `z` by way of `z_via`: Z goes to `z_via` first, then
        to `z`. With `z_via` below `z` the drive arrives moving up, its play taken up (an
        approach from below for a focus method's first frame).

        Every target, `z_via` included, is checked against the soft limits before anything
        moves. A stage that can (`blends_z_via`: the simulator; GRBL, as two planned blocks)
        runs both Z legs during the XY move; any other stage, or one with software backlash
        compensation, moves XY with Z's first leg, waits, then makes the second.
        """
        x, y, z, z_via = float(x), float(y), float(z), float(z_via)
        for axis, value in (("x", x), ("y", y), ("z", z_via), ("z", z)):
            self.limits.check(axis, value)
        compensating = any(v > 0 for v in self.backlash_um.values())
        if not self.blends_z_via or compensating:
            self.move_to(x, y, z_via, wait=True)
            self.move_to(z=z, wait=wait)
            return
        targets = {"x": x, "y": y, "z": z}
        self._last_target.update(targets)
        cal = self.calibration
        self._move_via_native(
            {a: cal[a].to_native(v) for a, v in targets.items()}, cal["z"].to_native(z_via)
        )
        if wait:
            self.wait()

    def _move_via_native(self, targets: dict[str, float], z_via: float) -> None:
        """Start `move_via` in native units (only called when `blends_z_via`)."""
        raise NotSupportedError(f"{type(self).__name__} cannot blend a Z via point")

    def move_by(
        self, dx: float = 0.0, dy: float = 0.0, dz: float = 0.0, *, wait: bool = True
    ) -> None:
        p = self.position()
        self.move_to(
            p.x + dx if dx else None,
            p.y + dy if dy else None,
            p.z + dz if dz else None,
            wait=wait,
        )

    def wait(self, timeout_s: float | None = None) -> None:
        self._wait_native(self.move_timeout_s if timeout_s is None else timeout_s)

    def stop(self) -> None:
        self._stop_native()

    def home(self) -> None:
        raise NotSupportedError(f"{type(self).__name__} cannot home")

    def _command(self, targets_um: dict[str, float]) -> None:
        for axis, value in targets_um.items():
            self.limits.check(axis, value)  # defence in depth: never command outside
        self._last_target.update(targets_um)
        self._move_native({a: self.calibration[a].to_native(v) for a, v in targets_um.items()})


class CameraBase(abc.ABC):
    """Shared camera logic: frame stamping and streaming into a bounded buffer.

    Subclasses implement `_acquire()` returning the image and a dict of extra metadata. Streaming
    runs a daemon thread that snaps continuously and keeps only the newest `buffer_size` frames,
    so a live view that polls `latest_frame()` on a timer can never be flooded.
    """

    #: The exposures (min, max, in ms) a camera of this kind takes, where the kind knows them
    #: without asking the device; None: it cannot say. Exposure controls keep to it (the
    #: wizard's). A driver that reads the range from its camera overrides `exposure_range_ms`.
    EXPOSURE_RANGE_MS: ClassVar[tuple[float, float] | None] = None

    def __init__(
        self,
        *,
        exposure_ms: float = 10.0,
        gain: float = 1.0,
        clock: Clock | None = None,
        position_source: Callable[[], Position] | None = None,
        buffer_size: int = 4,
    ) -> None:
        self.exposure_ms = float(exposure_ms)
        self.gain = float(gain)
        self.clock: Clock = clock or RealClock()
        self.position_source = position_source
        self._buffer: collections.deque[Frame] = collections.deque(maxlen=max(1, buffer_size))
        self._stream_thread: threading.Thread | None = None
        self._stream_stop = threading.Event()
        self._snap_lock = threading.Lock()
        self.frames_streamed = 0
        self.stream_error: BaseException | None = None

    @property
    @abc.abstractmethod
    def shape(self) -> tuple[int, ...]: ...

    @property
    @abc.abstractmethod
    def dtype(self) -> np.dtype: ...

    @property
    @abc.abstractmethod
    def pixel_size_um(self) -> float: ...

    @property
    def exposure_range_ms(self) -> tuple[float, float] | None:
        """(min, max) exposure in ms this camera takes; None where it cannot say."""
        return self.EXPOSURE_RANGE_MS

    @abc.abstractmethod
    def _acquire(self) -> tuple[np.ndarray, dict[str, Any]]:
        """Expose and read one image; return it with extra metadata."""

    def snap(self) -> Frame:
        with self._snap_lock:
            position = self.position_source() if self.position_source else None
            image, meta = self._acquire()
            return Frame(
                image=image,
                timestamp=self.clock.now(),
                exposure_ms=self.exposure_ms,
                gain=self.gain,
                position=position,
                pixel_size_um=self.pixel_size_um,
                meta=meta,
            )

    # -- streaming ---------------------------------------------------------------------------
    @property
    def streaming(self) -> bool:
        return self._stream_thread is not None and self._stream_thread.is_alive()

    def start_stream(self) -> None:
        if self.streaming:
            return
        self._stream_stop.clear()
        self.stream_error = None
        self._stream_thread = threading.Thread(
            target=self._stream_loop, name=f"{type(self).__name__}-stream", daemon=True
        )
        self._stream_thread.start()

    def stop_stream(self, timeout_s: float = 5.0) -> None:
        self._stream_stop.set()
        t = self._stream_thread
        if t is not None:
            t.join(timeout_s)
            if t.is_alive():
                raise DeviceTimeout(f"camera stream did not stop within {timeout_s} s")
        self._stream_thread = None

    def latest_frame(self) -> Frame | None:
        try:
            return self._buffer[-1]
        except IndexError:
            return None

    def _stream_loop(self) -> None:
        while not self._stream_stop.is_set():
            try:
                frame = self.snap()
            except BaseException as exc:  # reported to the viewer, never raised in a thread
                self.stream_error = exc
                return
            self._buffer.append(frame)
            self.frames_streamed += 1
            self._stream_pause()

    def _stream_pause(self) -> None:  # noqa: B027 - optional hook
        """Hook: a simulated camera may sleep here to pace the stream at its frame rate."""

    def close(self) -> None:
        if self.streaming:
            self.stop_stream()
