"""The device kinds a hardware profile can name, each registered once.

A kind is what a profile's `[stage] type` or `[camera] type` says ("sim", "grbl", "prior",
"asi"; "sim", "opencv", "basler"). Its registration holds everything the program knows about
it before any driver is imported: a one-line label (the wizard's text), the pydantic model of
its profile table, how to open it and, for a serial stage, the facts about its driver (default
baud, fake controller, shipped example profile, quick test settings); for a camera, how to list
the connected ones and the optional extra its driver needs. Everything that lists
kinds (profiles, the CLI, the wizard, the fakes, the contract tests) asks here.

    stage_kind("grbl").serial.default_baud        # 115200
    [k.name for k in stage_kinds()]               # ['sim', 'grbl', 'prior', 'asi']
    StageConfig.model_validate({"type": "asi", "port": "fakeasi://", ...})  # -> AsiStageConfig

Adding a kind is one `register_stage_kind` / `register_camera_kind` call below plus its driver
module. Driver modules are imported only when a kind is opened (`SerialDriver.load`, the
openers), so validating a profile never imports a driver, and the simulator never imports
pyserial's.

Profiles written before each kind had its own table used one table for every stage (and one
for every camera) and saved every key with its default. A kind lists such keys that it has no
use for as `retired_keys`: a saved profile that holds one with its old default still loads
(the key is dropped), any other value is a one-line error naming the key.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from slidescan.hardware.base import AxisCalibration, Camera, Position, SoftLimits, Stage

if TYPE_CHECKING:
    from slidescan.hardware.drivers.serial_stage import SerialStage

Axis = Literal["x", "y", "z"]
Range = tuple[float, float]
#: GRBL's documentation advises status polls at 5 Hz or less (the driver's MIN_POLL_INTERVAL_S).
GRBL_MIN_POLL_INTERVAL_S = 0.2


# -- retired keys ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetiredKey:
    """A key older profiles wrote for every kind: accepted with its old `default`, else refused
    with `why` this kind has no use for it."""

    default: Any
    why: str


def _retire(defaults: Mapping[str, Any], why: str) -> dict[str, RetiredKey]:
    """Every key of `defaults` retired with its default there, for the same reason."""
    return {path: RetiredKey(default, why) for path, default in defaults.items()}


def _matches(node: Any, parts: list[str], loc: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Locations of the dotted path `parts` in `node` ('*' matches any key)."""
    if not isinstance(node, Mapping) or not parts:
        return
    head, rest = parts[0], parts[1:]
    for key in list(node) if head == "*" else [head] if head in node else []:
        if rest:
            yield from _matches(node[key], rest, (*loc, key))
        else:
            yield (*loc, key)


def _drop_retired_keys(
    data: Mapping[str, Any], retired: Mapping[str, RetiredKey], owner: str, title: str
) -> dict[str, Any]:
    """`data` without the retired keys that hold their old default; a `ValidationError` naming
    each one that holds anything else. Paths are listed deepest first, so a table emptied of
    its retired keys can itself be a retired key with default `{}`."""
    out = copy.deepcopy(dict(data))
    errors: list[Any] = []
    for path, key in retired.items():
        for loc in list(_matches(out, path.split("."))):
            parent = out
            for part in loc[:-1]:
                parent = parent[part]
            value = parent[loc[-1]]
            if value is None or value == key.default:
                del parent[loc[-1]]
            elif not any(e["loc"][: len(loc)] == loc for e in errors):
                message = f"{owner} takes no {loc[-1]} ({key.why}); remove it"
                errors.append(
                    {
                        "type": PydanticCustomError("retired_key", message),
                        "loc": loc,
                        "input": value,
                    }
                )
    if errors:
        raise ValidationError.from_exception_data(title, errors)
    return out


