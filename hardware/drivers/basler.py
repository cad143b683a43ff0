"""Basler cameras (ace, dart, boost) through pypylon, the optional extra
`pip install 'slidescan[basler]'`.

pypylon (with its ~240 MB pylon runtime) is imported only when a Basler camera is listed or
opened; without it both raise `PylonNotInstalled`, one line naming the install command.

**Snap**: software trigger. Opening arms the camera once (TriggerSelector FrameStart,
TriggerMode On, TriggerSource Software) and starts grabbing (GrabStrategy_OneByOne); a snap
waits until the camera takes triggers, executes one and retrieves the one frame it makes, so
its exposure begins after the call. Not `GrabOne`: that starts and stops grabbing for every
frame (about twice the latency on pylon's emulation) and, on the emulation, restarts its image
folder each time, so every GrabOne serves the folder's first file.

**Live view**: `start_stream` stops the triggered grab and starts free-run grabbing
(TriggerMode Off, GrabStrategy_LatestImageOnly: the camera's frame rate, pylon keeps only the
newest frame); `CameraBase`'s stream thread retrieves each frame into the bounded buffer that
`latest_frame()` reads. `stop_stream` re-arms the software trigger. A snap while streaming
returns the next free-run frame.

**Units**: exposure is µs on the camera (ExposureTime; ExposureTimeAbs on older GigE models)
and ms here; gain is dB on the camera (Gain) and a linear factor here (1 = 0 dB), the unit of
`Frame.gain`. A value outside the camera's range is `LimitExceeded` naming the range; inside
it the camera rounds to its step and the property reads back what it took.

**Pixel formats**: Mono8 (uint8), Mono10/12/16 (uint16, values as the camera sends them),
RGB8 and BGR8 (RGB uint8), Bayer RG/GB/GR/BG 8/10/12/16 (debayered to RGB by OpenCV,
uint8 or uint16). The SFNC 1 names of older GigE models (RGB8Packed, BGR8Packed) are
accepted.

**Errors** (one line each): no such camera (naming the serials found), a camera held by
another program (pylon Viewer), one unplugged or powered off (`ConnectionLost`, pylon's
device-removal flag), a frame that does not come (`DeviceTimeout`), a failed frame
(`DeviceError` with pylon's reason).

Timestamps: `Frame.timestamp` is the host clock when the frame arrived (comparable with the
stage and other cameras); the camera's own tick counter, in seconds, is
`meta["device_timestamp_s"]` (0 on the emulation).

pylon takes SIGALRM for itself: it installs a handler when it first opens a camera and arms
POSIX timers that signal SIGALRM when a wait runs out. A program that also handles SIGALRM
(pytest-timeout's signal method does, around every test) breaks pylon's timed-out waits.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from types import ModuleType
from typing import Any, NamedTuple

import cv2
import numpy as np

from slidescan.hardware.base import CameraBase, Position
from slidescan.hardware.clock import Clock
from slidescan.hardware.errors import (
    ConnectionLost,
    DeviceError,
    DeviceTimeout,
    HardwareError,
    LimitExceeded,
    NotSupportedError,
)

INSTALL = "pip install 'slidescan[basler]'"


class PylonNotInstalled(HardwareError, ImportError):
    """pypylon, the optional extra that Basler cameras need, is not installed."""


def import_pylon() -> tuple[ModuleType, ModuleType]:
    """pypylon's `pylon` and `genicam` modules; `PylonNotInstalled` if it is missing."""
    try:
        return importlib.import_module("pypylon.pylon"), importlib.import_module("pypylon.genicam")
    except ImportError:
        raise PylonNotInstalled(
            f"Basler cameras need pypylon, which is not installed: {INSTALL}"
        ) from None


# -- pixel formats -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PixelFormat:
    """A pixel format this driver reads, by its SFNC 2 name (the profile's `pixel_format`)."""

    name: str
    bits: int
    #: cv2.cvtColor code that turns the frame as delivered into RGB; None: already what we give.
    to_rgb: int | None = None
    #: The name older (SFNC 1) GigE models give it.
    alias: str | None = None

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.bits <= 8 else np.uint16)

    @property
    def channels(self) -> int:
        return 1 if self.name.startswith("Mono") else 3


