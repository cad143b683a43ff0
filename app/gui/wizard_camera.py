"""The wizard's camera step: which camera images the slide, its settings, a live preview and
an exposure control.

The kinds offered are the device registry's that go with the chosen stage (the simulator's
camera with the simulator's stage only). What the step shows follows what each kind declares:
its config model says which settings it has (a USB camera's index and backend, a Basler
camera's serial and pixel format), a kind that can `find` its cameras gets a list of them
(`CameraList`), and once the camera is open its own `exposure_range_ms` bounds the exposure
control. Choosing a listed camera opens it in the preview (`CameraPreview`), which fills
what the camera holds into the profile (its pixel format, its exposure); an exposure changed
while the preview runs reaches the camera at once. The camera is closed when the preview
stops, the step is left or the wizard closes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

from pydantic import ValidationError
from PySide6 import QtCore, QtWidgets

from slidescan.app.gui.wizard_camera_list import CameraList
from slidescan.app.gui.wizard_errors import error_line
from slidescan.app.gui.wizard_preview import (
    CameraPreview,
    OpenedCamera,
    Opener,
    describe_camera,
)
from slidescan.app.gui.worker import DeviceWorker
from slidescan.hardware.base import Camera
from slidescan.hardware.drivers.basler import BaslerCamera
from slidescan.hardware.registry import (
    BaslerCameraConfig,
    BaslerPixelFormat,
    CameraConfig,
    CameraKind,
    OpenCVCameraConfig,
    camera_kind,
    camera_kinds,
    stage_kind,
)

SIM_SPECIMENS = {"he": "Procedural H&E section", "ihc": "Procedural IHC (DAB) section"}
#: The longest exposure a profile takes (the camera config models' bound), in ms.
MAX_EXPOSURE_MS = 60000.0
CAMERA_DEFAULT = "camera default"


class CameraPage(QtWidgets.QWizardPage):
    """`opener()` gives what opens the camera the page describes (the wizard's
    `camera_opener`); it raises `ValueError` for settings that do not make a camera."""

    def __init__(self, worker: DeviceWorker, opener: Callable[[], Opener]) -> None:
        super().__init__()
        self.worker = worker
        self._opener = opener
        self.setTitle("Camera")
        self.setSubTitle("The camera that images the slide. Preview shows what it sees.")
        self.type = QtWidgets.QComboBox()
        # the simulator's camera
        self.sim_size = QtWidgets.QComboBox()
        for s in (512, 1024, 2048):
            self.sim_size.addItem(f"{s} × {s}", s)
        self.sim_size.setCurrentIndex(1)
        self.sim_mono = QtWidgets.QCheckBox("monochrome (else RGB)")
        self.sim_bits = QtWidgets.QComboBox()
        for b in (8, 12, 16):
            self.sim_bits.addItem(f"{b} bit", b)
        self.specimen = QtWidgets.QComboBox()
        for key, text in SIM_SPECIMENS.items():
            self.specimen.addItem(text, key)
        # a USB camera
        self.index = QtWidgets.QSpinBox()
        self.index.setRange(0, 63)
        self.backend = QtWidgets.QComboBox()
        self.backend.addItems(list(get_args(OpenCVCameraConfig.model_fields["backend"].annotation)))
        self.width = QtWidgets.QSpinBox()
        self.height = QtWidgets.QSpinBox()
        for box in (self.width, self.height):
            box.setRange(0, 16384)
            box.setSpecialValueText(CAMERA_DEFAULT)
        # a kind that lists its cameras (Basler)
        self.camera_list = CameraList(worker)
        self.pixel_format = QtWidgets.QComboBox()
        self.pixel_format.setToolTip("What the camera sends; the camera's own until it is open")
        self._set_pixel_formats(get_args(BaslerPixelFormat), None)
        # every kind
        self.exposure = QtWidgets.QDoubleSpinBox()
        self.exposure.setDecimals(3)
        self.exposure.setRange(0, MAX_EXPOSURE_MS)
        self.exposure.setStepType(QtWidgets.QAbstractSpinBox.StepType.AdaptiveDecimalStepType)
        self.exposure.setSpecialValueText(CAMERA_DEFAULT)
        self.exposure.setSuffix(" ms")
        self.exposure.setKeyboardTracking(False)
        self.exposure.setToolTip(
            "Applied to the preview as you change it, and saved in the profile"
        )
        self.exposure_range = QtWidgets.QLabel("")
        exposure_row = QtWidgets.QHBoxLayout()
        exposure_row.setContentsMargins(0, 0, 0, 0)
        exposure_row.addWidget(self.exposure)
        exposure_row.addWidget(self.exposure_range, 1)
        self.exposure_box = QtWidgets.QWidget()
        self.exposure_box.setLayout(exposure_row)
        #: (min, max) ms of the camera last opened, where it declares one.
        self.camera_exposure_range: tuple[float, float] | None = None

        self.preview_button = QtWidgets.QPushButton("Live preview")
        self.preview_button.setCheckable(True)
        self.preview = CameraPreview(worker)
        self.preview.describe = self._describe

        form = QtWidgets.QFormLayout()
        form.addRow("Camera", self.type)
        self.sim_rows: list[QtWidgets.QWidget] = []
        for label, w in (
            ("Sensor", self.sim_size),
            ("", self.sim_mono),
            ("Bit depth", self.sim_bits),
            ("Slide", self.specimen),
        ):
            form.addRow(label, w)
            self.sim_rows.append(w)
        self.cv_rows: list[QtWidgets.QWidget] = []
        for label, w in (
            ("Device index", self.index),
            ("Backend", self.backend),
            ("Width", self.width),
            ("Height", self.height),
        ):
            form.addRow(label, w)
            self.cv_rows.append(w)
        form.addRow("Cameras found", self.camera_list)
        form.addRow("Pixel format", self.pixel_format)
        form.addRow("Exposure", self.exposure_box)
        self._form = form
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(form)
        self.preview.bar.insertWidget(0, self.preview_button)
        layout.addWidget(self.preview, 1)

        self.type.currentIndexChanged.connect(self._kind_changed)
        self.preview_button.toggled.connect(self._preview_toggled)
        self.preview.opened.connect(self._preview_opened)
        self.preview.failed.connect(self._preview_failed)
        self.preview.exposureApplied.connect(self._exposure_applied)
        self.camera_list.chosen.connect(self._camera_chosen)
        self.exposure.valueChanged.connect(self._exposure_changed)
        for combo in (self.sim_size, self.sim_bits, self.specimen, self.backend, self.pixel_format):
            combo.currentIndexChanged.connect(self._settings_changed)
        for box in (self.index, self.width, self.height):
            box.valueChanged.connect(self._settings_changed)
        self.sim_mono.toggled.connect(self._settings_changed)

    # -- the kind ------------------------------------------------------------------------------
    def set_stage_type(self, stage_type: str) -> None:
        """The simulator's camera goes with the simulator's stage, and only with it."""
        sim = stage_kind(stage_type).simulated
        with QtCore.QSignalBlocker(self.type):
            self.type.clear()
            for kind in camera_kinds():
                if kind.simulated == sim:
                    self.type.addItem(kind.label, kind.name)
        self._kind_changed()

    def set_camera_type(self, name: str) -> None:
        i = self.type.findData(name)
        if i >= 0 and i != self.type.currentIndex():
            self.type.setCurrentIndex(i)

    @property
    def camera_type(self) -> str:
        return str(self.type.currentData())

    @property
    def kind(self) -> CameraKind:
        return camera_kind(self.camera_type)

    def _kind_changed(self, *_: object) -> None:
        self.stop_preview()
        kind = self.kind
        for w in self.sim_rows:
            self._form.setRowVisible(w, kind.simulated)
        for w in self.cv_rows:
            self._form.setRowVisible(w, issubclass(kind.config, OpenCVCameraConfig))
        self._form.setRowVisible(self.camera_list, kind.find is not None)
        self._form.setRowVisible(self.pixel_format, issubclass(kind.config, BaslerCameraConfig))
        self._set_exposure_range(None)
        self.preview.status.setText("")
        if kind.find is not None and self.isVisible():
            self.camera_list.look(kind)

    def initializePage(self) -> None:  # noqa: N802 - Qt naming
        kind = self.kind
        if kind.find is not None:
            self.camera_list.look(kind)  # cameras plugged in since are found

    # -- the profile's camera ------------------------------------------------------------------
    def exposure_ms(self) -> float | None:
        """The exposure to save and apply; None: the camera's own (for the simulator its
        config's default)."""
        value = self.exposure.value()
        if value <= 0:
            return None
        lo = self.camera_exposure_range[0] if self.camera_exposure_range else 0.0
        return max(value, lo)

    def sim_camera_table(self) -> dict[str, Any]:
        """The `[simulator.camera]` table."""
        table: dict[str, Any] = {
            "width": self.sim_size.currentData(),
            "height": self.sim_size.currentData(),
            "channels": 1 if self.sim_mono.isChecked() else 3,
            "bit_depth": self.sim_bits.currentData(),
        }
        exposure = self.exposure_ms()
        if exposure is not None:
            table["exposure_ms"] = exposure
        return table

    def camera_table(self, sensor_pixel_um: float, base: dict[str, Any] | None) -> dict[str, Any]:
        """The profile's `[camera]` table; what `base` (the profile edited, or the example a
        stage starts from) holds beyond this page's settings (a ROI, a gain) is kept."""
        kind = self.kind
        if kind.simulated:
            return {"type": kind.name}
        table = dict(base) if base is not None and base.get("type") == kind.name else {}
        table.update(
            type=kind.name, sensor_pixel_um=sensor_pixel_um, exposure_ms=self.exposure_ms()
        )
        if issubclass(kind.config, OpenCVCameraConfig):
            sized = self.width.value() and self.height.value()
            table.update(
                index=self.index.value(),
                backend=self.backend.currentText(),
                width=self.width.value() if sized else None,
                height=self.height.value() if sized else None,
            )
        if issubclass(kind.config, BaslerCameraConfig):
            table.update(
                serial=self.camera_list.serial, pixel_format=self.pixel_format.currentData()
            )
        return table

    def load_sim_camera(self, table: dict[str, Any], stain: str) -> None:
        """Fill the simulator's settings from a profile's `[simulator]` tables."""
        for combo, value in (
            (self.sim_size, table.get("width", 1024)),
            (self.sim_bits, table.get("bit_depth", 8)),
            (self.specimen, stain),
        ):
            k = combo.findData(value)
            if k >= 0:
                combo.setCurrentIndex(k)
        self.sim_mono.setChecked(table.get("channels", 3) == 1)
        self._set_exposure_value(table.get("exposure_ms"))

    def load_camera(self, camera: CameraConfig) -> None:
        """Fill the settings from a profile's `[camera]` (a physical camera)."""
        self.set_camera_type(camera.type)
        if isinstance(camera, OpenCVCameraConfig):
            self.index.setValue(camera.index)
            self.backend.setCurrentText(camera.backend)
            self.width.setValue(camera.width or 0)
            self.height.setValue(camera.height or 0)
        if isinstance(camera, BaslerCameraConfig):
            self.camera_list.choose(camera.serial)
            self._set_pixel_formats(get_args(BaslerPixelFormat), camera.pixel_format)
        if isinstance(camera, OpenCVCameraConfig | BaslerCameraConfig):
            self._set_exposure_value(camera.exposure_ms)

    # -- the preview ---------------------------------------------------------------------------
    def stop_preview(self) -> None:
        self.preview.stop()
        self.camera_list.set_previewed(None)
        with QtCore.QSignalBlocker(self.preview_button):
            self.preview_button.setChecked(False)

    def start_preview(self) -> None:
        """Open the camera as the page describes it and show it (again, if it was shown)."""
        try:
            opener = self._opener()
        except (ValueError, ValidationError) as exc:
            self.stop_preview()
            self.preview.status.setText(f"✗ {error_line(exc)}")
            return
        with QtCore.QSignalBlocker(self.preview_button):
            self.preview_button.setChecked(True)
        self.camera_list.set_previewed(None)
        self.preview.start(opener)

    def _preview_toggled(self, on: bool) -> None:
        if on:
            self.start_preview()
        else:
            self.stop_preview()

    def _settings_changed(self, *_: object) -> None:
        """A setting the camera is opened with changed: reopen it if it is shown."""
        if self.preview.active:
            self.start_preview()

    def _camera_chosen(self, serial: str) -> None:
        """A person picked a listed camera: its own pixel format until they choose, and see it."""
        self._set_pixel_formats(get_args(BaslerPixelFormat), None)
        self._set_exposure_range(None)
        self.start_preview()

    def _preview_opened(self, opened: OpenedCamera) -> None:
        camera = opened.camera
        self._set_exposure_range(opened.exposure_range_ms)
        if self.exposure.value() <= 0 and opened.exposure_ms > 0:
            self._set_exposure_value(opened.exposure_ms)  # what the camera holds, into the profile
        if isinstance(camera, BaslerCamera):
            self._set_pixel_formats(camera.pixel_formats, camera.pixel_format)
            self.camera_list.set_previewed(camera.serial)

    def _preview_failed(self, message: str) -> None:
        self.camera_list.set_previewed(None)
        with QtCore.QSignalBlocker(self.preview_button):
            self.preview_button.setChecked(False)

    def _describe(self, camera: Camera) -> str:
        text = describe_camera(camera)
        if isinstance(camera, BaslerCamera):
            return f"✓ {camera.label}: {text.removeprefix('✓ ')}, {camera.pixel_format}"
        return text

    # -- exposure ------------------------------------------------------------------------------
    def _exposure_changed(self, value: float) -> None:
        exposure = self.exposure_ms()
        if exposure is None:
            return  # the camera's own: nothing to apply
        if exposure != value:
            self._set_exposure_value(exposure)  # below the camera's shortest: its shortest
        self.preview.set_exposure(exposure)

    def _exposure_applied(self, took: float) -> None:
        if abs(took - self.exposure.value()) > 1e-9:
            self._set_exposure_value(took)  # the camera rounds to its own step

    def _set_exposure_value(self, value: float | None) -> None:
        with QtCore.QSignalBlocker(self.exposure):
            self.exposure.setValue(value or 0.0)

    def _set_exposure_range(self, limits: tuple[float, float] | None) -> None:
        """The camera's exposure range bounds the control (0 stays: the camera's own)."""
        self.camera_exposure_range = limits
        with QtCore.QSignalBlocker(self.exposure):
            self.exposure.setMaximum(limits[1] if limits else MAX_EXPOSURE_MS)
        self.exposure_range.setText(
            f"the camera takes {limits[0]:g}–{limits[1]:g} ms" if limits else ""
        )

    def _set_pixel_formats(self, names: tuple[str, ...], current: str | None) -> None:
        with QtCore.QSignalBlocker(self.pixel_format):
            self.pixel_format.clear()
            self.pixel_format.addItem("the camera's own", None)
            for name in names:
                self.pixel_format.addItem(name, name)
            self.pixel_format.setCurrentIndex(max(0, self.pixel_format.findData(current)))

    # -- leaving -------------------------------------------------------------------------------
    def close_all(self) -> None:
        """The wizard closes: close the camera, and drop the answers still to come."""
        self.stop_preview()
        self.camera_list.cancel()

    def cleanupPage(self) -> None:  # noqa: N802 - Qt naming
        self.stop_preview()

    def validatePage(self) -> bool:  # noqa: N802 - Qt naming
        self.stop_preview()
        return True
