"""The hardware wizard and the profile manager.

`HardwareWizard` (a QWizard) walks through: the stage (the simulator, or a GRBL / Prior / ASI
controller on a detected serial port, with a connection test and a small test move), the
camera (the simulator's, a USB camera through OpenCV, or a Basler camera picked from those
pylon finds; with a live preview and an exposure control: `wizard_camera.py`), the objectives
and pixel size, the soft limits, and saves the result as a named profile
(`hardware.profile.save_profile`, TOML in the platform's config folder). A serial stage starts
from the shipped example profile for its controller, so timing, backlash and limits begin at
sensible values. The kinds offered, their labels and defaults are the device registry's
(`hardware.registry`). Every hardware call (tests, preview) runs on the `DeviceWorker` thread.

`ProfileManager` lists the profiles (yours and the shipped examples) to use, edit or delete.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from PySide6 import QtCore, QtWidgets

from slidescan.app.gui.wizard_camera import CameraPage
from slidescan.app.gui.wizard_errors import error_line
from slidescan.app.gui.wizard_preview import Opener
from slidescan.app.gui.worker import DeviceWorker
from slidescan.hardware.optics import OBJECTIVES
from slidescan.hardware.registry import (
    CameraConfig,
    PhysicalCameraConfig,
    SerialStageConfig,
    StageConfig,
    camera_kind,
    serial_driver,
    stage_kind,
    stage_kinds,
)

log = logging.getLogger(__name__)

BAUDS = (9600, 19200, 38400, 57600, 115200)
TEST_MOVE_UM = 10.0


def detected_ports() -> list[tuple[str, str]]:
    """(device, description) of the serial ports the system reports."""
    try:
        from serial.tools import list_ports

        return [(p.device, p.description or "") for p in list_ports.comports()]
    except Exception:  # no permission to enumerate, odd platform
        return []


def stage_test(stage: Any, move: bool) -> str:
    """Read the position and, with `move`, go TEST_MOVE_UM along x (inside the limits) and back."""
    p0 = stage.position()
    lines = [f"connected: position x {p0.x:.1f}, y {p0.y:.1f}, z {p0.z:.2f} µm"]
    if move:
        lo, hi = stage.limits.range("x")
        target = p0.x + TEST_MOVE_UM if p0.x + TEST_MOVE_UM <= hi else p0.x - TEST_MOVE_UM
        if not lo <= target <= hi:
            return lines[0] + "\nno room for a test move inside the soft limits"
        stage.move_to(x=target)
        p1 = stage.position()
        stage.move_to(x=p0.x)
        p2 = stage.position()
        lines.append(
            f"test move x {p0.x:.1f} → {target:.1f} µm: reached {p1.x:.2f}; back: {p2.x:.2f} µm "
            f"({'ok' if abs(p1.x - target) < 2 and abs(p2.x - p0.x) < 2 else 'CHECK the axis'})"
        )
    return "\n".join(lines)


def _without_none(value: Any) -> Any:
    """TOML has no null: what is None means 'the default' and is left out (as save does)."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_without_none(v) for v in value]
    return value


