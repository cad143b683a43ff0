"""The focus layer's contracts (version 2): what a focus method may ask of a device, what it
is told, what it returns, and how a method declares itself.

Z convention (DESIGN.md): `z_um` is the focus-drive coordinate in um; defocus = z - true focus.
A method returns the z it believes is in focus, an image it made, or both.

- `FocusDevice`: what hardware offers a focus method, structurally (move Z, read Z, snap, the
  optics, the clock, the soft limits and the drive's play). Methods never command it directly:
  they get a `slidescan.focus.drive.FocusDrive`, the one object that commands the focus drive.
- `FocusMethod`: the base class of every method, classical or learned. Capabilities are
  declared on the class (`makes_image`, `Params`) or as methods with defaults (`prepare`,
  `first_z`), never discovered with getattr.
- `FocusParams`: a method's typed, validated parameters (pydantic). The CLI validates
  `--param` against it and the GUI builds its form from it.
- `FocusResult`: the outcome: a z and/or a `MadeImage` (with the shots it came from) or a
  `DeferredImage` (shots whose image the method makes later, off the scan thread), one
  `Fallback` field when another method settled the tile, and whether the tile was a per-slide
  calibration tile.
- `ImageMaker`: the capability of a method whose images are made from raw shots after the tile
  (TSVA fuses two shots): the scan never waits for it.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from slidescan.focus.drive import FocusDrive


class FocusError(Exception):
    """A focus method could not produce a result (bad input, corrupt model, no signal)."""


@runtime_checkable
class OpticsLike(Protocol):
    """The optics' numbers a focus method may use. `objective_name` is like '20x/0.75' (a
    learned method picks its shipped weights by it)."""

    @property
    def objective_name(self) -> str: ...

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
    """A frame: an `image` array (H, W) or (H, W, C) and its metadata (`meta`; a simulator or
    a replayed stack puts `true_focus_um` and `true_position_um` there)."""

    image: np.ndarray
    meta: Mapping[str, Any]


@runtime_checkable
class FocusDevice(Protocol):
    """Move Z, read Z, snap a frame, read the optics, the clock, the limits and the play.

    `move_z` is absolute and returns when the move is done; implementations refuse targets
    outside `z_limits`. `z_play_um` is the drive's uncompensated play in um: 0 for a drive
    without play or one that compensates itself, None when unknown.
    """

    @property
    def optics(self) -> OpticsLike: ...

    @property
    def z_limits(self) -> tuple[float, float]: ...

    @property
    def z_play_um(self) -> float | None: ...

    def move_z(self, z_um: float) -> None: ...

    def get_z(self) -> float: ...

    def snap(self) -> FrameLike: ...

    def now(self) -> float:
        """Hardware clock in seconds (virtual on the simulator)."""
        ...


@dataclass(frozen=True)
class FocusHint:
    """Where focus is expected: the previous tile's focus or a focus-map prediction.

    `range_um` is how far off the hint may be (None: the method's default search range).
    `start_z_um`: where the caller already brought the drive, approached from below, because
    the method asked for it (`FocusMethod.first_z`); None when it did not.
    """

    z_um: float
    range_um: float | None = None
    source: str = ""
    start_z_um: float | None = None


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


@dataclass(frozen=True)
class Fallback:
    """Another method (or the scan's predicted z) settled the tile: which, and why."""

    to: str
    reason: str


@dataclass(frozen=True)
class Shot:
    """One raw exposure a method took and kept: where, and the frame."""

    z_um: float
    frame: FrameLike


@dataclass
class MadeImage:
    """An image a method made instead of (or beside) a capture at a z: two shots fused, say.

    `image` is the tile's image, camera-shaped and camera-typed; `shots` the raw exposures it
    came from (kept as evidence in the scan file); `kind` says how it was made ("fused",
    "mean", ...).
    """

    image: np.ndarray
    shots: tuple[Shot, ...]
    kind: str


@dataclass
class DeferredImage:
    """Raw shots whose tile image the method will make later (`ImageMaker.make_image`), off
    the scan thread, so the stage never waits for the computation. `shots` in the method's
    order: the first is the one to show until the image is made; `kind` says how it will be
    made ("fused", ...)."""

    shots: tuple[Shot, ...]
    kind: str


@dataclass
class FocusResult:
    """Outcome of one focus run.

    `z_um` is the z the method believes is in focus; None when it made an image and measured
    no z. `ok` is False when the method failed (`z_um` is then its best guess, often the hint,
    and the caller decides). `confidence` is in [0, 1]. `final_frame` is a frame taken at
    `z_um` when the method took one (so the scan need not snap again); `made` an image the
    method made; `deferred` shots whose image the method makes later (`ImageMaker`). For a
    result with an image (made or deferred), `confidence` is that of its z alone: the image is
    used whatever it is. `fallback` says another method settled the tile, and why.
    `calibration` marks a per-slide calibration tile (its extra frames are by design). `extra`
    holds the method's own numbers for reports (JSON scalars).
    """

    z_um: float | None
    frames: int
    hardware_s: float
    compute_s: float
    confidence: float
    curve: FocusCurve = field(default_factory=FocusCurve.empty)
    method: str = ""
    ok: bool = True
    message: str = ""
    final_frame: FrameLike | None = None
    made: MadeImage | None = None
    deferred: DeferredImage | None = None
    fallback: Fallback | None = None
    calibration: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready record (no arrays) for scan files and reports."""
        return {
            "method": self.method,
            "z_um": None if self.z_um is None else float(self.z_um),
            "frames": int(self.frames),
            "hardware_s": float(self.hardware_s),
            "compute_s": float(self.compute_s),
            "confidence": float(self.confidence),
            "ok": bool(self.ok),
            "message": self.message,
            "made": (
                self.made.kind
                if self.made is not None
                else (None if self.deferred is None else self.deferred.kind)
            ),
            "deferred": self.deferred is not None,
            "fallback": None if self.fallback is None else self.fallback.to,
            "calibration": bool(self.calibration),
            **{k: v for k, v in self.extra.items() if isinstance(v, (int, float, str, bool))},
        }


class FocusParams(BaseModel):
    """Base of every method's parameter model: frozen, unknown names refused, no NaN or
    infinity unless a field allows it. A field's `description` is its help text in the CLI
    and the GUI form."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class FocusMethod(abc.ABC):
    """Every focus method, classical or learned.

    Declared on the class:
    - `name`: the registry name; `Params`: the parameter model (validated at construction:
      `ZSweep(step_um=0.5)` or `ZSweep(ZSweep.Params(step_um=0.5))`);
    - `makes_image`: the method may return a `MadeImage` instead of measuring a z.

    Methods with defaults a subclass overrides where it has something to say:
    - `prepare(optics)`: once per scan (and per stack file in an evaluation), before any tile:
      load and choose models for these optics, warm up. Slow work belongs here, not in the
      first tile;
    - `first_z(drive, hint)`: the method's first position for this tile (None: no wish). The
      scan engine brings the drive there from below during the XY move to the tile and says
      so in `FocusHint.start_z_um`, so the first exposure needs no move of its own.

    `focus(drive, hint)` does the work; it must still work from wherever the drive stands
    (a caller may not have honoured `first_z`).
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[FocusParams]] = FocusParams
    makes_image: ClassVar[bool] = False

    def __init__(self, params: FocusParams | None = None, /, **kwargs: Any) -> None:
        if params is not None and kwargs:
            raise TypeError(f"{type(self).__name__}: give a Params object or keywords, not both")
        if params is None:
            params = self.Params(**kwargs)
        elif not isinstance(params, self.Params):
            raise TypeError(f"{type(self).__name__} takes {self.Params.__name__}")
        self.params = params

    def prepare(self, optics: OpticsLike) -> None:  # noqa: B027 - optional hook
        """Get ready for these optics (see the class docstring)."""

    def first_z(self, drive: FocusDrive, hint: FocusHint) -> float | None:
        """Where this tile's first exposure will be (see the class docstring)."""
        return None

    @abc.abstractmethod
    def focus(self, drive: FocusDrive, hint: FocusHint) -> FocusResult:
        """Focus one field through `drive`, starting from `hint`."""


class ImageMaker(abc.ABC):
    """A focus method that makes a tile's image from its raw shots after the tile, off the scan
    thread (TSVA fuses two shots). Declared by inheriting from this class; its `focus` returns
    the shots as a `DeferredImage`.

    The scan hands the shots to a bounded background worker that calls `make_image`; when the
    worker falls behind, the scan goes on and the backlog is finished after the last tile (a
    killed scan finishes it on resume, `slidescan refocus` remakes them all). So `make_image`
    may run on another thread while `focus` runs for a later tile, and must not touch the
    hardware. `prepare` has been called before it.
    """

    #: what `MadeImage.kind` / the file's `made_kind` says of the images it makes
    image_kind: ClassVar[str] = "made"

    @abc.abstractmethod
    def make_image(self, shots: Sequence[tuple[float, np.ndarray]]) -> np.ndarray:
        """The tile's image from its (z, image) shots, in the shots' dtype and shape."""


class SlideCalibrated(abc.ABC):
    """A focus method that learns something constant over one slide from its first tiles
    (diffcnn fits a gain and an offset against short sweeps on its first `calibrate_tiles`
    tiles). Declared by inheriting from this class.

    One method instance serves one scan, so a scan needs nothing of this. It is for a caller
    that runs one instance over several slides or wants the calibration held still: the focus
    eval resets it per stack, calibrates on the *other* fields of the same stack file, then
    sets `calibration_frozen` so the scored trials never calibrate on the field they score.
    """

    calibrate_tiles: int
    calibration_frozen: bool

    @abc.abstractmethod
    def reset_calibration(self) -> None: ...

    @abc.abstractmethod
    def calibration_count(self) -> int: ...


def depth_of_field_um(na: float, immersion_n: float = 1.0, wavelength_um: float = 0.55) -> float:
    """Full wave-optical depth of field, lambda / (2 n (1 - cos theta)), sin theta = NA / n.

    Same definition as the hardware layer's; kept here so focus does not import hardware.
    20x/0.75 dry at 0.55 um: 0.81 um, so 'within half the depth of field' means |err| <= 0.41 um.
    """
    if not 0 < na < immersion_n:
        raise ValueError(f"NA {na} must lie in (0, n={immersion_n})")
    return wavelength_um / (2.0 * immersion_n * (1.0 - math.sqrt(1.0 - (na / immersion_n) ** 2)))