# -- the table every kind's model extends ----------------------------------------------------------
class _KindTable(BaseModel):
    """A `[stage]` or `[camera]` table. Validating through a base class that no kind registered
    (`StageConfig.model_validate(data)`) picks the model of the kind `data["type"]` names."""

    model_config = ConfigDict(extra="forbid")

    type: str
    #: "stage" or "camera": which registry `type` names a kind in.
    device: ClassVar[str]
    #: Keys older profiles may hold that this kind drops (see the module docstring).
    retired_keys: ClassVar[Mapping[str, RetiredKey]] = {}

    @classmethod
    def _kinds(cls) -> Mapping[str, StageKind] | Mapping[str, CameraKind]:
        raise NotImplementedError

    @model_validator(mode="wrap")
    @classmethod
    def _as_its_kind(cls, data: Any, handler: Callable[[Any], Any]) -> Any:
        if not isinstance(data, Mapping):
            return handler(data)
        kinds = cls._kinds()
        if any(kind.config is cls for kind in kinds.values()):
            return handler(data)
        name = data.get("type")
        kind = kinds.get(name) if isinstance(name, str) else None
        if kind is None or not issubclass(kind.config, cls):
            known = [k for k, v in kinds.items() if issubclass(v.config, cls)]
            what = "missing" if name is None else f"unknown {cls.device} type {name!r}"
            message = f"{what}; known {cls.device} types: {', '.join(known)}"
            raise ValidationError.from_exception_data(
                cls.__name__,
                [{"type": PydanticCustomError("kind", message), "loc": ("type",), "input": name}],
            )
        return kind.config.model_validate(data)

    @model_validator(mode="before")
    @classmethod
    def _without_retired_keys(cls, data: Any) -> Any:
        if not cls.retired_keys or not isinstance(data, Mapping):
            return data
        owner = f"a {cls.model_fields['type'].default!r} {cls.device}"
        return _drop_retired_keys(data, cls.retired_keys, owner, cls.__name__)


class StageConfig(_KindTable):
    """The `[stage]` table; each stage kind's model extends it."""

    device: ClassVar[str] = "stage"

    @classmethod
    def _kinds(cls) -> Mapping[str, StageKind]:
        return _STAGE_KINDS


class CameraConfig(_KindTable):
    """The `[camera]` table; each camera kind's model extends it."""

    device: ClassVar[str] = "camera"

    @classmethod
    def _kinds(cls) -> Mapping[str, CameraKind]:
        return _CAMERA_KINDS


# -- stage tables ------------------------------------------------------------------------------------
class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AxisConfig(_Table):
    """One stage axis: unit conversion, direction and backlash."""

    #: Native controller units per um; None takes the driver's own (GRBL 0.001, ASI 10, Prior 1).
    units_per_um: float | None = Field(default=None, gt=0)
    #: -1 when the controller counts the other way than the stage frame.
    sign: Literal[1, -1] = 1
    #: Software backlash compensation: approach every target from below by this much.
    backlash_um: float = Field(default=0.0, ge=0, le=1000)


class GrblAxisConfig(AxisConfig):
    """A GRBL axis also has a speed (the jog feed)."""

    #: Move speed; None: the controller's maximum rate ($110-$112).
    speed_um_s: float | None = Field(default=None, gt=0)


class LimitsConfig(_Table):
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


class TimingConfig(_Table):
    """How long to wait for what."""

    reply_timeout_s: float = Field(default=1.0, gt=0, le=60)
    move_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    #: Time between completion polls; None: the driver's default (GRBL 0.2 s, ASI 0.05 s,
    #: Prior 0.25 s).
    poll_interval_s: float | None = Field(default=None, gt=0, le=5)


class GrblTimingConfig(TimingConfig):
    """GRBL also boots when its port opens, homes, and must not be polled faster than 5 Hz."""

    #: Wait this long for the start-up banner after opening the port.
    boot_timeout_s: float = Field(default=2.5, ge=0, le=60)
    home_timeout_s: float = Field(default=120.0, gt=0, le=3600)

    @field_validator("poll_interval_s")
    @classmethod
    def _at_most_5_hz(cls, poll: float | None) -> float | None:
        if poll is not None and poll < GRBL_MIN_POLL_INTERVAL_S:
            raise ValueError(
                f"{poll} s: GRBL must be polled at 5 Hz or less (>= {GRBL_MIN_POLL_INTERVAL_S} s)"
            )
        return poll


class SimulatorStageConfig(StageConfig):
    """The simulator's stage: configured in the profile's `[simulator.stage]` table instead."""

    type: Literal["sim"] = "sim"
    retired_keys: ClassVar[Mapping[str, RetiredKey]] = _retire(
        {
            "port": None,
            "baud": None,
            "limits": None,
            "tolerance_um": None,
            "axes": {},
            "timing.reply_timeout_s": 1.0,
            "timing.move_timeout_s": 30.0,
            "timing.poll_interval_s": None,
            "timing.boot_timeout_s": 2.5,
            "timing.home_timeout_s": 120.0,
            "timing": {},
        },
        "configure the simulated stage in the [simulator.stage] table",
    )