class StagePage(QtWidgets.QWizardPage):
    def __init__(self, worker: DeviceWorker) -> None:
        super().__init__()
        self.worker = worker
        self.setTitle("Stage")
        self.setSubTitle("Which stage moves the slide? The simulator needs no hardware.")
        self.type = QtWidgets.QComboBox()
        for kind in stage_kinds():
            self.type.addItem(kind.label, kind.name)
        self.preset = QtWidgets.QComboBox()
        self.preset.addItem("Commercial: fast, fine Z, no backlash", "commercial")
        self.preset.addItem("Low-cost: steppers, backlash, slow settling", "lowcost")
        self.port = QtWidgets.QComboBox()
        self.port.setEditable(True)
        self.port.setToolTip(
            "A detected port, or type one (COM3, /dev/ttyUSB0, rfc2217://host:port)"
        )
        refresh = QtWidgets.QToolButton()
        refresh.setText("⟳")
        refresh.setToolTip("Look for serial ports again")
        refresh.clicked.connect(self.fill_ports)
        port_row = QtWidgets.QHBoxLayout()
        port_row.addWidget(self.port, 1)
        port_row.addWidget(refresh)
        self.baud = QtWidgets.QComboBox()
        self.baud.setEditable(True)
        for b in BAUDS:
            self.baud.addItem(str(b))
        self.test_button = QtWidgets.QPushButton("Test connection")
        self.move_button = QtWidgets.QPushButton(f"Test move ({TEST_MOVE_UM:g} µm in x and back)")
        self.test_button.clicked.connect(lambda: self.run_test(move=False))
        self.move_button.clicked.connect(lambda: self.run_test(move=True))
        self.result = QtWidgets.QLabel("")
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        form = QtWidgets.QFormLayout(self)
        form.addRow("Controller", self.type)
        self.preset_label = QtWidgets.QLabel("Stage model")
        form.addRow(self.preset_label, self.preset)
        self.port_label = QtWidgets.QLabel("Port")
        self.port_box = QtWidgets.QWidget()
        self.port_box.setLayout(port_row)
        port_row.setContentsMargins(0, 0, 0, 0)
        form.addRow(self.port_label, self.port_box)
        self.baud_label = QtWidgets.QLabel("Baud")
        form.addRow(self.baud_label, self.baud)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.test_button)
        buttons.addWidget(self.move_button)
        buttons.addStretch(1)
        form.addRow(buttons)
        form.addRow(self.result)
        self.type.currentIndexChanged.connect(self._type_changed)
        self.preset.currentIndexChanged.connect(self._type_changed)
        self.test_passed = False
        self._type_changed()

    @property
    def stage_type(self) -> str:
        return str(self.type.currentData())

    def fill_ports(self) -> None:
        current = self.port.currentText()
        self.port.clear()
        for device, desc in detected_ports():
            self.port.addItem(f"{device}", device)
            self.port.setItemData(self.port.count() - 1, desc, QtCore.Qt.ItemDataRole.ToolTipRole)
        serial = stage_kind(self.stage_type).serial
        if serial is not None:
            fake = serial.fake_port
            self.port.addItem(fake, fake)
            self.port.setItemData(
                self.port.count() - 1,
                "built-in fake controller, to try the program",
                QtCore.Qt.ItemDataRole.ToolTipRole,
            )
        if current and self.port.findText(current) >= 0:
            self.port.setCurrentText(current)

    def _type_changed(self, *_: object) -> None:
        kind = stage_kind(self.stage_type)
        for w in (self.preset_label, self.preset):
            w.setVisible(kind.simulated)
        for w in (self.port_label, self.port_box, self.baud_label, self.baud):
            w.setVisible(kind.serial is not None)
        if kind.serial is not None:
            self.fill_ports()
            self.baud.setCurrentText(str(kind.serial.default_baud))
        self.result.setText("")
        self.test_passed = False
        wiz = self.wizard()
        if isinstance(wiz, HardwareWizard):
            wiz.stage_type_changed(self.stage_type)

    def run_test(self, move: bool) -> None:
        wiz = self.wizard()
        assert isinstance(wiz, HardwareWizard)
        try:
            opener = wiz.stage_opener()
        except (ValueError, ValidationError) as exc:
            self.result.setText(f"✗ {error_line(exc)}")
            return
        self.result.setText("testing …")
        for b in (self.test_button, self.move_button):
            b.setEnabled(False)

        def job() -> str:
            stage, closer = opener()
            try:
                return stage_test(stage, move)
            finally:
                closer()

        self.worker.submit(
            job, on_result=self._test_done, on_error=self._test_failed, label="stage test"
        )

    def _test_done(self, text: str) -> None:
        self.test_passed = True
        self.result.setText("✓ " + text)
        for b in (self.test_button, self.move_button):
            b.setEnabled(True)

    def _test_failed(self, exc: BaseException) -> None:
        self.test_passed = False
        self.result.setText(f"✗ {error_line(exc)}")
        for b in (self.test_button, self.move_button):
            b.setEnabled(True)


