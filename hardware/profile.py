"""Hardware profiles: which stage, camera and objectives a microscope has, as validated TOML.

A profile is a TOML file checked by pydantic (`HardwareProfile`). Names resolve first in the
person's config folder (`user_profile_dir()`, e.g. ~/.config/slidescan/profiles/NAME.toml),
then among the shipped examples in `slidescan/resources/profiles/`; a path to a .toml file
works too. `simulator` is the default profile.

    prof = load_profile("simulator")
    m = open_microscope(prof, objective="20x/0.75")   # a Microscope

A malformed file or an invalid field is one line naming the file and the field
(`ProfileError`, a `ValueError`).

Units: every length is in um, except the per-axis `units_per_um`, which is the controller's
native units per um (GRBL speaks mm: 0.001; ASI tenths of a micron: 10; Prior: steps or
microns, per its RES setting). The simulator's stage, camera and optics live in the
`[simulator]` table, which is passed to `slidescan.hardware.sim.SimConfig` as it is.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import platformdirs
import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from slidescan.hardware.base import AxisCalibration, SoftLimits
from slidescan.hardware.clock import RealClock
from slidescan.hardware.microscope import Microscope
from slidescan.hardware.optics import OBJECTIVES, Objective, OpticalPath

StageType = Literal["sim", "grbl", "prior", "asi"]
Axis = Literal["x", "y", "z"]
Range = tuple[float, float]
DEFAULT_PROFILE = "simulator"
#: GRBL's documentation advises status polls at 5 Hz or less.
GRBL_MIN_POLL_INTERVAL_S = 0.2
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ProfileError(ValueError):
    """A profile that cannot be found, parsed or validated; the message is one line."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AxisConfig(_Model):
    """One stage axis: unit conversion, direction, backlash and speed."""

    #: Native controller units per um; None takes the driver's own (GRBL 0.001, ASI 10, Prior 1).
    units_per_um: float | None = Field(default=None, gt=0)
    #: -1 when the controller counts the other way than the stage frame.
    sign: Literal[1, -1] = 1
    #: Software backlash compensation: approach every target from below by this much.
    backlash_um: float = Field(default=0.0, ge=0, le=1000)
    #: Move speed (GRBL jog feed); None: the controller's maximum rate.
    speed_um_s: float | None = Field(default=None, gt=0)


class LimitsConfig(_Model):
    """Soft limits in stage um; no move outside is ever commanded."""

    x_um: Range
    y_um: Range
    z_um: Range

    @field_validator("x_um", "y_um", "z_um")
    @classmethod
    def _ordered(cls, v: Range) -> Range:
        if not v[0] < v[1]:
            raise ValueError(f"lower limit {v[0]} must be below upper limit {v[1]}")
        return v


class TimingConfig(_Model):
    """How long to wait for what."""

    reply_timeout_s: float = Field(default=1.0, gt=0, le=60)
    move_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    #: Time between completion polls; None: the driver's default (GRBL 0.2 s, ASI 0.05 s,
    #: Prior 0.25 s). GRBL refuses less than 0.2 s.
    poll_interval_s: float | None = Field(default=None, gt=0, le=5)
    #: GRBL: wait this long for the start-up banner after opening the port.
    boot_timeout_s: float = Field(default=2.5, ge=0, le=60)
    home_timeout_s: float = Field(default=120.0, gt=0, le=3600)