#: Sensor pattern (first row's first two pixels) -> OpenCV's code named by the same pattern.
_BAYER = {
    "RG": cv2.COLOR_BayerRGGB2RGB,
    "GB": cv2.COLOR_BayerGBRG2RGB,
    "GR": cv2.COLOR_BayerGRBG2RGB,
    "BG": cv2.COLOR_BayerBGGR2RGB,
}
PIXEL_FORMATS: dict[str, PixelFormat] = {
    f.name: f
    for f in (
        *(PixelFormat(f"Mono{b}", b) for b in (8, 10, 12, 16)),
        PixelFormat("RGB8", 8, alias="RGB8Packed"),
        PixelFormat("BGR8", 8, cv2.COLOR_BGR2RGB, alias="BGR8Packed"),
        *(
            PixelFormat(f"Bayer{p}{b}", b, code)
            for p, code in _BAYER.items()
            for b in (8, 10, 12, 16)
        ),
    )
}
_BY_CAMERA_NAME = {**{f.alias: f for f in PIXEL_FORMATS.values() if f.alias}, **PIXEL_FORMATS}


class Roi(NamedTuple):
    """A region of the sensor in pixels (after binning)."""

    width: int
    height: int
    offset_x: int = 0
    offset_y: int = 0


# -- listing -----------------------------------------------------------------------------------------
def find_cameras() -> list[dict[str, Any]]:
    """The Basler cameras pylon finds (pylon's emulated ones too, with PYLON_CAMEMU=N set):
    model, serial, vendor, interface (BaslerUsb, BaslerGigE, BaslerCamEmu), user-defined name,
    and whether another program has it open."""
    pylon, _ = import_pylon()
    tl = pylon.TlFactory.GetInstance()
    found = []
    for info in tl.EnumerateDevices():
        found.append(
            {
                "model": info.GetModelName(),
                "serial": info.GetSerialNumber(),
                "vendor": info.GetVendorName(),
                "interface": info.GetDeviceClass(),
                "name": info.GetUserDefinedName(),
                "in_use": _in_use(pylon, tl, info),
            }
        )
    return found


def _in_use(pylon: ModuleType, tl: Any, info: Any) -> bool | None:
    """Whether another program has the camera open; None where pylon cannot tell."""
    try:
        _, status = tl.IsDeviceAccessibleInfo(info)
    except Exception:  # a transport layer that cannot say (GigE in another subnet)
        return None
    if status == pylon.Accessibility_Unknown:
        return None
    return status in (pylon.Accessibility_Opened, pylon.Accessibility_OpenedExclusively)


def pylon_message(exc: BaseException) -> str:
    """pylon's message without its C++ source location, on one line."""
    text = re.split(r"\s*:\s*\w*Exception thrown", str(exc))[0]
    text = re.sub(r"\s*\(file '[^']*', line \d+\)\s*$", "", text)
    return " ".join(text.split()).rstrip(".") or type(exc).__name__


_IN_USE = re.compile(r"exclusively opened|controlled by another application|in use", re.I)