class ObjectivesPage(QtWidgets.QWizardPage):
    COLS = ("use", "objective", "magnification", "NA", "calibrated pixel (µm)")

    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Objectives and pixel size")
        self.setSubTitle(
            "Tick the objectives on the microscope. The pixel size at the slide is the camera's "
            "pixel pitch / magnification, unless you enter a calibrated value (stage micrometer)."
        )
        self.table = QtWidgets.QTableWidget(0, len(self.COLS))
        self.table.setHorizontalHeaderLabels(self.COLS)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        add = QtWidgets.QPushButton("Add objective")
        add.clicked.connect(lambda: self.add_row("60x/0.80", 60, 0.8, None, True))
        self.sensor_pixel = QtWidgets.QDoubleSpinBox()
        self.sensor_pixel.setRange(0.5, 50)
        self.sensor_pixel.setDecimals(3)
        self.sensor_pixel.setValue(6.5)
        self.sensor_pixel.setSuffix(" µm")
        self.default = QtWidgets.QComboBox()
        self.summary = QtWidgets.QLabel("")
        self.summary.setWordWrap(True)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(add, 0, QtCore.Qt.AlignmentFlag.AlignLeft)
        form = QtWidgets.QFormLayout()
        form.addRow("Camera pixel pitch", self.sensor_pixel)
        form.addRow("Default objective", self.default)
        layout.addLayout(form)
        layout.addWidget(self.summary)
        self.table.itemChanged.connect(self._update)
        self.sensor_pixel.valueChanged.connect(self._update)
        self.default.currentTextChanged.connect(self._update)
        self.sensor_width = 1024
        self.set_objectives(
            [
                (o.name, o.magnification, o.na, None, o.name == "20x/0.75")
                for o in OBJECTIVES.values()
            ]
        )

    def add_row(self, name: str, mag: float, na: float, pixel: float | None, used: bool) -> None:
        with QtCore.QSignalBlocker(self.table):
            r = self.table.rowCount()
            self.table.insertRow(r)
            use = QtWidgets.QTableWidgetItem()
            use.setFlags(QtCore.Qt.ItemFlag.ItemIsUserCheckable | QtCore.Qt.ItemFlag.ItemIsEnabled)
            use.setCheckState(
                QtCore.Qt.CheckState.Checked if used else QtCore.Qt.CheckState.Unchecked
            )
            self.table.setItem(r, 0, use)
            for c, v in enumerate(
                (name, f"{mag:g}", f"{na:g}", "" if pixel is None else f"{pixel:g}"), 1
            ):
                self.table.setItem(r, c, QtWidgets.QTableWidgetItem(v))
        self._update()

    def set_objectives(self, rows: list[tuple[str, float, float, float | None, bool]]) -> None:
        with QtCore.QSignalBlocker(self.table):
            self.table.setRowCount(0)
        for row in rows:
            self.add_row(*row)

    def set_simulated(self, sim: bool) -> None:
        """The simulator knows only the shipped objectives and has no calibration."""
        self.table.setColumnHidden(4, sim)
        if sim:
            keep = {
                self.table.item(r, 1).text(): self._used(r) for r in range(self.table.rowCount())
            }
            self.set_objectives(
                [
                    (o.name, o.magnification, o.na, None, keep.get(o.name, o.name == "20x/0.75"))
                    for o in OBJECTIVES.values()
                ]
            )

    def _used(self, r: int) -> bool:
        return self.table.item(r, 0).checkState() == QtCore.Qt.CheckState.Checked

    def objectives(self) -> list[dict[str, Any]]:
        out = []
        for r in range(self.table.rowCount()):
            if not self._used(r):
                continue
            name = self.table.item(r, 1).text().strip()
            entry: dict[str, Any] = {"name": name}
            try:
                entry["magnification"] = float(self.table.item(r, 2).text())
                entry["na"] = float(self.table.item(r, 3).text())
                pixel = self.table.item(r, 4).text().strip()
                if pixel and not self.table.isColumnHidden(4):
                    entry["pixel_size_um"] = float(pixel)
            except ValueError:
                raise ValueError(
                    f"objective {name!r}: magnification, NA and pixel size are numbers"
                ) from None
            out.append(entry)
        return out

    def _update(self, *_: object) -> None:
        try:
            objs = self.objectives()
        except ValueError as exc:
            self.summary.setText(str(exc))
            return
        names = [o["name"] for o in objs]
        current = self.default.currentText()
        with QtCore.QSignalBlocker(self.default):
            self.default.clear()
            self.default.addItems(names)
            if current in names:
                self.default.setCurrentText(current)
        lines = []
        for o in objs:
            pixel = o.get("pixel_size_um") or self.sensor_pixel.value() / o["magnification"]
            fov = pixel * self.sensor_width
            lines.append(f"{o['name']}: {pixel:.3f} µm/px, field {fov:.0f} µm wide")
        self.summary.setText("\n".join(lines) or "tick at least one objective")
        self.completeChanged.emit()

    def isComplete(self) -> bool:  # noqa: N802 - Qt naming
        try:
            return bool(self.objectives())
        except ValueError:
            return False


