"""Live camera view: image with histogram/levels, auto-contrast, crosshair, readout, fps, snap.

The view *pulls* the newest frame on a timer (`poll_ms`) from a frame source (usually the
camera's `latest_frame`); a camera streaming faster than the screen can paint simply has its
surplus frames dropped, so it can never flood the event loop. Only what is on screen is
converted for display: the visible part of the frame is cropped and, when it holds more pixels
than the screen shows, reduced by an integer factor with OpenCV's area averaging before colour
mapping. That keeps 2048 x 2048 frames well above 30 fps; the readout and levels always use
the full-resolution frame.

Pixel to stage mapping: the frame is centred on the stage position at exposure; one pixel =
`pixel_size_um`; column = +x and row = +y for a camera mounted square, else turned and
mirrored as the profile's camera calibration says (`set_mount`, camera_mount.py). A
double-click asks to centre the stage on that point.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

import cv2
import numpy as np
from PySide6 import QtCore, QtWidgets

from slidescan.app.gui._pg import pg
from slidescan.app.gui.camera_mount import CameraMount
from slidescan.app.gui.throttle import Throttle
from slidescan.hardware.base import Frame, Position

FrameSource = Callable[[], Frame | None]


class _CountingImageItem(pg.ImageItem):
    """An ImageItem that counts its paints (the live view's real display rate)."""

    paints = 0

    def paint(self, p, *args) -> None:  # noqa: ANN001 - Qt signature
        self.paints += 1
        super().paint(p, *args)


def auto_levels(
    image: np.ndarray, low_pct: float = 0.1, high_pct: float = 99.9
) -> tuple[float, float]:
    """Contrast limits from percentiles of a subsample (fast on big frames; ignores outliers)."""
    step = max(1, int(np.sqrt(image.shape[0] * image.shape[1] / 65536)))
    sample = image[::step, ::step]
    lo, hi = np.percentile(sample, [low_pct, high_pct])
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def pixel_to_stage(
    col: float,
    row: float,
    shape: tuple[int, ...],
    centre: Position,
    pixel_size_um: float,
    mount: CameraMount | None = None,
) -> tuple[float, float]:
    """Stage (x, y) in um of an image point, the frame being centred on `centre`, the camera
    mounted as `mount` says (square when None)."""
    if mount is not None and not mount.square:
        return mount.pixel_to_stage(col, row, shape, (centre.x, centre.y), pixel_size_um)
    h, w = shape[0], shape[1]
    return (
        centre.x + (col - w / 2.0) * pixel_size_um,
        centre.y + (row - h / 2.0) * pixel_size_um,
    )


class LiveView(QtWidgets.QWidget):
    """Shows the newest camera frame; emits `moveRequested(x_um, y_um)` on a double-click."""

    moveRequested = QtCore.Signal(float, float)
    snapRequested = QtCore.Signal()
    fpsChanged = QtCore.Signal(float)

    def __init__(self, parent: QtWidgets.QWidget | None = None, poll_ms: int = 15) -> None:
        super().__init__(parent)
        self._source: FrameSource | None = None
        self._position_fallback: Callable[[], Position | None] = lambda: None
        self.mount = CameraMount()
        self._frame: Frame | None = None
        self._shown_at: collections.deque[float] = collections.deque(maxlen=240)
        self._fps = 0.0
        self._last_fps_emit = 0.0
        self._continuous_auto = False
        self.frames_shown = 0

        self.graphics = pg.GraphicsLayoutWidget()
        self.view = self.graphics.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.view.disableAutoRange()
        self.view.sigRangeChanged.connect(self._on_range_changed)
        self.image = _CountingImageItem()
        self.image.setLevels((0, 255))
        self.view.addItem(self.image)
        self.histogram = pg.HistogramLUTItem(image=self.image, levelMode="mono")
        self.histogram.setLevels(0, 255)  # its region starts at [0, 1]: a white image
        self.graphics.addItem(self.histogram)
        # The histogram needs no 60 Hz refresh: recompute it at most 4 times a second.
        self.image.sigImageChanged.disconnect(self.histogram.imageChanged)
        self._histogram_throttle = Throttle(self.histogram.imageChanged, 250, self)
        self.image.sigImageChanged.connect(self._histogram_throttle.request)
        pen = pg.mkPen((255, 200, 0, 180), width=1)
        self.cross_v = pg.InfiniteLine(angle=90, movable=False, pen=pen)
        self.cross_h = pg.InfiniteLine(angle=0, movable=False, pen=pen)
        for line in (self.cross_v, self.cross_h):
            self.view.addItem(line, ignoreBounds=True)
        self.placeholder = pg.TextItem("no camera", color=(180, 180, 180), anchor=(0.5, 0.5))
        self.view.addItem(self.placeholder)

        self.auto_button = QtWidgets.QPushButton("Auto")
        self.auto_button.setToolTip("Set the levels from the 0.1-99.9 % range of this frame (A)")
        self.auto_button.clicked.connect(self.auto_contrast)
        self.continuous_check = QtWidgets.QCheckBox("keep")
        self.continuous_check.setToolTip("Keep auto contrast on: re-apply it to every frame")
        self.continuous_check.toggled.connect(self._set_continuous)
        self.cross_check = QtWidgets.QCheckBox("Cross")
        self.cross_check.setToolTip("Crosshair at the field centre")
        self.cross_check.setChecked(True)
        self.cross_check.toggled.connect(self._set_crosshair)
        self.snap_button = QtWidgets.QPushButton("Snap")
        self.snap_button.setToolTip("Take one frame (Space)")
        self.snap_button.clicked.connect(self.snapRequested)
        self.readout = QtWidgets.QLabel("")
        self.readout.setMinimumWidth(120)
        self.readout.setSizePolicy(
            QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred
        )
        self.readout.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.fps_label = QtWidgets.QLabel("-- fps")
        self.fps_label.setMinimumWidth(70)

        self.toolbar = bar = QtWidgets.QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        for w in (self.snap_button, self.auto_button, self.continuous_check, self.cross_check):
            bar.addWidget(w)
        bar.addStretch(1)
        bar.addWidget(self.readout)
        bar.addWidget(self.fps_label)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.graphics, 1)
        layout.addLayout(bar)

        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.graphics.scene().sigMouseClicked.connect(self._on_mouse_clicked)

        self._timer = QtCore.QTimer(self)
        self._timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self.poll)

    # -- source --------------------------------------------------------------------------------
    def set_frame_source(self, source: FrameSource | None) -> None:
        """Start pulling frames from `source` (None stops)."""
        self._source = source
        if source is None:
            self._timer.stop()
        else:
            self._timer.start()

    def set_polling(self, on: bool) -> None:
        """Pause or resume the pull timer (the owner may call `poll()` itself meanwhile)."""
        if on and self._source is not None:
            self._timer.start()
        else:
            self._timer.stop()

    def set_position_fallback(self, provider: Callable[[], Position | None]) -> None:
        """Where the stage is, for frames that do not carry their own position."""
        self._position_fallback = provider

    def set_mount(self, mount: CameraMount) -> None:
        """How the camera sits on the stage (the profile's calibration), for click-to-move and
        the stage readout."""
        self.mount = mount

    @property
    def frame(self) -> Frame | None:
        return self._frame

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def paints(self) -> int:
        """How often the image has been painted on screen."""
        return self.image.paints

    def poll(self) -> None:
        if self._source is None:
            return
        try:
            frame = self._source()
        except Exception:  # a vanished camera must not kill the view; the owner reports it
            frame = None
        if frame is not None and frame is not self._frame:
            self.show_frame(frame)
        self._update_fps()

    def show_frame(self, frame: Frame) -> None:
        first = self._frame is None or self._frame.image.shape != frame.image.shape
        self._frame = frame
        img = frame.image
        if first:
            self.placeholder.setVisible(False)
            h, w = img.shape[0], img.shape[1]
            self.cross_v.setPos(w / 2.0)
            self.cross_h.setPos(h / 2.0)
            with QtCore.QSignalBlocker(self.view):
                self.view.setRange(QtCore.QRectF(0, 0, w, h), padding=0.0)
            if img.dtype != np.uint8:
                self._render()
                self.auto_contrast()
        elif self._continuous_auto:
            lo, hi = auto_levels(img)
            self.image.setLevels((lo, hi))
            self.histogram.setLevels(lo, hi)
        self._render()
        self.frames_shown += 1
        self._shown_at.append(time.perf_counter())

    def _render(self) -> None:
        """Put the visible part of the frame on screen, reduced to about the screen's pixels."""
        if self._frame is None:
            return
        img = self._frame.image
        h, w = img.shape[0], img.shape[1]
        (x0, x1), (y0, y1) = self.view.viewRange()
        c0, c1 = max(0, int(np.floor(x0))), min(w, int(np.ceil(x1)))
        r0, r1 = max(0, int(np.floor(y0))), min(h, int(np.ceil(y1)))
        if c1 <= c0 or r1 <= r0:  # panned off the frame
            c0, c1, r0, r1 = 0, w, 0, h
        ratio = self.devicePixelRatioF()
        screen_w = max(1.0, self.view.width() * ratio)
        screen_h = max(1.0, self.view.height() * ratio)
        k = int(min((x1 - x0) / screen_w, (y1 - y0) / screen_h))
        crop = img[r0:r1, c0:c1]
        if k >= 2 and (c1 - c0) >= 2 * k and (r1 - r0) >= 2 * k:
            cw, ch = (c1 - c0) // k, (r1 - r0) // k
            crop = cv2.resize(crop[: ch * k, : cw * k], (cw, ch), interpolation=cv2.INTER_AREA)
            rect = QtCore.QRectF(c0, r0, cw * k, ch * k)
        else:
            rect = QtCore.QRectF(c0, r0, c1 - c0, r1 - r0)
        self.image.setImage(crop, autoLevels=False)
        self.image.setRect(rect)

    def _on_range_changed(self, *_: object) -> None:
        self._render()

    def auto_contrast(self) -> None:
        if self._frame is None:
            return
        lo, hi = auto_levels(self._frame.image)
        self.image.setLevels((lo, hi))
        self.histogram.setLevels(lo, hi)

    def _set_continuous(self, on: bool) -> None:
        self._continuous_auto = on
        if on:
            self.auto_contrast()

    def _set_crosshair(self, on: bool) -> None:
        self.cross_v.setVisible(on)
        self.cross_h.setVisible(on)

    def _update_fps(self) -> None:
        now = time.perf_counter()
        while self._shown_at and now - self._shown_at[0] > 2.0:
            self._shown_at.popleft()
        n = len(self._shown_at)
        self._fps = (n - 1) / (self._shown_at[-1] - self._shown_at[0]) if n >= 2 else 0.0
        if now - self._last_fps_emit > 0.5:
            self._last_fps_emit = now
            self.fps_label.setText(f"{self._fps:5.1f} fps")
            self.fpsChanged.emit(self._fps)

    # -- mouse ---------------------------------------------------------------------------------
    def _frame_centre(self) -> Position | None:
        if self._frame is not None and self._frame.position is not None:
            return self._frame.position
        return self._position_fallback()

    def stage_point(self, col: float, row: float) -> tuple[float, float] | None:
        """Stage (x, y) of an image point in the current frame, or None without a frame."""
        frame = self._frame
        centre = self._frame_centre()
        if frame is None or centre is None or not frame.pixel_size_um:
            return None
        return pixel_to_stage(col, row, frame.image.shape, centre, frame.pixel_size_um, self.mount)

    def _on_mouse_moved(self, scene_pos: QtCore.QPointF) -> None:
        frame = self._frame
        if frame is None or not self.view.sceneBoundingRect().contains(scene_pos):
            return
        p = self.view.mapSceneToView(scene_pos)
        col, row = int(np.floor(p.x())), int(np.floor(p.y()))
        h, w = frame.image.shape[0], frame.image.shape[1]
        if not (0 <= col < w and 0 <= row < h):
            self.readout.setText("")
            return
        value = frame.image[row, col]
        vtext = ", ".join(str(int(v)) for v in np.atleast_1d(value))
        text = f"px ({col}, {row}) = {vtext}"
        stage = self.stage_point(col + 0.5, row + 0.5)
        if stage is not None:
            text += f"   stage ({stage[0]:.1f}, {stage[1]:.1f}) µm"
        self.readout.setText(text)

    def _on_mouse_clicked(self, ev) -> None:  # pyqtgraph MouseClickEvent
        if not ev.double() or ev.button() != QtCore.Qt.MouseButton.LeftButton:
            return
        p = self.view.mapSceneToView(ev.scenePos())
        stage = self.stage_point(p.x(), p.y())
        if stage is not None:
            ev.accept()
            self.moveRequested.emit(*stage)
