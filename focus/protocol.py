"""The focus layer's contracts: what a focus method may ask of a device, and what it returns.

Z convention (DESIGN.md): `z_um` is the focus-drive coordinate in um; defocus = z - true focus.
A method returns the z it believes is in focus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np


class FocusError(Exception):
    """A focus method could not produce a result (bad input, corrupt model, no signal)."""


@runtime_checkable
class OpticsLike(Protocol):
    """The optics' numbers a focus method may use."""

    @property
    def na(self) -> float: ...

    @property
    def immersion_n(self) -> float: ...

    @property
    def magnification(self) -> float: ...

    @property
    def pixel_size_um(self) -> float: ...

    @property
    def wavelength_um(self) -> float: ...

    @property
    def depth_of_field_um(self) -> float: ...


@runtime_checkable
class FrameLike(Protocol):
    """Anything with an `image` array (H, W) or (H, W, C)."""

    image: np.ndarray


@runtime_checkable
class FocusDevice(Protocol):
    """Move Z, read Z, snap a frame, read the optics and the hardware clock.

    `move_z` is absolute and returns when the move is done. Implementations refuse targets
    outside `z_limits`; focus methods clamp before asking (see `focus.safety`).
    """

    @property
    def optics(self) -> OpticsLike: ...

    @property
    def z_limits(self) -> tuple[float, float]: ...

    def move_z(self, z_um: float) -> None: ...

    def get_z(self) -> float: ...

    def snap(self) -> FrameLike: ...

    def now(self) -> float:
        """Hardware clock in seconds (virtual on the simulator)."""
        ...


@dataclass(frozen=True)
class ZApproach:
    """How the caller left Z: it brought the drive to `z_um` moving up, the last leg
    `travel_um` long (the scan runner does this during the XY move to a tile, where the
    method's `approach_z` asked). A `ZGuard` adopts it (`ZGuard.adopt`) when that travel takes
    up its drive's play, so the method's first frame there needs no move of its own."""

    z_um: float
    travel_um: float


@dataclass(frozen=True)
class FocusHint:
    """Where focus is expected: the previous tile's focus or a focus-map prediction.

    `range_um` is how far off the hint may be (None: the method's default search range).
    `approach`: where and how the caller already brought Z (None: unknown; see `ZApproach`).
    """

    z_um: float
    range_um: float | None = None
    source: str = ""
    approach: ZApproach | None = None


@dataclass
class FocusCurve:
    """What a method measured, for plots: a metric (or a prediction) against z."""

    z_um: np.ndarray
    values: np.ndarray
    kind: Literal["metric", "prediction"] = "metric"
    label: str = ""

    @classmethod
    def empty(cls) -> FocusCurve:
        return cls(np.zeros(0), np.zeros(0))


@dataclass
class FocusResult:
    """Outcome of one focus run.

    `ok` is False when the method failed; `z_um` is then the best guess (often the hint) and
    the caller decides on a fallback. `confidence` is in [0, 1]. `final_frame` is a frame taken
    at `z_um` when the method took one (so the scan need not snap again).
    """

    z_um: float
    frames: int
    hardware_s: float
    compute_s: float
    confidence: float
    curve: FocusCurve = field(default_factory=FocusCurve.empty)
    method: str = ""
    ok: bool = True
    message: str = ""
    final_frame: Any | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready record (no arrays) for scan files and reports."""
        return {
            "method": self.method,
            "z_um": float(self.z_um),
            "frames": int(self.frames),
            "hardware_s": float(self.hardware_s),
            "compute_s": float(self.compute_s),
            "confidence": float(self.confidence),
            "ok": bool(self.ok),
            "message": self.message,
            **{k: v for k, v in self.extra.items() if isinstance(v, (int, float, str, bool))},
        }


@runtime_checkable
class FocusMethod(Protocol):
    """Every focus method, classical or learned, has one entry point.

    A method may also offer `approach_z(device, hint) -> float | None`: its first position,
    where Z should be when `focus` starts, reached moving up (None: no preference). The scan
    runner then brings Z there from below together with the XY move to the tile (through a
    point the drive's play further down) and says so in `hint.approach`, so the method's
    first frame costs no move of its own. `focus` must still work from wherever Z is: it
    never assumes the runner did this, and adopts `hint.approach` through `ZGuard.adopt`,
    which checks it.
    """

    name: str

    def focus(self, device: FocusDevice, hint: FocusHint) -> FocusResult: ...


#: Appended to the method name of a calibration tile's result, so a scan file's records (and
#: the bench) tell those tiles apart: "diffcnn+calibration".
CALIBRATION_SUFFIX = "+calibration"


@runtime_checkable
class SlideCalibrated(Protocol):
    """A focus method that learns something constant over one slide from its first tiles
    (diffcnn fits a gain and an offset against short sweeps on its first `calibrate_tiles` tiles).

    One method instance serves one scan, so a scan needs nothing of this. It is for a caller
    that runs one instance over several slides or wants the calibration held still: the focus
    eval resets it per stack, calibrates on the *other* fields of the same stack file, then
    sets `calibration_frozen` so the scored trials never calibrate on the field they score.
    """

    calibrate_tiles: int
    calibration_frozen: bool

    def reset_calibration(self) -> None: ...

    def calibration_count(self) -> int: ...


def z_play_um(device: object) -> float | None:
    """The focus drive's uncompensated play in um, if the device says (optional attribute
    `z_backlash_um`: 0 for a drive without play or one that compensates itself, None or absent
    when unknown). A bad value counts as unknown."""
    try:
        play = getattr(device, "z_backlash_um", None)
        if play is None:
            return None
        play = float(play)
    except (TypeError, ValueError):
        return None
    return play if math.isfinite(play) and play >= 0 else None


def depth_of_field_um(na: float, immersion_n: float = 1.0, wavelength_um: float = 0.55) -> float:
    """Full wave-optical depth of field, lambda / (2 n (1 - cos theta)), sin theta = NA / n.

    Same definition as the hardware layer's; kept here so focus does not import hardware.
    20x/0.75 dry at 0.55 um: 0.81 um, so 'within half the depth of field' means |err| <= 0.41 um.
    """
    if not 0 < na < immersion_n:
        raise ValueError(f"NA {na} must lie in (0, n={immersion_n})")
    return wavelength_um / (2.0 * immersion_n * (1.0 - math.sqrt(1.0 - (na / immersion_n) ** 2)))