class LimitsPage(QtWidgets.QWizardPage):
    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Soft limits")
        self.setSubTitle(
            "No move outside these ranges is ever sent to the stage. Keep Z inside what the "
            "objective can travel without touching the slide."
        )
        self.boxes: dict[str, tuple[QtWidgets.QDoubleSpinBox, QtWidgets.QDoubleSpinBox]] = {}
        grid = QtWidgets.QGridLayout(self)
        grid.addWidget(QtWidgets.QLabel("<b>min</b>"), 0, 1)
        grid.addWidget(QtWidgets.QLabel("<b>max</b>"), 0, 2)
        for i, axis in enumerate("xyz", 1):
            lo, hi = QtWidgets.QDoubleSpinBox(), QtWidgets.QDoubleSpinBox()
            for b in (lo, hi):
                b.setRange(-1e6, 1e6)
                b.setDecimals(1)
                b.setSuffix(" µm")
            grid.addWidget(QtWidgets.QLabel(f"{axis.upper()}"), i, 0)
            grid.addWidget(lo, i, 1)
            grid.addWidget(hi, i, 2)
            self.boxes[axis] = (lo, hi)
            lo.valueChanged.connect(self.completeChanged)
            hi.valueChanged.connect(self.completeChanged)
        self.note = QtWidgets.QLabel("")
        self.note.setWordWrap(True)
        grid.addWidget(self.note, 4, 0, 1, 3)
        grid.setRowStretch(5, 1)

    def set_limits(self, limits: dict[str, tuple[float, float]]) -> None:
        for axis, (lo, hi) in limits.items():
            self.boxes[axis][0].setValue(lo)
            self.boxes[axis][1].setValue(hi)

    def limits(self) -> dict[str, tuple[float, float]]:
        return {a: (b[0].value(), b[1].value()) for a, b in self.boxes.items()}

    def isComplete(self) -> bool:  # noqa: N802 - Qt naming
        return all(lo < hi for lo, hi in self.limits().values())