class StageConfig(_Model):
    """The stage controller. A simulated stage is configured in `[simulator]` instead."""

    type: StageType
    #: Serial port: /dev/ttyUSB0, COM3, or a pyserial URL (fakegrbl://, rfc2217://host:port).
    port: str | None = None
    #: Baud rate; None: the controller's default (GRBL 115200, Prior 9600, ASI 9600).
    baud: int | None = Field(default=None, gt=0)
    axes: dict[Axis, AxisConfig] = Field(default_factory=dict)
    limits: LimitsConfig | None = None
    timing: TimingConfig = Field(default_factory=TimingConfig)
    #: How far from its target a stage may come to rest before the move counts as failed;
    #: None: the driver's default.
    tolerance_um: float | None = Field(default=None, gt=0, le=100)

    @model_validator(mode="after")
    def _consistent(self) -> StageConfig:
        if self.type == "sim":
            extra = [k for k in ("port", "baud", "limits", "tolerance_um") if getattr(self, k)]
            if extra or self.axes:
                names = ", ".join(extra + (["axes"] if self.axes else []))
                raise ValueError(
                    f"a 'sim' stage takes no {names}: configure it in the [simulator.stage] table"
                )
            return self
        if not self.port:
            raise ValueError(f"a '{self.type}' stage needs a port (e.g. /dev/ttyUSB0 or COM3)")
        if self.limits is None:
            raise ValueError(f"a '{self.type}' stage needs [stage.limits] x_um, y_um and z_um")
        poll = self.timing.poll_interval_s
        if self.type == "grbl" and poll is not None and poll < GRBL_MIN_POLL_INTERVAL_S:
            raise ValueError(
                f"timing.poll_interval_s = {poll} s: GRBL must be polled at 5 Hz or less "
                f"(>= {GRBL_MIN_POLL_INTERVAL_S} s)"
            )
        return self

    def soft_limits(self) -> SoftLimits:
        if self.limits is None:
            return SoftLimits()
        return SoftLimits(x=self.limits.x_um, y=self.limits.y_um, z=self.limits.z_um)


class CameraConfig(_Model):
    """The camera. A simulated camera is configured in `[simulator.camera]` instead."""

    type: Literal["sim", "opencv"]
    index: int = Field(default=0, ge=0, le=63)
    backend: Literal["auto", "v4l2", "dshow", "msmf", "avfoundation"] = "auto"
    width: int | None = Field(default=None, gt=0)
    height: int | None = Field(default=None, gt=0)
    exposure_ms: float | None = Field(default=None, gt=0, le=60000)
    gain: float | None = Field(default=None, ge=0)
    #: Pixel pitch of the sensor; pixel size at the specimen = this / magnification, unless an
    #: objective gives a calibrated `pixel_size_um`.
    sensor_pixel_um: float | None = Field(default=None, gt=0, le=50)

    @model_validator(mode="after")
    def _size(self) -> CameraConfig:
        if (self.width is None) != (self.height is None):
            raise ValueError("give camera width and height together")
        return self


class ObjectiveConfig(_Model):
    """An objective. A shipped name ('20x/0.75') fills magnification and NA by itself."""

    name: str = Field(min_length=1)
    magnification: float | None = Field(default=None, gt=0, le=200)
    na: float | None = Field(default=None, gt=0, lt=1.6)
    immersion_n: float = Field(default=1.0, ge=1.0, le=1.6)
    #: Calibrated pixel size at the specimen (measured with a stage micrometer); wins over
    #: the camera's sensor_pixel_um / magnification.
    pixel_size_um: float | None = Field(default=None, gt=0, le=100)

    @model_validator(mode="after")
    def _fill(self) -> ObjectiveConfig:
        known = OBJECTIVES.get(self.name)
        if known is not None:
            self.magnification = self.magnification or known.magnification
            self.na = self.na or known.na
        if self.magnification is None or self.na is None:
            raise ValueError(
                f"objective {self.name!r}: give magnification and na (or use a known name: "
                f"{', '.join(OBJECTIVES)})"
            )
        if not self.na < self.immersion_n:
            raise ValueError(
                f"objective {self.name!r}: NA {self.na} must be below n={self.immersion_n}"
            )
        return self

    def objective(self) -> Objective:
        assert self.magnification is not None and self.na is not None
        return Objective(self.name, self.magnification, self.na, self.immersion_n)


