"""USB (UVC) cameras through OpenCV's `VideoCapture`: V4L2 on Linux, DirectShow or Media
Foundation on Windows, AVFoundation on macOS.

Every OpenCV call that can fail is checked: `isOpened()` after opening, the return value of
each `set()`, and `(ok, frame)` of each `read()`. A camera that is missing, or held by another
program, is a `DeviceError` naming the index. Frames come out as RGB (OpenCV delivers BGR).

Exposure: OpenCV's `CAP_PROP_EXPOSURE` means different things per backend. V4L2 takes the
UVC `exposure_time_absolute` in units of 100 us (with auto exposure switched to manual);
DirectShow and Media Foundation take log2 of the exposure in seconds. `exposure_ms` converts.
A backend that refuses a setting raises `NotSupportedError` when the setting was asked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from slidescan.hardware.base import CameraBase, Position
from slidescan.hardware.clock import Clock
from slidescan.hardware.errors import DeviceError, NotSupportedError

BACKENDS: dict[str, int] = {
    "auto": cv2.CAP_ANY,
    "v4l2": cv2.CAP_V4L2,
    "dshow": cv2.CAP_DSHOW,
    "msmf": cv2.CAP_MSMF,
    "avfoundation": cv2.CAP_AVFOUNDATION,
}

CaptureFactory = Callable[[int, int], Any]


def exposure_to_backend(exposure_ms: float, backend: str) -> float:
    """The `CAP_PROP_EXPOSURE` value for `exposure_ms` on `backend`."""
    if backend == "v4l2":
        return max(1.0, round(exposure_ms * 10.0))  # units of 100 us
    if backend in ("dshow", "msmf"):
        return float(round(math.log2(exposure_ms / 1000.0)))  # log2(seconds)
    return float(exposure_ms)


class OpenCVCamera(CameraBase):
    """A UVC camera. `pixel_size_um` is the size of a pixel at the specimen plane."""

    #: What `exposure_ms` can express (V4L2 counts 100 µs steps; the profile allows up to 60 s).
    #: OpenCV cannot ask the camera for its own range: a camera may clamp further.
    EXPOSURE_RANGE_MS = (0.1, 60000.0)

    def __init__(
        self,
        index: int = 0,
        *,
        pixel_size_um: float,
        backend: str = "auto",
        width: int | None = None,
        height: int | None = None,
        exposure_ms: float | None = None,
        gain: float | None = None,
        capture_factory: CaptureFactory | None = None,
        clock: Clock | None = None,
        position_source: Callable[[], Position | None] | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown camera backend {backend!r}; known: {', '.join(BACKENDS)}")
        self._cap: Any = None  # opened below; until then exposure_ms is only remembered
        super().__init__(
            exposure_ms=exposure_ms if exposure_ms is not None else 0.0,
            gain=gain if gain is not None else 1.0,
            clock=clock,
            position_source=position_source,  # type: ignore[arg-type]
        )
        self.index = int(index)
        self.backend = backend
        self._pixel_size_um = float(pixel_size_um)
        factory = capture_factory or cv2.VideoCapture
        self._cap = factory(self.index, BACKENDS[backend])
        if self._cap is None or not self._cap.isOpened():
            raise DeviceError(
                f"camera {self.index} could not be opened ({backend}): it is missing, or "
                "another program is using it"
            )
        try:
            if width is not None and height is not None:
                self._set(cv2.CAP_PROP_FRAME_WIDTH, width, "width")
                self._set(cv2.CAP_PROP_FRAME_HEIGHT, height, "height")
            if exposure_ms is not None:
                self.set_exposure_ms(exposure_ms)
            if gain is not None:
                self._set(cv2.CAP_PROP_GAIN, gain, "gain")
            first = self._read()  # a busy camera often opens but never delivers
            if width is not None and height is not None and first.shape[:2] != (height, width):
                raise NotSupportedError(
                    f"camera {self.index} delivers {first.shape[1]}x{first.shape[0]}, "
                    f"not the {width}x{height} asked for"
                )
            self._shape = tuple(first.shape)
            self._dtype = first.dtype
        except BaseException:
            self._cap.release()
            raise

    def _set(self, prop: int, value: float, what: str) -> None:
        if not self._cap.set(prop, float(value)):
            raise NotSupportedError(
                f"camera {self.index} ({self.backend}) does not accept {what} = {value}"
            )

    def set_exposure_ms(self, exposure_ms: float) -> None:
        """Switch to manual exposure and set it; `NotSupportedError` if the backend refuses."""
        if not exposure_ms > 0:
            raise ValueError(f"exposure must be positive, got {exposure_ms} ms")
        if self.backend == "v4l2":
            self._set(cv2.CAP_PROP_AUTO_EXPOSURE, 1, "manual exposure")  # V4L2: 1 = manual
        value = exposure_to_backend(exposure_ms, self.backend)
        self._set(cv2.CAP_PROP_EXPOSURE, value, "exposure")
        self._exposure_ms = float(exposure_ms)

    @property  # type: ignore[override]
    def exposure_ms(self) -> float:
        return self._exposure_ms

    @exposure_ms.setter
    def exposure_ms(self, value: float) -> None:
        """Assigning (as the GUI's exposure control does) sets the camera's exposure."""
        if self._cap is None:  # CameraBase.__init__, before the camera opens
            self._exposure_ms = float(value)
            return
        self.set_exposure_ms(value)

    def _read(self) -> np.ndarray:
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise DeviceError(
                f"camera {self.index} returned no frame: unplugged, or in use by another program"
            )
        if frame.ndim == 3 and frame.shape[2] == 4:
            return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
        if frame.ndim == 3 and frame.shape[2] == 3:
            return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if frame.ndim == 3 and frame.shape[2] == 1:
            return frame[:, :, 0]
        return frame

    # -- CameraBase --------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._dtype)

    @property
    def pixel_size_um(self) -> float:
        return self._pixel_size_um

    def _acquire(self) -> tuple[np.ndarray, dict[str, Any]]:
        image = self._read()
        return image, {"camera_index": self.index, "backend": self.backend}

    def close(self) -> None:
        super().close()
        self._cap.release()


def probe_cameras(indices: range = range(4), backend: str = "auto") -> list[dict[str, Any]]:
    """Cameras that open and deliver a frame, with their frame size. Quiet: OpenCV's own
    warnings about missing devices are silenced while probing."""
    found = []
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        for index in indices:
            cap = cv2.VideoCapture(index, BACKENDS[backend])
            try:
                if not cap.isOpened():
                    continue
                ok, frame = cap.read()
                found.append(
                    {
                        "index": index,
                        "backend": cap.getBackendName()
                        if hasattr(cap, "getBackendName")
                        else backend,
                        "frame": list(frame.shape) if ok and frame is not None else None,
                        "delivers_frames": bool(ok),
                    }
                )
            finally:
                cap.release()
    finally:
        cv2.utils.logging.setLogLevel(previous)
    return found