class SavePage(QtWidgets.QWizardPage):
    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Save the profile")
        self.setSubTitle(
            "Profiles are kept in your settings folder; switch between them in the Hardware menu."
        )
        self.name = QtWidgets.QLineEdit("my-microscope")
        self.name.setToolTip("letters, digits, '.', '_' and '-'")
        self.description = QtWidgets.QLineEdit("")
        self.preview = QtWidgets.QPlainTextEdit()
        self.preview.setReadOnly(True)
        self.error = QtWidgets.QLabel("")
        self.error.setStyleSheet("color: #d03020")
        self.error.setWordWrap(True)
        form = QtWidgets.QFormLayout(self)
        form.addRow("Name", self.name)
        form.addRow("Description", self.description)
        form.addRow(self.preview)
        form.addRow(self.error)
        self.name.textChanged.connect(self.completeChanged)
        self.saved_path = ""

    def initializePage(self) -> None:  # noqa: N802 - Qt naming
        self.refresh()

    def refresh(self) -> None:
        wiz = self.wizard()
        assert isinstance(wiz, HardwareWizard)
        try:
            import tomli_w

            prof = wiz.build_profile()
            self.preview.setPlainText(tomli_w.dumps(_without_none(prof.model_dump(mode="json"))))
            self.error.setText("")
        except Exception as exc:
            self.preview.setPlainText("")
            self.error.setText(error_line(exc))

    def isComplete(self) -> bool:  # noqa: N802 - Qt naming
        return bool(self.name.text().strip())

    def validatePage(self) -> bool:  # noqa: N802 - Qt naming
        wiz = self.wizard()
        assert isinstance(wiz, HardwareWizard)
        try:
            path = wiz.save()
        except Exception as exc:
            self.error.setText(error_line(exc))
            return False
        self.saved_path = str(path)
        return True


