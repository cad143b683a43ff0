"""Hardware profiles: which stage, camera and objectives a microscope has, as validated TOML.

A profile is a TOML file checked by pydantic (`HardwareProfile`). Names resolve first in the
person's config folder (`user_profile_dir()`, e.g. ~/.config/slidescan/profiles/NAME.toml),
then among the shipped examples in `slidescan/resources/profiles/`; a path to a .toml file
works too. `simulator` is the default profile.

    prof = load_profile("simulator")
    m = open_microscope(prof, objective="20x/0.75")   # a Microscope

The stage and camera types a profile can name, and what each one's `[stage]` / `[camera]`
table holds, come from `slidescan.hardware.registry`. A malformed file or an invalid field is
one line naming the file and the field (`ProfileError`, a `ValueError`).

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
from typing import Any

import platformdirs
import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from slidescan.hardware.base import Camera, Position
from slidescan.hardware.clock import RealClock
from slidescan.hardware.microscope import Microscope
from slidescan.hardware.optics import OBJECTIVES, Objective, OpticalPath
from slidescan.hardware.registry import (
    CameraConfig,
    PhysicalCameraConfig,
    StageConfig,
    camera_kind,
    stage_kind,
)

DEFAULT_PROFILE = "simulator"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ProfileError(ValueError):
    """A profile that cannot be found, parsed or validated; the message is one line."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


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


class CameraMountConfig(_Model):
    """How the camera sits relative to the stage axes, as `slidescan hw calibrate-camera`
    measured it: a specimen point at image pixel (u, v) lies at stage + pixel_size *
    R(rotation_deg) @ F @ ((u, v) - centre), F mirroring x when `flipped`."""

    rotation_deg: float = Field(default=0.0, ge=-180.0, le=180.0)
    flipped: bool = False


class HardwareProfile(_Model):
    """One microscope: stage, camera, objectives, and (for the simulator) its configuration."""

    name: str = Field(min_length=1)
    description: str = ""
    #: Validated as the model of the kind its `type` names (`slidescan.hardware.registry`);
    #: `SerializeAsAny` makes a dump (and so `save_profile`) write that kind's own fields.
    stage: SerializeAsAny[StageConfig]
    camera: SerializeAsAny[CameraConfig]
    objectives: list[ObjectiveConfig] = Field(min_length=1)
    #: Objective used when none is named; None: the first one.
    default_objective: str | None = None
    #: Passed to `slidescan.hardware.sim.SimConfig` for a simulated microscope.
    simulator: dict[str, Any] | None = None
    #: The camera's rotation and mirroring against the stage (None: square, unmeasured).
    camera_mount: CameraMountConfig | None = None
    #: (x0, y0, x1, y1) stage um of the slide holder's opening: what a pre-scan for the
    #: slide's overview covers (`slidescan scan --tissue` on hardware). None: not set up.
    slide_area_um: tuple[float, float, float, float] | None = None

    @field_validator("slide_area_um")
    @classmethod
    def _ordered_area(
        cls, v: tuple[float, float, float, float] | None
    ) -> tuple[float, float, float, float] | None:
        if v is not None and not (v[2] > v[0] and v[3] > v[1]):
            raise ValueError(f"slide_area_um {v}: need x1 > x0 and y1 > y0")
        return v

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
        sim_stage = stage_kind(self.stage.type).simulated
        sim_camera = camera_kind(self.camera.type).simulated
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
            sensor = (
                self.camera.sensor_pixel_um
                if isinstance(self.camera, PhysicalCameraConfig)
                else None
            )
            if sensor is None and any(o.pixel_size_um is None for o in self.objectives):
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
        return stage_kind(self.stage.type).simulated

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
        assert isinstance(self.camera, PhysicalCameraConfig)
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
    """Connect the stage a profile describes (not the simulator's: `open_microscope`)."""
    kind = stage_kind(stage.type)
    if kind.open is None:
        raise ProfileError(
            f"stage type {stage.type!r} opens with its simulated microscope (open_microscope)"
        )
    return kind.open(stage)


def open_camera(
    profile: HardwareProfile,
    objective: str | None = None,
    *,
    capture_factory: Callable[[int, int], Any] | None = None,
    position_source: Callable[[], Position | None] | None = None,
) -> Camera:
    """Open the camera a profile describes (not the simulator's: `open_microscope`).

    `capture_factory` stands in for the camera's capture back end (OpenCV's `VideoCapture`) in
    tests.
    """
    kind = camera_kind(profile.camera.type)
    if kind.open is None:
        raise ProfileError(
            f"camera type {profile.camera.type!r} opens with its simulated microscope "
            "(open_microscope)"
        )
    return kind.open(
        profile.camera,
        pixel_size_um=profile.optical_path(objective).pixel_size_um,
        position_source=position_source,
        capture_factory=capture_factory,
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