class SerialStageConfig(StageConfig):
    """What every serial stage controller's table holds."""

    #: Serial port: /dev/ttyUSB0, COM3, or a pyserial URL (fakegrbl://, rfc2217://host:port).
    port: str = Field(min_length=1)
    #: Baud rate; None: the controller's default (`SerialDriver.default_baud`).
    baud: int | None = Field(default=None, gt=0)
    axes: dict[Axis, AxisConfig] = Field(default_factory=dict)
    limits: LimitsConfig
    timing: TimingConfig = Field(default_factory=TimingConfig)
    #: How far from its target a stage may come to rest before the move counts as failed;
    #: None: the driver's default.
    tolerance_um: float | None = Field(default=None, gt=0, le=100)

    @model_validator(mode="before")
    @classmethod
    def _needs_port_and_limits(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            kind = data.get("type", cls.model_fields["type"].default)
            if not data.get("port"):
                raise ValueError(f"a {kind!r} stage needs a port (e.g. /dev/ttyUSB0 or COM3)")
            if data.get("limits") is None:
                raise ValueError(f"a {kind!r} stage needs [stage.limits] x_um, y_um and z_um")
        return data

    def soft_limits(self) -> SoftLimits:
        return SoftLimits(x=self.limits.x_um, y=self.limits.y_um, z=self.limits.z_um)

    def driver_options(self, native_units_per_um: float) -> dict[str, Any]:
        """Keyword arguments for the driver (all but the port); an axis without
        `units_per_um` takes the driver's `native_units_per_um`."""
        options: dict[str, Any] = {
            "limits": self.soft_limits(),
            "calibration": {
                a: AxisCalibration(units_per_um=c.units_per_um or native_units_per_um, sign=c.sign)
                for a, c in self.axes.items()
            },
            "backlash_um": {a: c.backlash_um for a, c in self.axes.items()},
            "move_timeout_s": self.timing.move_timeout_s,
            "reply_timeout_s": self.timing.reply_timeout_s,
        }
        if self.baud is not None:
            options["baudrate"] = self.baud
        if self.timing.poll_interval_s is not None:
            options["poll_interval_s"] = self.timing.poll_interval_s
        if self.tolerance_um is not None:
            options["tolerance_um"] = self.tolerance_um
        return options


class GrblStageConfig(SerialStageConfig):
    """A GRBL 1.1 board: axes with speeds, a boot wait and a home timeout, polled at <= 5 Hz."""

    type: Literal["grbl"] = "grbl"
    axes: dict[Axis, GrblAxisConfig] = Field(default_factory=dict)  # type: ignore[assignment]
    timing: GrblTimingConfig = Field(default_factory=GrblTimingConfig)

    def driver_options(self, native_units_per_um: float) -> dict[str, Any]:
        options = super().driver_options(native_units_per_um)
        options["speed_um_s"] = {
            a: c.speed_um_s for a, c in self.axes.items() if c.speed_um_s is not None
        }
        options["boot_timeout_s"] = self.timing.boot_timeout_s
        options["home_timeout_s"] = self.timing.home_timeout_s
        return options


#: Keys only GRBL uses, which older profiles of other controllers hold with their defaults.
_GRBL_ONLY: Mapping[str, RetiredKey] = {
    "timing.boot_timeout_s": RetiredKey(2.5, "it is GRBL's wait for its start-up banner"),
    "timing.home_timeout_s": RetiredKey(120.0, "it is GRBL's time limit for homing"),
    "axes.*.speed_um_s": RetiredKey(None, "it is GRBL's jog speed"),
}


class PriorStageConfig(SerialStageConfig):
    """A Prior ProScan III: units per um per its RES setting (default 1)."""

    type: Literal["prior"] = "prior"
    retired_keys: ClassVar[Mapping[str, RetiredKey]] = _GRBL_ONLY


class AsiStageConfig(SerialStageConfig):
    """An ASI MS-2000 or Tiger: tenths of a micron (the driver knows)."""

    type: Literal["asi"] = "asi"
    retired_keys: ClassVar[Mapping[str, RetiredKey]] = _GRBL_ONLY


# -- camera tables -----------------------------------------------------------------------------------
class SimulatorCameraConfig(CameraConfig):
    """The simulator's camera: configured in the profile's `[simulator]` table instead."""

    type: Literal["sim"] = "sim"
    retired_keys: ClassVar[Mapping[str, RetiredKey]] = _retire(
        {
            "index": 0,
            "backend": "auto",
            "width": None,
            "height": None,
            "exposure_ms": None,
            "gain": None,
            "sensor_pixel_um": None,
        },
        "configure the simulated camera in the [simulator] table",
    )


class PhysicalCameraConfig(CameraConfig):
    """A camera on a real microscope: its sensor's pixel pitch sets the pixel size."""

    #: Pixel pitch of the sensor; pixel size at the specimen = this / magnification, unless an
    #: objective gives a calibrated `pixel_size_um`.
    sensor_pixel_um: float | None = Field(default=None, gt=0, le=50)


class OpenCVCameraConfig(PhysicalCameraConfig):
    """A USB (UVC) camera through OpenCV."""

    type: Literal["opencv"] = "opencv"
    index: int = Field(default=0, ge=0, le=63)
    backend: Literal["auto", "v4l2", "dshow", "msmf", "avfoundation"] = "auto"
    width: int | None = Field(default=None, gt=0)
    height: int | None = Field(default=None, gt=0)
    exposure_ms: float | None = Field(default=None, gt=0, le=60000)
    gain: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _size(self) -> OpenCVCameraConfig:
        if (self.width is None) != (self.height is None):
            raise ValueError("give camera width and height together")
        return self


#: What a Basler camera can deliver that slidescan reads (`slidescan.hardware.drivers.basler`
#: decodes each; tests/test_drivers_basler.py checks that both lists agree).
BaslerPixelFormat = Literal[
    "Mono8",
    "Mono10",
    "Mono12",
    "Mono16",
    "RGB8",
    "BGR8",
    "BayerRG8",
    "BayerGB8",
    "BayerGR8",
    "BayerBG8",
    "BayerRG10",
    "BayerGB10",
    "BayerGR10",
    "BayerBG10",
    "BayerRG12",
    "BayerGB12",
    "BayerGR12",
    "BayerBG12",
    "BayerRG16",
    "BayerGB16",
    "BayerGR16",
    "BayerBG16",
]


class RoiConfig(_Table):
    """A region of the sensor in pixels (after binning)."""

    width: int = Field(gt=0)
    height: int = Field(gt=0)
    offset_x: int = Field(default=0, ge=0)
    offset_y: int = Field(default=0, ge=0)


class BaslerCameraConfig(PhysicalCameraConfig):
    """A Basler camera through pypylon (the optional extra `slidescan[basler]`). A setting left
    out stays as the camera has it (its power-up user set)."""

    type: Literal["basler"] = "basler"
    #: The camera's serial number; None: the first camera pylon finds.
    serial: str | None = Field(default=None, min_length=1)
    pixel_format: BaslerPixelFormat | None = None
    exposure_ms: float | None = Field(default=None, gt=0, le=60000)
    #: Linear gain (1 = 0 dB); the camera is set to 20 log10(gain) dB.
    gain: float | None = Field(default=None, ge=1.0, le=10000)
    roi: RoiConfig | None = None
    #: Pixels binned in each direction, where the model can bin.
    binning: int | None = Field(default=None, ge=1, le=8)
    #: How long past the exposure a frame may take to arrive.
    timeout_s: float = Field(default=1.0, gt=0, le=60)

    @field_validator("serial", mode="before")
    @classmethod
    def _serial_as_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v  # serial = 2233


# -- the registry ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SerialDriver:
    """A serial stage kind's driver, described without importing it."""

    #: Imports and returns the driver class (a `SerialStage`).
    load: Callable[[], type[SerialStage]]
    default_baud: int
    #: URL scheme of its in-process fake controller; pyserial finds the fake as
    #: `slidescan.hardware.drivers.protocol_<scheme>`.
    fake_scheme: str
    #: Shipped profile a new set-up of this controller starts from (the wizard).
    example_profile: str
    #: Driver keyword arguments that make tests against the fake quick.
    quick_options: Mapping[str, Any] = field(default_factory=dict)
    #: The fake's URL options for quick tests.
    quick_url_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def fake_port(self) -> str:
        return f"{self.fake_scheme}://"

    def connect(self, port: str, **options: Any) -> SerialStage:
        """The driver connected on `port` (at `default_baud` unless `baudrate` is given)."""
        options.setdefault("baudrate", self.default_baud)
        return self.load()(port, **options)


@dataclass(frozen=True)
class StageKind:
    """A stage kind a profile's `[stage] type` can name."""

    name: str
    #: One line for people (the wizard's choice).
    label: str
    config: type[StageConfig]
    #: Opens the stage a validated `config` describes; None for a simulated kind, which
    #: `open_microscope` builds together with its camera.
    open: Callable[[Any], Stage] | None = None
    serial: SerialDriver | None = None
    #: Part of the optical simulator: goes with a simulated camera only.
    simulated: bool = False


class CameraOpener(Protocol):
    """Opens the camera a validated config describes."""

    def __call__(
        self,
        config: Any,
        *,
        pixel_size_um: float,
        position_source: Callable[[], Position | None] | None = None,
        capture_factory: Callable[[int, int], Any] | None = None,
    ) -> Camera: ...


@dataclass(frozen=True)
class CameraKind:
    """A camera kind a profile's `[camera] type` can name."""

    name: str
    label: str
    config: type[CameraConfig]
    #: None for a simulated kind (built with the simulated microscope).
    open: CameraOpener | None = None
    simulated: bool = False
    #: Lists the connected cameras of this kind, each a dict with at least "model" and
    #: "serial" (what a profile's `serial` takes); None where the kind cannot (OpenCV: `hw
    #: list` probes indices). Raises an `ImportError` naming the install line when the kind's
    #: `extra` is not installed.
    find: Callable[[], list[dict[str, Any]]] | None = None
    #: The optional extra its driver needs (`pip install 'slidescan[EXTRA]'`); None: the
    #: default install has it.
    extra: str | None = None


_STAGE_KINDS: dict[str, StageKind] = {}
_CAMERA_KINDS: dict[str, CameraKind] = {}


def _check_new(kind: StageKind | CameraKind, known: Mapping[str, Any]) -> None:
    if kind.name in known:
        raise ValueError(f"{kind.config.device} kind {kind.name!r} is already registered")
    if kind.config.model_fields["type"].default != kind.name:
        raise ValueError(f"{kind.config.__name__}.type must default to {kind.name!r}")
    if (kind.open is None) != kind.simulated:
        raise ValueError(f"kind {kind.name!r}: give an opener unless it is simulated")


def register_stage_kind(kind: StageKind) -> StageKind:
    _check_new(kind, _STAGE_KINDS)
    _STAGE_KINDS[kind.name] = kind
    return kind


def register_camera_kind(kind: CameraKind) -> CameraKind:
    _check_new(kind, _CAMERA_KINDS)
    _CAMERA_KINDS[kind.name] = kind
    return kind


def stage_kinds() -> tuple[StageKind, ...]:
    """Every stage kind, in registration order."""
    return tuple(_STAGE_KINDS.values())


def serial_stage_kinds() -> tuple[StageKind, ...]:
    """The stage kinds driven over a serial port."""
    return tuple(k for k in _STAGE_KINDS.values() if k.serial is not None)


def camera_kinds() -> tuple[CameraKind, ...]:
    return tuple(_CAMERA_KINDS.values())


def stage_kind(name: str) -> StageKind:
    """The stage kind `name`; `ValueError` naming the known ones otherwise."""
    try:
        return _STAGE_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown stage type {name!r}; known: {', '.join(_STAGE_KINDS)}") from None


def serial_driver(name: str) -> SerialDriver:
    """The driver of serial stage kind `name`; `ValueError` naming the serial kinds otherwise."""
    serial = _STAGE_KINDS[name].serial if name in _STAGE_KINDS else None
    if serial is None:
        known = ", ".join(k.name for k in serial_stage_kinds())
        raise ValueError(f"{name!r} is not a serial stage type; serial stages: {known}")
    return serial


def camera_kind(name: str) -> CameraKind:
    """The camera kind `name`; `ValueError` naming the known ones otherwise."""
    try:
        return _CAMERA_KINDS[name]
    except KeyError:
        known = ", ".join(_CAMERA_KINDS)
        raise ValueError(f"unknown camera type {name!r}; known: {known}") from None


def fake_schemes() -> frozenset[str]:
    """URL schemes of the fake controllers (`fakegrbl` and friends)."""
    return frozenset(k.serial.fake_scheme for k in serial_stage_kinds() if k.serial)


# -- openers -------------------------------------------------------------------------------------------
def open_serial_stage(config: SerialStageConfig) -> SerialStage:
    """Connect the serial stage `config` describes."""
    serial = serial_driver(config.type)
    options = config.driver_options(serial.load().native_units_per_um)
    return serial.connect(config.port, **options)


def _grbl() -> type[SerialStage]:
    from slidescan.hardware.drivers.grbl import GrblStage

    return GrblStage


def _prior() -> type[SerialStage]:
    from slidescan.hardware.drivers.prior import PriorStage

    return PriorStage


def _asi() -> type[SerialStage]:
    from slidescan.hardware.drivers.asi import AsiStage

    return AsiStage


def _open_opencv_camera(
    config: OpenCVCameraConfig,
    *,
    pixel_size_um: float,
    position_source: Callable[[], Position | None] | None = None,
    capture_factory: Callable[[int, int], Any] | None = None,
) -> Camera:
    from slidescan.hardware.drivers.opencv_camera import OpenCVCamera

    return OpenCVCamera(
        config.index,
        pixel_size_um=pixel_size_um,
        backend=config.backend,
        width=config.width,
        height=config.height,
        exposure_ms=config.exposure_ms,
        gain=config.gain,
        capture_factory=capture_factory,
        position_source=position_source,
    )


def _open_basler_camera(
    config: BaslerCameraConfig,
    *,
    pixel_size_um: float,
    position_source: Callable[[], Position | None] | None = None,
    capture_factory: Callable[[int, int], Any] | None = None,
) -> Camera:
    """`capture_factory` is OpenCV's; a Basler camera has none (tests use pylon's emulation)."""
    from slidescan.hardware.drivers.basler import BaslerCamera, Roi

    return BaslerCamera(
        config.serial,
        pixel_size_um=pixel_size_um,
        pixel_format=config.pixel_format,
        exposure_ms=config.exposure_ms,
        gain=config.gain,
        roi=Roi(**config.roi.model_dump()) if config.roi is not None else None,
        binning=config.binning,
        timeout_s=config.timeout_s,
        position_source=position_source,
    )


def _find_basler_cameras() -> list[dict[str, Any]]:
    from slidescan.hardware.drivers.basler import find_cameras

    return find_cameras()


# -- the kinds ---------------------------------------------------------------------------------------
register_stage_kind(
    StageKind("sim", "Simulator (no hardware)", SimulatorStageConfig, simulated=True)
)
register_stage_kind(
    StageKind(
        "grbl",
        "GRBL 1.1 (OpenFlexure, CNC-shield stages)",
        GrblStageConfig,
        open_serial_stage,
        SerialDriver(
            _grbl,
            default_baud=115200,
            fake_scheme="fakegrbl",
            example_profile="grbl-openflexure",
            # The poll interval is below GRBL's 5 Hz production floor: the floor protects a
            # real controller's CPU, and the fake has none to protect.
            quick_options={"reply_timeout_s": 0.2, "poll_interval_s": 0.02, "boot_timeout_s": 0.5},
            quick_url_options={"boot_s": 0.01},
        ),
    )
)
register_stage_kind(
    StageKind(
        "prior",
        "Prior ProScan III",
        PriorStageConfig,
        open_serial_stage,
        SerialDriver(
            _prior,
            default_baud=9600,
            fake_scheme="fakeprior",
            example_profile="prior-proscan",
            quick_options={"reply_timeout_s": 0.2, "poll_interval_s": 0.05},
        ),
    )
)
register_stage_kind(
    StageKind(
        "asi",
        "ASI MS-2000 / Tiger",
        AsiStageConfig,
        open_serial_stage,
        SerialDriver(
            _asi,
            default_baud=9600,
            fake_scheme="fakeasi",
            example_profile="asi-ms2000",
            quick_options={"reply_timeout_s": 0.2, "poll_interval_s": 0.01},
        ),
    )
)
register_camera_kind(CameraKind("sim", "Simulator camera", SimulatorCameraConfig, simulated=True))
register_camera_kind(
    CameraKind("opencv", "USB camera (OpenCV)", OpenCVCameraConfig, _open_opencv_camera)
)
register_camera_kind(
    CameraKind(
        "basler",
        "Basler camera (pylon)",
        BaslerCameraConfig,
        _open_basler_camera,
        find=_find_basler_cameras,
        extra="basler",
    )
)