class HardwareWizard(QtWidgets.QWizard):
    """Create (or, with `edit=NAME`, change) a hardware profile; emits `profileSaved(name)`."""

    profileSaved = QtCore.Signal(str)

    def __init__(
        self,
        parent: QtWidgets.QWidget | None = None,
        worker: DeviceWorker | None = None,
        edit: str | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Hardware wizard" if edit is None else f"Edit profile {edit}")
        self.setWizardStyle(QtWidgets.QWizard.WizardStyle.ClassicStyle)
        self.setMinimumSize(760, 660)  # room for the camera step's preview
        self._own_worker = worker is None
        self.worker = worker or DeviceWorker()
        self.stage_page = StagePage(self.worker)
        self.camera_page = CameraPage(self.worker, self.camera_opener)
        self.objectives_page = ObjectivesPage()
        self.limits_page = LimitsPage()
        self.save_page = SavePage()
        for page in (
            self.stage_page,
            self.camera_page,
            self.objectives_page,
            self.limits_page,
            self.save_page,
        ):
            self.addPage(page)
        self._base: Any = None  # the profile a serial stage starts from (timing, axes)
        self.saved_name = ""
        self.stage_type_changed(self.stage_page.stage_type)
        if edit is not None:
            self.load(edit)

    # -- page coordination ---------------------------------------------------------------------
    def stage_type_changed(self, stage_type: str) -> None:
        kind = stage_kind(stage_type)
        self.camera_page.set_stage_type(stage_type)
        self.objectives_page.set_simulated(kind.simulated)
        self._base = None
        if kind.simulated:
            from slidescan.hardware.sim import STAGE_PRESETS

            preset = STAGE_PRESETS[self.stage_page.preset.currentData() or "commercial"]
            self.limits_page.set_limits(
                {"x": preset.x_limits_um, "y": preset.y_limits_um, "z": preset.z_limits_um}
            )
            self.limits_page.note.setText("The simulated stage refuses moves outside these limits.")
            self.save_page.name.setText("my-simulator")
            return
        from slidescan.hardware.profile import load_profile

        try:
            self._base = load_profile(serial_driver(stage_type).example_profile)
        except Exception as exc:
            log.warning("example profile for %s unavailable: %s", stage_type, exc)
            return
        st = self._base.stage
        if isinstance(st, SerialStageConfig):
            self.limits_page.set_limits(
                {"x": st.limits.x_um, "y": st.limits.y_um, "z": st.limits.z_um}
            )
        self.limits_page.note.setText(
            f"Started from the shipped example '{self._base.name}'. Measure your stage's travel "
            "and set these before the first scan."
        )
        cam = self._base.camera
        pitch = cam.sensor_pixel_um if isinstance(cam, PhysicalCameraConfig) else None
        self.objectives_page.sensor_pixel.setValue(pitch or 6.5)
        self.objectives_page.set_objectives(
            [
                (o.name, o.magnification or 0, o.na or 0, o.pixel_size_um, True)
                for o in self._base.objectives
            ]
        )
        self.save_page.name.setText("my-microscope")

    # -- building the profile ------------------------------------------------------------------
    def simulator_table(self) -> dict[str, Any]:
        cp, lp = self.camera_page, self.limits_page.limits()
        return {
            "seed": 0,
            "stage": {
                "preset": self.stage_page.preset.currentData(),
                "x_limits_um": list(lp["x"]),
                "y_limits_um": list(lp["y"]),
                "z_limits_um": list(lp["z"]),
            },
            "camera": cp.sim_camera_table(),
            "specimen": {"stain": cp.specimen.currentData()},
            "optics": {"sensor_pixel_um": self.objectives_page.sensor_pixel.value()},
        }

    def stage_config(self) -> dict[str, Any]:
        t = self.stage_page.stage_type
        if stage_kind(t).simulated:
            return {"type": t}
        lim = self.limits_page.limits()
        cfg: dict[str, Any] = {}
        if self._base is not None and self._base.stage.type == t:
            cfg = self._base.stage.model_dump(mode="json")
        port = self.stage_page.port.currentText().strip()
        try:
            baud = int(self.stage_page.baud.currentText())
        except ValueError:
            raise ValueError(
                f"baud rate {self.stage_page.baud.currentText()!r} is not a number"
            ) from None
        cfg.update(
            type=t,
            port=port or None,
            baud=baud,
            limits={"x_um": list(lim["x"]), "y_um": list(lim["y"]), "z_um": list(lim["z"])},
        )
        return cfg

    def camera_config(self) -> dict[str, Any]:
        base = None
        if self._base is not None:
            base = self._base.camera.model_dump(mode="json")
        return self.camera_page.camera_table(self.objectives_page.sensor_pixel.value(), base)

    def build_profile(self) -> Any:
        from slidescan.hardware.profile import HardwareProfile

        sim = stage_kind(self.stage_page.stage_type).simulated
        data: dict[str, Any] = {
            "name": self.save_page.name.text().strip() or "my-microscope",
            "description": self.save_page.description.text().strip(),
            "stage": self.stage_config(),
            "camera": self.camera_config(),
            "objectives": self.objectives_page.objectives(),
            "default_objective": self.objectives_page.default.currentText() or None,
        }
        if sim:
            data["simulator"] = self.simulator_table()
        return HardwareProfile.model_validate(data)

    def stage_opener(self) -> Any:
        """A callable (for the worker) that connects the stage: returns (stage, closer)."""
        if stage_kind(self.stage_page.stage_type).simulated:
            table = self.simulator_table()

            def open_sim() -> tuple[Any, Any]:
                from slidescan.hardware.sim import SimConfig, build_simulator

                m = build_simulator(SimConfig.model_validate(table))
                return m.stage, m.close

            return open_sim
        from slidescan.hardware.profile import open_stage

        cfg = StageConfig.model_validate(self.stage_config())  # as the kind's own model

        def open_serial() -> tuple[Any, Any]:
            stage = open_stage(cfg)
            return stage, stage.close

        return open_serial

    def camera_opener(self) -> Opener:
        """A callable (for the worker) that opens the camera: returns (camera, closer)."""
        if stage_kind(self.stage_page.stage_type).simulated:
            table = self.simulator_table()
            objective = self.objectives_page.default.currentText() or "20x/0.75"

            def open_sim() -> tuple[Any, Any]:
                from slidescan.hardware.sim import SimConfig, build_simulator

                config = SimConfig.model_validate({**table, "objective": objective})
                m = build_simulator(config)
                x0, y0, x1, y1 = m.slide_bounds_um
                m.stage.move_to(
                    x=(x0 + x1) / 2,
                    y=(y0 + y1) / 2,
                    z=m.true_focus_um((x0 + x1) / 2, (y0 + y1) / 2),
                )
                return m.camera, m.close

            return open_sim
        config = CameraConfig.model_validate(self.camera_config())  # as the kind's own model
        opener = camera_kind(config.type).open
        assert opener is not None, f"camera kind {config.type} opens with its microscope"
        pixel_size_um = self.preview_pixel_size_um()

        def open_camera() -> tuple[Any, Any]:
            camera = opener(config, pixel_size_um=pixel_size_um)
            return camera, camera.close

        return open_camera

    def preview_pixel_size_um(self) -> float:
        """The pixel size at the slide through the default objective, as far as the objectives
        step (after this one) knows it yet; 1 where it does not. Nothing in the preview uses it."""
        try:
            objectives = {o["name"]: o for o in self.objectives_page.objectives()}
        except ValueError:
            return 1.0
        chosen = objectives.get(self.objectives_page.default.currentText())
        if chosen is None or not chosen["magnification"] > 0:
            return 1.0
        pitch = self.objectives_page.sensor_pixel.value()
        return chosen.get("pixel_size_um") or pitch / chosen["magnification"]

    # -- load / save ---------------------------------------------------------------------------
    def load(self, name: str) -> None:
        """Fill the pages from an existing profile."""
        from slidescan.hardware.profile import load_profile

        prof = load_profile(name)
        i = self.stage_page.type.findData(prof.stage.type)
        self.stage_page.type.setCurrentIndex(i)
        self.stage_type_changed(prof.stage.type)
        if prof.is_simulated:
            sim = prof.simulator or {}
            stage = sim.get("stage", "commercial")
            preset = stage if isinstance(stage, str) else stage.get("preset", "commercial")
            j = self.stage_page.preset.findData(preset)
            if j >= 0:
                self.stage_page.preset.setCurrentIndex(j)
            if isinstance(stage, dict):
                lim = {a: stage.get(f"{a}_limits_um") for a in "xyz"}
                self.limits_page.set_limits({a: tuple(v) for a, v in lim.items() if v})
            self.camera_page.load_sim_camera(
                sim.get("camera", {}), sim.get("specimen", {}).get("stain", "he")
            )
        else:
            self._base = prof
            st = prof.stage
            if isinstance(st, SerialStageConfig):
                self.stage_page.port.setCurrentText(st.port)
                baud = st.baud or serial_driver(st.type).default_baud
                self.stage_page.baud.setCurrentText(str(baud))
                self.limits_page.set_limits(
                    {"x": st.limits.x_um, "y": st.limits.y_um, "z": st.limits.z_um}
                )
            self.camera_page.load_camera(prof.camera)
        names = {o.name for o in prof.objectives}
        rows = [
            (o.name, o.magnification or 0, o.na or 0, o.pixel_size_um, True)
            for o in prof.objectives
        ]
        if prof.is_simulated:
            rows = [
                (o.name, o.magnification, o.na, None, o.name in names) for o in OBJECTIVES.values()
            ]
        self.objectives_page.set_objectives(rows)
        self.objectives_page.sensor_pixel.setValue(prof.sensor_pixel_um())
        self.objectives_page.default.setCurrentText(prof.default_objective or "")
        self.save_page.name.setText(name if "/" not in name else prof.name)
        self.save_page.description.setText(prof.description)

    def save(self) -> Any:
        from slidescan.hardware.profile import save_profile

        prof = self.build_profile()
        name = self.save_page.name.text().strip()
        path = save_profile(prof, name)
        self.saved_name = name.removesuffix(".toml")
        log.info("saved hardware profile %s to %s", self.saved_name, path)
        self.profileSaved.emit(self.saved_name)
        return path

    def done(self, result: int) -> None:
        self.camera_page.close_all()  # the camera is closed on the worker
        if self._own_worker:
            self.worker.wait_idle(10)
        super().done(result)


class ProfileManager(QtWidgets.QDialog):
    """Profiles: yours (editable, deletable) and the shipped examples (editable as a copy)."""

    useProfile = QtCore.Signal(str)
    editProfile = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None, current: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Hardware profiles")
        self.resize(560, 380)
        self.current = current
        self.list = QtWidgets.QListWidget()
        self.list.itemDoubleClicked.connect(lambda *_: self._use())
        self.details = QtWidgets.QLabel("")
        self.details.setWordWrap(True)
        self.list.currentItemChanged.connect(self._show)
        buttons = QtWidgets.QVBoxLayout()
        self.use_button = QtWidgets.QPushButton("Use")
        self.edit_button = QtWidgets.QPushButton("Edit…")
        self.delete_button = QtWidgets.QPushButton("Delete")
        close = QtWidgets.QPushButton("Close")
        self.use_button.clicked.connect(self._use)
        self.edit_button.clicked.connect(self._edit)
        self.delete_button.clicked.connect(self._delete)
        close.clicked.connect(self.accept)
        for b in (self.use_button, self.edit_button, self.delete_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(close)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.list, 1)
        top.addLayout(buttons)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(top, 1)
        layout.addWidget(self.details)
        self.refresh()

    def refresh(self) -> None:
        from slidescan.hardware.profile import list_profiles, user_profile_dir

        mine = (
            {p.stem for p in user_profile_dir().glob("*.toml")}
            if user_profile_dir().is_dir()
            else set()
        )
        self.list.clear()
        for name in list_profiles():
            item = QtWidgets.QListWidgetItem(
                f"{name}{'  (in use)' if name == self.current else ''}{'' if name in mine else '  — shipped example'}"
            )
            item.setData(QtCore.Qt.ItemDataRole.UserRole, name)
            item.setData(QtCore.Qt.ItemDataRole.UserRole + 1, name in mine)
            self.list.addItem(item)
        if self.list.count():
            self.list.setCurrentRow(0)

    def selected(self) -> tuple[str, bool] | None:
        item = self.list.currentItem()
        if item is None:
            return None
        return item.data(QtCore.Qt.ItemDataRole.UserRole), bool(
            item.data(QtCore.Qt.ItemDataRole.UserRole + 1)
        )

    def _show(self, *_: object) -> None:
        sel = self.selected()
        if sel is None:
            return
        name, mine = sel
        self.delete_button.setEnabled(mine and name != self.current)
        from slidescan.hardware.profile import load_profile

        try:
            p = load_profile(name)
            objs = ", ".join(o.name for o in p.objectives)
            port = f" on {p.stage.port}" if isinstance(p.stage, SerialStageConfig) else ""
            self.details.setText(
                f"<b>{p.name}</b>: {p.description}<br>stage {p.stage.type}"
                f"{port}, camera {p.camera.type}, objectives {objs}"
            )
        except Exception as exc:
            self.details.setText(f"✗ {error_line(exc)}")

    def _use(self) -> None:
        sel = self.selected()
        if sel:
            self.useProfile.emit(sel[0])
            self.accept()

    def _edit(self) -> None:
        sel = self.selected()
        if sel:
            self.editProfile.emit(sel[0])
            self.accept()

    def delete(self, name: str) -> None:
        from slidescan.hardware.profile import user_profile_dir

        path = user_profile_dir() / f"{name}.toml"
        path.unlink()
        log.info("deleted hardware profile %s", path)
        self.refresh()

    def _delete(self) -> None:
        sel = self.selected()
        if not sel or not sel[1]:
            return
        answer = QtWidgets.QMessageBox.question(
            self, "Delete profile", f"Delete the profile '{sel[0]}'?"
        )
        if answer == QtWidgets.QMessageBox.StandardButton.Yes:
            self.delete(sel[0])