# -- the camera --------------------------------------------------------------------------------------
class BaslerCamera(CameraBase):
    """A Basler camera; `pixel_size_um` is the size of a pixel at the specimen.

    Settings left as None stay as the camera has them (its power-up user set, or what pylon
    Viewer left). `timeout_s` is how long past the exposure a frame may take to arrive.
    """

    def __init__(
        self,
        serial: str | None = None,
        *,
        pixel_size_um: float,
        pixel_format: str | None = None,
        exposure_ms: float | None = None,
        gain: float | None = None,
        roi: Roi | None = None,
        binning: int | None = None,
        timeout_s: float = 1.0,
        clock: Clock | None = None,
        position_source: Callable[[], Position | None] | None = None,
        buffer_size: int = 4,
        configure: Callable[[Any], None] | None = None,
    ) -> None:
        """`configure(instant_camera)` runs after the settings, before grabbing starts: for
        features this driver does not cover (pylon's emulation's image folder, user sets)."""
        if pixel_format is not None and pixel_format not in PIXEL_FORMATS:
            known = ", ".join(PIXEL_FORMATS)
            raise ValueError(f"unknown pixel format {pixel_format!r}; known: {known}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self._pylon, self._genicam = import_pylon()
        self._cam: Any = None  # set once open: the exposure and gain setters write to it then
        self._closed = False
        super().__init__(
            exposure_ms=0.0,
            gain=1.0,
            clock=clock,
            position_source=position_source,  # type: ignore[arg-type]
            buffer_size=buffer_size,
        )
        self._pixel_size_um = float(pixel_size_um)
        self.timeout_s = float(timeout_s)
        self._free_running = False
        cam, info = self._open_device(serial)
        self.model: str = info.GetModelName()
        self.serial: str = info.GetSerialNumber()
        self.label = f"Basler {self.model} ({self.serial})"
        try:
            with self._pylon_calls("set up"):
                self._cam = cam
                self._pixel_formats = self._offered_formats()
                self._configure(pixel_format, roi, binning)
                if exposure_ms is not None:
                    self.set_exposure_ms(exposure_ms)
                else:
                    self._exposure_ms = self._exposure_node().GetValue() / 1000.0
                if gain is not None:
                    self.set_gain(gain)
                else:
                    gain_node = self._node("Gain")
                    self._gain = 1.0 if gain_node is None else 10 ** (gain_node.GetValue() / 20)
                if configure is not None:
                    configure(cam)
                self._format = self._current_format()
                self._shape: tuple[int, ...] = (
                    int(self._node("Height").GetValue()),
                    int(self._node("Width").GetValue()),
                    *((3,) if self._format.channels == 3 else ()),
                )
                tick_hz = self._node("GevTimestampTickFrequency")
                self._tick_s = 1.0 / tick_hz.GetValue() if tick_hz is not None else 1e-9
                self._set_free_run(False)
        except BaseException:
            self._cam = None
            cam.Close()
            cam.DestroyDevice()
            raise

    # -- opening -------------------------------------------------------------------------------
    def _open_device(self, serial: str | None) -> tuple[Any, Any]:
        pylon, genicam = self._pylon, self._genicam
        tl = pylon.TlFactory.GetInstance()
        infos = list(tl.EnumerateDevices())
        if serial is None:
            if not infos:
                raise DeviceError("no Basler camera found: is it connected and powered?")
            info = infos[0]
        else:
            info = next((i for i in infos if i.GetSerialNumber() == serial), None)
            if info is None:
                found = ", ".join(i.GetSerialNumber() for i in infos) or "none"
                raise DeviceError(f"no Basler camera with serial {serial}; found: {found}")
        label = f"Basler {info.GetModelName()} ({info.GetSerialNumber()})"
        cam = None
        try:
            cam = pylon.InstantCamera(tl.CreateDevice(info))
            cam.Open()
        except genicam.GenericException as exc:
            if cam is not None:
                cam.DestroyDevice()
            if _in_use(pylon, tl, info) or _IN_USE.search(str(exc)):
                raise DeviceError(
                    f"{label} is in use by another program (pylon Viewer?): close it and retry"
                ) from None
            raise DeviceError(f"{label} could not be opened: {pylon_message(exc)}") from None
        return cam, info

    def _configure(self, pixel_format: str | None, roi: Roi | None, binning: int | None) -> None:
        """Binning, pixel format and ROI, in that order (binning changes the ROI's range)."""
        if binning is not None:
            for axis in ("Horizontal", "Vertical"):
                self._set_int(f"Binning{axis}", binning, f"{axis.lower()} binning")
        if pixel_format is not None:
            wanted = PIXEL_FORMATS[pixel_format]
            offered = self._node("PixelFormat").GetSymbolics()
            name = next((n for n in (wanted.name, wanted.alias) if n in offered), None)
            if name is None:
                raise NotSupportedError(
                    f"{self.label} has no pixel format {pixel_format}; it offers "
                    f"{', '.join(self.pixel_formats)}"
                )
            self._node("PixelFormat").SetValue(name)
        if roi is not None:
            self._set_int("OffsetX", self._node("OffsetX").GetMin(), "x offset")
            self._set_int("OffsetY", self._node("OffsetY").GetMin(), "y offset")
            self._set_int("Width", roi.width, "ROI width")
            self._set_int("Height", roi.height, "ROI height")
            self._set_int("OffsetX", roi.offset_x, "ROI x offset")
            self._set_int("OffsetY", roi.offset_y, "ROI y offset")

    def _current_format(self) -> PixelFormat:
        name = self._node("PixelFormat").GetValue()
        if name not in _BY_CAMERA_NAME:
            raise NotSupportedError(
                f"{self.label} is set to pixel format {name}, which slidescan does not read; "
                f"give pixel_format: {', '.join(self.pixel_formats)}"
            )
        return _BY_CAMERA_NAME[name]

    # -- nodes ---------------------------------------------------------------------------------
    def _node(self, name: str, *, writable: bool = False) -> Any | None:
        """The camera feature `name`, or None where this model does not have it (now)."""
        try:
            node = self._cam.GetNodeMap().GetNode(name)
        except self._genicam.GenericException:  # pypylon < 26 raises for a node it lacks
            self._check_present()  # ... and every version for a camera that is gone
            return None
        check = self._genicam.IsWritable if writable else self._genicam.IsAvailable
        return node if node is not None and check(node) else None

    def _exposure_node(self) -> Any:
        for name in ("ExposureTime", "ExposureTimeAbs"):  # SFNC 2, then older GigE models
            node = self._node(name)
            if node is not None:
                return node
        raise NotSupportedError(f"{self.label} has no exposure time in µs")

    def _set_int(self, name: str, value: int, what: str) -> None:
        node = self._node(name, writable=True)
        if node is None:
            raise NotSupportedError(f"{self.label} cannot set its {what} ({name})")
        lo, hi = int(node.GetMin()), int(node.GetMax())
        step = max(1, int(node.GetInc()))
        if not lo <= value <= hi:
            raise LimitExceeded(f"{self.label}: {what} {value} is outside {lo}-{hi}")
        if (value - lo) % step:
            raise LimitExceeded(f"{self.label}: {what} {value} must be {lo} + a multiple of {step}")
        node.SetValue(int(value))

    def _auto_off(self, name: str) -> None:
        """Switch ExposureAuto / GainAuto off: a value the person sets must stay."""
        node = self._node(name, writable=True)
        if node is not None and node.GetValue() != "Off":
            node.SetValue("Off")

    def _offered_formats(self) -> tuple[str, ...]:
        offered = set(self._node("PixelFormat").GetSymbolics())
        return tuple(f.name for f in PIXEL_FORMATS.values() if {f.name, f.alias} & offered)

    # -- what the camera offers (for the wizard's controls) ------------------------------------
    @property
    def pixel_formats(self) -> tuple[str, ...]:
        """The pixel formats of this camera that slidescan reads, by their SFNC 2 names (read
        once, at open: a property that no pylon call stands behind, for the GUI thread)."""
        return self._pixel_formats

    @property
    def pixel_format(self) -> str:
        return self._format.name

    @property
    def bit_depth(self) -> int:
        """Significant bits per sample (12 for Mono12 in a uint16 image)."""
        return self._format.bits

    @property
    def exposure_range_ms(self) -> tuple[float, float]:
        node = self._exposure_node()
        return node.GetMin() / 1000.0, node.GetMax() / 1000.0

    @property
    def gain_range(self) -> tuple[float, float] | None:
        """Linear gain range; None where this model has no Gain in dB."""
        node = self._node("Gain")
        if node is None:
            return None
        return 10 ** (node.GetMin() / 20), 10 ** (node.GetMax() / 20)

    @property
    def pylon_camera(self) -> Any:
        """The open `pylon.InstantCamera`, for what this driver does not cover."""
        return self._cam

    # -- exposure and gain ---------------------------------------------------------------------
    @property  # type: ignore[override]
    def exposure_ms(self) -> float:
        return self._exposure_ms

    @exposure_ms.setter
    def exposure_ms(self, value: float) -> None:
        if self._cam is None and not self._closed:  # CameraBase.__init__, before the camera opens
            self._exposure_ms = float(value)
            return
        self.set_exposure_ms(value)

    def set_exposure_ms(self, exposure_ms: float) -> None:
        """Set the exposure (manual); `LimitExceeded` outside the camera's range."""
        value = float(exposure_ms)
        with self._pylon_calls("set the exposure"):
            self._check_open()
            node = self._exposure_node()
            lo, hi = node.GetMin(), node.GetMax()
            if not (math.isfinite(value) and lo <= value * 1000.0 <= hi * (1 + 1e-9)):
                raise LimitExceeded(
                    f"exposure {value:g} ms is outside {self.label}'s range "
                    f"{lo / 1000:g}-{hi / 1000:g} ms"
                )
            self._auto_off("ExposureAuto")
            node.SetValue(min(max(value * 1000.0, lo), hi))
            self._exposure_ms = node.GetValue() / 1000.0

    @property  # type: ignore[override]
    def gain(self) -> float:
        return self._gain

    @gain.setter
    def gain(self, value: float) -> None:
        if self._cam is None and not self._closed:
            self._gain = float(value)
            return
        self.set_gain(value)

    def set_gain(self, gain: float) -> None:
        """Set the linear gain (1 = 0 dB) as 20·log10(gain) dB; `LimitExceeded` outside the
        camera's range, `NotSupportedError` on a model without Gain in dB."""
        value = float(gain)
        with self._pylon_calls("set the gain"):
            self._check_open()
            node = self._node("Gain")
            if node is None:
                raise NotSupportedError(f"{self.label} has no Gain in dB")
            lo, hi = node.GetMin(), node.GetMax()
            db = 20 * math.log10(value) if value > 0 and math.isfinite(value) else -math.inf
            if not lo - 1e-6 <= db <= hi + 1e-6:
                raise LimitExceeded(
                    f"gain {value:g} is outside {self.label}'s range {10 ** (lo / 20):.3g}-"
                    f"{10 ** (hi / 20):.3g} ({lo:g}-{hi:g} dB)"
                )
            self._auto_off("GainAuto")
            node.SetValue(min(max(db, lo), hi))
            self._gain = 10 ** (node.GetValue() / 20)

    # -- grabbing ------------------------------------------------------------------------------
    def _set_free_run(self, on: bool) -> None:
        """Grab continuously (live view) or one frame per software trigger (snaps)."""
        pylon, cam = self._pylon, self._cam
        cam.StopGrabbing()
        selector = self._node("TriggerSelector", writable=True)
        if selector is not None:
            offered = selector.GetSymbolics()
            for other in ("AcquisitionStart", "FrameBurstStart"):  # never wait for these
                if other in offered:
                    selector.SetValue(other)
                    self._node("TriggerMode").SetValue("Off")
            selector.SetValue("FrameStart")
        if not on:
            source = self._node("TriggerSource", writable=True)
            if source is None or "Software" not in source.GetSymbolics():
                raise NotSupportedError(f"{self.label} has no software trigger")
            source.SetValue("Software")
        self._node("TriggerMode").SetValue("Off" if on else "On")
        strategy = pylon.GrabStrategy_LatestImageOnly if on else pylon.GrabStrategy_OneByOne
        cam.StartGrabbing(strategy)
        self._free_running = on

    def _wait_ms(self) -> int:
        return int((self._exposure_ms / 1000.0 + self.timeout_s) * 1000) + 1

    def _acquire(self) -> tuple[np.ndarray, dict[str, Any]]:
        pylon, cam = self._pylon, self._cam
        with self._pylon_calls("snap"):
            self._check_open()
            wait_ms = self._wait_ms()
            if not self._free_running:
                self._drop_stale_frames()
                if not cam.WaitForFrameTriggerReady(wait_ms, pylon.TimeoutHandling_Return):
                    self._check_present()
                    raise DeviceTimeout(
                        f"{self.label} was not ready for a trigger within {wait_ms / 1000:g} s"
                    )
                cam.ExecuteSoftwareTrigger()
            result = cam.RetrieveResult(wait_ms, pylon.TimeoutHandling_Return)
            if not result.IsValid():
                self._check_present()
                raise DeviceTimeout(
                    f"{self.label} delivered no frame within {wait_ms / 1000:g} s "
                    f"(exposure {self._exposure_ms:g} ms + {self.timeout_s:g} s)"
                )
            try:
                if not result.GrabSucceeded():
                    self._check_present()
                    raise DeviceError(
                        f"{self.label}: frame failed: {result.GetErrorDescription().strip()} "
                        f"(0x{result.GetErrorCode() & 0xFFFFFFFF:08X})"
                    )
                raw = result.GetArray()
                meta = {
                    "camera": "basler",
                    "model": self.model,
                    "serial": self.serial,
                    "pixel_format": self._format.name,
                    "bit_depth": self._format.bits,
                    "frame_id": int(result.GetID()),
                    "device_timestamp_s": result.GetTimeStamp() * self._tick_s,
                }
            finally:
                result.Release()
        code = self._format.to_rgb
        return (raw if code is None else cv2.cvtColor(raw, code)), meta

    def _drop_stale_frames(self) -> None:
        """Frames that arrived after an earlier snap gave up waiting: not this snap's."""
        while True:
            stale = self._cam.RetrieveResult(0, self._pylon.TimeoutHandling_Return)
            if not stale.IsValid():
                return
            stale.Release()

    def start_stream(self) -> None:
        if self.streaming:
            return
        with self._snap_lock, self._pylon_calls("start the live stream"):
            self._check_open()
            self._set_free_run(True)
        super().start_stream()

    def stop_stream(self, timeout_s: float = 5.0) -> None:
        super().stop_stream(timeout_s)
        with self._snap_lock:
            if self._cam is not None and self._free_running and not self._removed():
                with self._pylon_calls("stop the live stream"):
                    self._set_free_run(False)

    # -- errors --------------------------------------------------------------------------------
    def _removed(self) -> bool:
        return self._cam is not None and bool(self._cam.IsCameraDeviceRemoved())

    def _check_present(self) -> None:
        if self._removed():
            raise ConnectionLost(f"{self.label} was disconnected (unplugged or powered off)")

    def _check_open(self) -> None:
        if self._cam is None:
            raise DeviceError(f"{self.label} is closed")
        self._check_present()

    @contextmanager
    def _pylon_calls(self, what: str) -> Iterator[None]:
        """pylon's exceptions as ours, one line each, naming the camera and what failed."""
        try:
            yield
        except self._genicam.GenericException as exc:
            self._check_present()
            message = f"{self.label}: could not {what}: {pylon_message(exc)}"
            if isinstance(exc, self._genicam.TimeoutException):
                raise DeviceTimeout(message) from None
            if isinstance(exc, self._genicam.OutOfRangeException):
                raise LimitExceeded(message) from None
            raise DeviceError(message) from None

    # -- CameraBase ----------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._format.dtype

    @property
    def pixel_size_um(self) -> float:
        return self._pixel_size_um

    def close(self) -> None:
        """Stop grabbing, leave the camera free-running (as pylon Viewer expects to find it)
        and release it. Closing twice, or a camera that vanished, is fine."""
        cam = self._cam
        if cam is None:
            return
        with suppress(HardwareError):  # a stuck stream thread is a daemon: release all the same
            super().close()
        self._cam, self._closed = None, True
        try:
            cam.StopGrabbing()
            if not cam.IsCameraDeviceRemoved():
                node = cam.GetNodeMap().GetNode("TriggerMode")
                if self._genicam.IsWritable(node):
                    node.SetValue("Off")
        except self._genicam.GenericException:
            pass  # a camera that is gone or refuses is released below all the same
        finally:
            cam.Close()
            cam.DestroyDevice()
