"""The camera's controls in the live view's toolbar: Live on/off, exposure, snap, and the fps
readout. Every camera call runs on the `DeviceWorker`; while a scan owns the camera the
controls are disabled and the live view shows the scan's own frames instead. The exposure box
keeps to the range the connected camera takes (`exposure_range_ms`, asked on the worker: a
Basler reads it from the device)."""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from slidescan.app.gui.camera_tap import CameraTap
from slidescan.app.gui.live_view import LiveView
from slidescan.app.gui.notifier import Notifier
from slidescan.app.gui.worker import DeviceWorker

#: The exposure box's range while the camera has not said its own.
DEFAULT_EXPOSURE_RANGE_MS = (0.01, 10000.0)


class CameraControls(QtCore.QObject):
    #: Text for the status bar's frame-rate field.
    fpsText = QtCore.Signal(str)

    def __init__(
        self, live: LiveView, worker: DeviceWorker, notifier: Notifier, live_wanted: bool = True
    ) -> None:
        super().__init__(live)
        self._live = live
        self._worker = worker
        self._notifier = notifier
        self._camera: CameraTap | None = None
        self._scanning = False
        #: Whether the person wants the live stream on (kept in the settings).
        self.live_wanted = live_wanted

        self.live_button = QtWidgets.QPushButton("Live")
        self.live_button.setCheckable(True)
        self.live_button.setToolTip("Start / stop the live camera stream (L)")
        self.live_button.toggled.connect(self.set_live)
        live.toolbar.insertWidget(0, self.live_button)
        self.exposure = QtWidgets.QDoubleSpinBox()
        self.exposure.setRange(*DEFAULT_EXPOSURE_RANGE_MS)
        self.exposure.setDecimals(2)
        self.exposure.setSuffix(" ms")
        self.exposure.setToolTip("Camera exposure")
        self.exposure.setKeyboardTracking(False)
        self.exposure.valueChanged.connect(self._set_exposure)
        live.toolbar.insertWidget(3, self.exposure)
        live.snapRequested.connect(self.snap)
        live.fpsChanged.connect(self._show_fps)
        self._enable(False)

    def set_camera(self, camera: CameraTap | None) -> None:
        """The connected microscope's camera (its tap), or None."""
        self._camera = camera
        self._live.set_frame_source(camera.latest_frame if camera is not None else None)
        self._enable(camera is not None)
        with QtCore.QSignalBlocker(self.live_button):  # a new camera starts with its stream off
            self.live_button.setChecked(False)
        self._bound_exposure(camera, None)
        if camera is None:
            return
        with QtCore.QSignalBlocker(self.exposure):
            self.exposure.setValue(float(camera.exposure_ms))
        self._worker.submit(
            lambda: camera.exposure_range_ms,
            on_result=lambda limits: self._bound_exposure(camera, limits),
            label="exposure range",
            receiver=self,
        )
        if self.live_wanted:
            self.live_button.setChecked(True)

    def set_live(self, on: bool) -> None:
        self.live_wanted = on
        cam = self._camera
        if cam is None or self._scanning:
            return
        self._worker.submit(cam.start_stream if on else cam.stop_stream, label="live stream")

    def snap(self) -> None:
        cam = self._camera
        if cam is None:
            return
        if self._scanning:
            self._notifier.status("the scan owns the camera", 3000)
            return
        self._worker.submit(cam.snap, on_result=self._live.show_frame, label="snap")

    def scan_started(self) -> None:
        """The scan owns the camera: stop the stream; the view shows the scan's frames."""
        self._scanning = True
        self.exposure.setEnabled(False)
        self._live.set_polling(False)  # the scan views show the scan's frames, a few a second
        cam = self._camera
        if cam is not None and cam.streaming:
            self._worker.submit(cam.stop_stream, label="stop live stream")

    def scan_ended(self) -> None:
        self._scanning = False
        self.exposure.setEnabled(self._camera is not None)
        self._live.set_polling(True)
        if self.live_button.isChecked() and self._camera is not None:
            self._worker.submit(self._camera.start_stream, label="live stream")

    def _bound_exposure(self, camera: CameraTap | None, limits: tuple[float, float] | None) -> None:
        """Keep the exposure box to `camera`'s range (the default where it cannot say)."""
        if camera is not self._camera:
            return  # another camera was connected meanwhile
        lo, hi = limits if limits else DEFAULT_EXPOSURE_RANGE_MS
        with QtCore.QSignalBlocker(self.exposure):
            self.exposure.setRange(lo, hi)
        said = f" (this camera takes {lo:g}-{hi:g} ms)" if limits else ""
        self.exposure.setToolTip(f"Camera exposure{said}")

    def _enable(self, on: bool) -> None:
        for w in (self.live_button, self._live.snap_button, self.exposure):
            w.setEnabled(on)

    def _show_fps(self, fps: float) -> None:
        if self._scanning:
            self.fpsText.emit("view: scan frames")
        elif self.live_button.isChecked():
            self.fpsText.emit(f"{fps:.1f} fps")
        else:
            self.fpsText.emit("live off")

    def _set_exposure(self, ms: float) -> None:
        cam = self._camera
        if cam is None or self._scanning or abs(float(cam.exposure_ms) - ms) < 1e-9:
            return

        def apply() -> None:
            cam.exposure_ms = float(ms)

        self._worker.submit(apply, label="set exposure")
