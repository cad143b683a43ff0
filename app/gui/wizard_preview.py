"""The wizard's live preview: one camera opened on the `DeviceWorker`, streaming, its newest
frame pulled into a small view at most `PREVIEW_FPS` times a second, and closed again when
the preview stops (leaving the camera step, closing the wizard, another camera chosen).

As in the main window's live view the preview *pulls* the newest frame (`latest_frame()`, a
read of the camera's bounded buffer) on a timer, so a camera that streams at 90 fps costs the
GUI thread at most `PREVIEW_FPS` frames a second; each is reduced to what the view shows
(OpenCV's area averaging) before it is painted. Opening the camera, starting its stream,
exposure changes and closing run on the worker thread in the order they were asked for, so a
camera is always closed after it opened, however early the preview stopped: none is left open
(a second open of a Basler camera held here would fail "in use").
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PySide6 import QtCore, QtWidgets

from slidescan.app.gui._pg import pg
from slidescan.app.gui.wizard_errors import error_line
from slidescan.app.gui.worker import DeviceWorker
from slidescan.hardware.base import Camera, CameraBase, Frame

#: The most frames a second the preview shows.
PREVIEW_FPS = 15
#: The longest side of the image the preview paints, in pixels.
VIEW_PX = 480

#: Opens the camera (on the worker thread): the camera and what closes it.
Opener = Callable[[], tuple[Camera, Callable[[], None]]]


@dataclass(frozen=True)
class OpenedCamera:
    """The camera the preview opened, with what its controls need, read on the worker."""

    camera: Camera
    exposure_ms: float
    exposure_range_ms: tuple[float, float] | None


class PreviewSession:
    """One opening of the camera. Its methods run on the worker thread, in the order they were
    submitted; `stopped` is set on the GUI thread when the preview no longer wants it."""

    def __init__(self, opener: Opener) -> None:
        self._opener = opener
        self._closer: Callable[[], None] | None = None
        self.camera: Camera | None = None
        self.stopped = False

    def open(self) -> OpenedCamera | None:
        """Open the camera and start its stream; None when the preview stopped first."""
        if self.stopped:
            return None
        camera, closer = self._opener()
        self._closer = closer
        if self.stopped:  # while it opened: the close that follows closes it
            return None
        try:
            camera.start_stream()
        except BaseException:
            self.close()
            raise
        self.camera = camera
        return OpenedCamera(camera, float(camera.exposure_ms), camera.exposure_range_ms)

    def set_exposure(self, exposure_ms: float) -> float | None:
        """Set the exposure; what the camera took (it may round), None when it is closed. The
        stream restarts around the change: a frame in flight waits as long as the old exposure
        allows, which a much longer new one would overrun."""
        camera = self.camera
        if camera is None:
            return None
        camera.stop_stream()
        try:
            camera.exposure_ms = float(exposure_ms)
        finally:
            camera.start_stream()
        return float(camera.exposure_ms)

    def close(self) -> None:
        closer, self._closer, self.camera = self._closer, None, None
        if closer is not None:
            closer()


def preview_image(image: np.ndarray, longest: int = VIEW_PX) -> np.ndarray:
    """`image` reduced by an integer factor (area averaging) to at most `longest` pixels."""
    h, w = image.shape[:2]
    k = math.ceil(max(h, w) / longest)
    if k <= 1:
        return image
    return cv2.resize(image, (w // k, h // k), interpolation=cv2.INTER_AREA)


def display_levels(image: np.ndarray) -> tuple[float, float]:
    """The full range for 8-bit frames; else the 0.1-99.9 percentiles (a 12-bit camera fills
    only the low sixteenth of a uint16)."""
    if image.dtype == np.uint8:
        return 0.0, 255.0
    lo, hi = np.percentile(image, [0.1, 99.9])
    return float(lo), float(max(hi, lo + 1))


def describe_camera(camera: Camera) -> str:
    """Its frame size and sample type: "✓ 1024 × 1040 px, uint8"."""
    shape = tuple(camera.shape)
    return f"✓ {shape[1]} × {shape[0]} px, {np.dtype(camera.dtype)}"


class CameraPreview(QtWidgets.QWidget):
    """A small live view of one camera; `start(opener)` and `stop()`."""

    #: The camera, streaming (an `OpenedCamera`), on the GUI thread.
    opened = QtCore.Signal(object)
    #: Why the camera could not be opened or stopped streaming (one line); the preview is off.
    failed = QtCore.Signal(str)
    #: The exposure (ms) the camera took after `set_exposure`.
    exposureApplied = QtCore.Signal(float)

    def __init__(self, worker: DeviceWorker, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.graphics = pg.GraphicsView()
        self.viewbox = pg.ViewBox(lockAspect=True, invertY=True, enableMouse=False)
        self.graphics.setCentralItem(self.viewbox)
        self.image = pg.ImageItem()
        self.viewbox.addItem(self.image)
        self.graphics.setMinimumHeight(220)
        self.status = QtWidgets.QLabel("")
        self.status.setWordWrap(True)
        #: The row above the view: the status line, after what the owner puts before it.
        self.bar = QtWidgets.QHBoxLayout()
        self.bar.addWidget(self.status, 1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self.bar)
        layout.addWidget(self.graphics, 1)
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(round(1000 / PREVIEW_FPS))
        self._timer.timeout.connect(self.poll)
        self._session: PreviewSession | None = None
        self._exposure_wanted: float | None = None
        self._exposure_busy = False
        self._shown_at: collections.deque[tuple[float, int]] = collections.deque(maxlen=31)
        #: The status line's text for the camera shown (before the frame rates).
        self.describe: Callable[[Camera], str] = describe_camera
        #: The camera being previewed (None while opening or off) and its newest frame shown.
        self.camera: Camera | None = None
        self.last_frame: Frame | None = None
        self.frames_shown = 0
        #: Seconds from `start` until the camera streamed.
        self.open_s: float | None = None

    @property
    def active(self) -> bool:
        """Opening or showing a camera."""
        return self._session is not None

    # -- on and off ----------------------------------------------------------------------------
    def start(self, opener: Opener) -> None:
        """Open a camera (closing the one shown) and show its stream."""
        self.stop()
        session = PreviewSession(opener)
        self._session = session
        self.frames_shown = 0
        self.last_frame = None
        self._shown_at.clear()
        self.status.setText("opening the camera …")
        started = time.perf_counter()
        self.worker.submit(
            session.open,
            on_result=lambda opened: self._opened(session, opened, started),
            on_error=lambda exc: self._failed(session, exc),
            label="open the camera for the preview",
        )

    def stop(self, note: str = "") -> None:
        """Stop showing and close the camera (on the worker, after whatever it is doing)."""
        self._timer.stop()
        session, self._session = self._session, None
        self.camera = None
        self._exposure_wanted, self._exposure_busy = None, False
        if session is None:
            return
        session.stopped = True
        self.worker.submit(session.close, label="close the preview camera")
        self.status.setText(note)

    def _opened(self, session: PreviewSession, opened: OpenedCamera | None, started: float) -> None:
        if session is not self._session or opened is None:
            return  # stopped meanwhile: the close submitted then closes it
        self.camera = opened.camera
        self.open_s = time.perf_counter() - started
        self.status.setText(self.describe(opened.camera))
        self._timer.start()
        self.opened.emit(opened)

    def _failed(self, session: PreviewSession, exc: BaseException) -> None:
        if session is not self._session:
            return
        message = f"✗ {error_line(exc)}"
        self.stop(message)
        self.failed.emit(message)

    # -- exposure ------------------------------------------------------------------------------
    def set_exposure(self, exposure_ms: float) -> None:
        """Apply the exposure to the camera shown. Changes that come while one is applied are
        folded into one: only the newest is applied next."""
        if self._session is None:
            return
        self._exposure_wanted = float(exposure_ms)
        self._apply_exposure()

    def _apply_exposure(self) -> None:
        session = self._session
        if session is None or self._exposure_busy or self._exposure_wanted is None:
            return
        wanted, self._exposure_wanted = self._exposure_wanted, None
        self._exposure_busy = True
        self.worker.submit(
            session.set_exposure,
            wanted,
            on_result=lambda took: self._exposure_done(session, took),
            on_error=lambda exc: self._exposure_failed(session, exc),
            label="set the preview's exposure",
            receiver=self,
        )

    def _exposure_done(self, session: PreviewSession, took: float | None) -> None:
        if session is not self._session:
            return
        self._exposure_busy = False
        if took is not None and self._exposure_wanted is None:  # else a newer one follows
            self.exposureApplied.emit(took)
        self._apply_exposure()

    def _exposure_failed(self, session: PreviewSession, exc: BaseException) -> None:
        if session is not self._session:
            return
        self._exposure_busy = False
        self.status.setText(f"✗ exposure: {error_line(exc)}")
        self._apply_exposure()

    # -- frames --------------------------------------------------------------------------------
    def poll(self) -> None:
        """Show the camera's newest frame, if it is new."""
        camera = self.camera
        if camera is None:
            return
        frame = camera.latest_frame()
        if frame is not None and frame is not self.last_frame:
            self._show(camera, frame)
        elif (
            isinstance(camera, CameraBase)
            and camera.stream_error is not None
            and not camera.streaming
            and not self._exposure_busy
        ):
            self._failed_stream(camera.stream_error)

    def _failed_stream(self, exc: BaseException) -> None:
        message = f"✗ the stream stopped: {error_line(exc)}"
        self.stop(message)
        self.failed.emit(message)

    def _show(self, camera: Camera, frame: Frame) -> None:
        shown = preview_image(frame.image)
        self.image.setImage(shown, levels=display_levels(shown), autoLevels=False)
        if self.frames_shown == 0:
            self.viewbox.autoRange(padding=0)
        self.last_frame = frame
        self.frames_shown += 1
        streamed = camera.frames_streamed if isinstance(camera, CameraBase) else 0
        self._shown_at.append((time.perf_counter(), streamed))
        self.status.setText(self.describe(camera) + self.rates_text())

    def rates(self) -> tuple[float, float] | None:
        """(frames shown, frames the camera streamed) per second over the last ~2 s."""
        if len(self._shown_at) < 2:
            return None
        (t0, n0), (t1, n1) = self._shown_at[0], self._shown_at[-1]
        if t1 <= t0:
            return None
        return (len(self._shown_at) - 1) / (t1 - t0), (n1 - n0) / (t1 - t0)

    def rates_text(self) -> str:
        rates = self.rates()
        if rates is None:
            return ""
        shown, streamed = rates
        camera = f" (camera {streamed:.0f} fps)" if streamed > 0 else ""
        return f" · {shown:.1f} fps shown{camera}"