class HardwareProfile(_Model):
    """One microscope: stage, camera, objectives, and (for the simulator) its configuration."""

    name: str = Field(min_length=1)
    description: str = ""
    stage: StageConfig
    camera: CameraConfig
    objectives: list[ObjectiveConfig] = Field(min_length=1)
    #: Objective used when none is named; None: the first one.
    default_objective: str | None = None
    #: Passed to `slidescan.hardware.sim.SimConfig` for a simulated microscope.
    simulator: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> HardwareProfile:
        names = [o.name for o in self.objectives]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"objective names must be unique; repeated: {', '.join(dupes)}")
        if self.default_objective is None:
            self.default_objective = names[0]
        elif self.default_objective not in names:
            raise ValueError(
                f"default_objective {self.default_objective!r} is not among the objectives "
                f"({', '.join(names)})"
            )
        sim_stage, sim_camera = self.stage.type == "sim", self.camera.type == "sim"
        if sim_stage != sim_camera:
            raise ValueError(
                "the simulator needs both stage and camera of type 'sim' (its camera images "
                "the simulated slide under the simulated stage)"
            )
        if sim_stage:
            unknown = [n for n in names if n not in OBJECTIVES]
            if unknown:
                raise ValueError(
                    f"the simulator knows the objectives {', '.join(OBJECTIVES)}, not "
                    f"{', '.join(unknown)}"
                )
            self._check_simulator()
        else:
            if self.simulator is not None:
                raise ValueError("a [simulator] table needs stage and camera of type 'sim'")
            if self.camera.sensor_pixel_um is None and any(
                o.pixel_size_um is None for o in self.objectives
            ):
                raise ValueError(
                    "give camera.sensor_pixel_um, or a calibrated pixel_size_um for every objective"
                )
        return self

    def _check_simulator(self) -> None:
        try:
            from slidescan.hardware.sim import SimConfig
        except ImportError:  # the simulator package is optional at validation time
            return
        try:
            SimConfig.model_validate(self.simulator or {})
        except ValidationError as exc:
            raise ValueError(_one_line(exc, prefix="simulator")) from None

    # -- derived -------------------------------------------------------------------------------
    @property
    def is_simulated(self) -> bool:
        return self.stage.type == "sim"

    def objective(self, name: str | None = None) -> ObjectiveConfig:
        """The objective called `name` (None: the default one)."""
        wanted = name or self.default_objective
        for o in self.objectives:
            if o.name == wanted:
                return o
        known = ", ".join(o.name for o in self.objectives)
        raise ProfileError(f"profile {self.name!r} has no objective {wanted!r}; it has: {known}")

    def sensor_pixel_um(self, name: str | None = None) -> float:
        o = self.objective(name)
        if self.is_simulated:
            optics = (self.simulator or {}).get("optics", {})
            return float(optics.get("sensor_pixel_um", 6.5))
        if o.pixel_size_um is not None:
            assert o.magnification is not None
            return o.pixel_size_um * o.magnification
        assert self.camera.sensor_pixel_um is not None
        return self.camera.sensor_pixel_um

    def optical_path(self, name: str | None = None) -> OpticalPath:
        return OpticalPath(
            self.objective(name).objective(), sensor_pixel_um=self.sensor_pixel_um(name)
        )


# -- files ---------------------------------------------------------------------------------------
def user_profile_dir() -> Path:
    """The person's own profiles (created on first save)."""
    return Path(platformdirs.user_config_dir("slidescan", appauthor=False)) / "profiles"


def _shipped_dir() -> Path:
    from slidescan.resources import resource_path

    return resource_path("profiles")


def list_profiles() -> list[str]:
    """Names of the person's profiles and the shipped ones, sorted, without duplicates."""
    names: set[str] = set()
    for folder in (user_profile_dir(), _shipped_dir()):
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.toml"))
    return sorted(names)


def profile_path(name_or_path: str | os.PathLike[str]) -> Path:
    """Where a profile name (user folder first, then shipped) or path points."""
    text = os.fspath(name_or_path)
    if text.endswith(".toml") or "/" in text or os.sep in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ProfileError(f"no profile file {path}")
        return path
    for folder in (user_profile_dir(), _shipped_dir()):
        path = folder / f"{text}.toml"
        if path.is_file():
            return path
    raise ProfileError(f"unknown profile {text!r}; known profiles: {', '.join(list_profiles())}")


def load_profile(name_or_path: str | os.PathLike[str] = DEFAULT_PROFILE) -> HardwareProfile:
    """Read and validate a profile by name or path; `ProfileError` names file and field."""
    path = profile_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read: {exc}") from None
    try:
        return HardwareProfile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"{path}: {_one_line(exc)}") from None


def save_profile(profile: HardwareProfile, name: str) -> Path:
    """Write `profile` as NAME.toml into the user profile folder; returns the path."""
    name = name.removesuffix(".toml")
    if not _NAME.match(name):
        raise ProfileError(
            f"profile name {name!r}: use letters, digits, '.', '_' and '-' (no folders)"
        )
    folder = user_profile_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    text = tomli_w.dumps(_drop_none(profile.model_dump(mode="json")))
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _drop_none(value: Any) -> Any:
    """TOML has no null: leave out what is None (it means 'the default' everywhere here)."""
    if isinstance(value, Mapping):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_drop_none(v) for v in value]
    return value


def _one_line(exc: ValidationError, prefix: str = "") -> str:
    errors = exc.errors()
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"])
    if prefix:
        loc = f"{prefix}.{loc}" if loc else prefix
    msg = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{loc}: {msg}{more}" if loc else f"{msg}{more}"


# -- opening devices ------------------------------------------------------------------------------
def open_stage(stage: StageConfig) -> Any:
    """Connect the serial stage a profile describes (not the simulator's)."""
    from slidescan.hardware.drivers.asi import AsiStage
    from slidescan.hardware.drivers.grbl import GrblStage
    from slidescan.hardware.drivers.prior import PriorStage

    classes = {"grbl": GrblStage, "prior": PriorStage, "asi": AsiStage}
    if stage.type not in classes:
        raise ProfileError(f"stage type {stage.type!r} is not a serial stage")
    cls = classes[stage.type]
    calibration = {
        a: AxisCalibration(units_per_um=cfg.units_per_um or cls.native_units_per_um, sign=cfg.sign)
        for a, cfg in stage.axes.items()
    }
    kwargs: dict[str, Any] = {
        "limits": stage.soft_limits(),
        "calibration": calibration,
        "backlash_um": {a: cfg.backlash_um for a, cfg in stage.axes.items()},
        "move_timeout_s": stage.timing.move_timeout_s,
        "reply_timeout_s": stage.timing.reply_timeout_s,
    }
    if stage.baud is not None:
        kwargs["baudrate"] = stage.baud
    if stage.timing.poll_interval_s is not None:
        kwargs["poll_interval_s"] = stage.timing.poll_interval_s
    if stage.tolerance_um is not None:
        kwargs["tolerance_um"] = stage.tolerance_um
    if stage.type == "grbl":
        kwargs["speed_um_s"] = {
            a: cfg.speed_um_s for a, cfg in stage.axes.items() if cfg.speed_um_s is not None
        }
        kwargs["boot_timeout_s"] = stage.timing.boot_timeout_s
        kwargs["home_timeout_s"] = stage.timing.home_timeout_s
    assert stage.port is not None
    return cls(stage.port, **kwargs)


def open_camera(
    profile: HardwareProfile,
    objective: str | None = None,
    *,
    capture_factory: Callable[[int, int], Any] | None = None,
    position_source: Callable[[], Any] | None = None,
) -> Any:
    """Open the OpenCV camera a profile describes."""
    from slidescan.hardware.drivers.opencv_camera import OpenCVCamera

    cam = profile.camera
    return OpenCVCamera(
        cam.index,
        pixel_size_um=profile.optical_path(objective).pixel_size_um,
        backend=cam.backend,
        width=cam.width,
        height=cam.height,
        exposure_ms=cam.exposure_ms,
        gain=cam.gain,
        capture_factory=capture_factory,
        position_source=position_source,
    )


def open_microscope(
    profile: HardwareProfile | str,
    objective: str | None = None,
    *,
    capture_factory: Callable[[int, int], Any] | None = None,
) -> Microscope:
    """Connect everything a profile describes; the simulator for a 'sim' profile.

    `objective` names one of the profile's objectives (None: its default). `capture_factory`
    replaces `cv2.VideoCapture` (tests).
    """
    prof = load_profile(profile) if isinstance(profile, str) else profile
    chosen = prof.objective(objective)
    if prof.is_simulated:
        from slidescan.hardware.sim import SimConfig, build_simulator

        config = {**(prof.simulator or {}), "objective": chosen.name}
        return build_simulator(SimConfig.model_validate(config))
    stage = open_stage(prof.stage)
    try:
        camera = open_camera(
            prof,
            chosen.name,
            capture_factory=capture_factory,
            position_source=stage.cached_position,
        )
    except BaseException:
        stage.close()
        raise
    return Microscope(
        stage=stage,
        camera=camera,
        optics=prof.optical_path(chosen.name),
        clock=RealClock(),
        name=prof.name,
    )
