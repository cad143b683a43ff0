"""The scan panel: what to scan and how, the run controls, progress and warnings.

What to scan: a grid around the stage, a rectangle drawn on the map, or the tissue found on
the slide's overview (the tissue row, tissue_controls.py; its regions are set by the owner,
`set_tissue_region`, and become the plan's `PolygonsRegion`).

The form is a view over `app.plan.ScanPlan`: `build_plan()` turns it into a validated plan
(pydantic's errors become one readable line) and `settings()` / `apply_settings()` round-trip
it through QSettings between runs. A focus method's settings are generated from the method's
parameter model (`params_form.MethodParamsForm`), so a new method, learned ones included, gets a
form without GUI code; settings the method refuses keep Start disabled and say why. A method
that needs a calibration per objective (`CALIBRATED_METHODS`) gets Calibrate / Show buttons
under its name.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import ValidationError
from PySide6 import QtCore, QtWidgets

from slidescan.app.events import BacklogProgress, Progress, RunnerState
from slidescan.app.gui.params_form import MethodParamsForm
from slidescan.app.gui.run_controls import RunControls, format_duration
from slidescan.app.gui.tissue_controls import TissueControls
from slidescan.app.plan import FocusSettings, PolygonsRegion, RectRegion, ScanPlan, TissueSettings

DEFAULT_NAME = "scan-{time}.h5"
#: Methods that need a calibration per objective: the focus box offers Calibrate / Show.
CALIBRATED_METHODS = frozenset({"deepfocus"})


def default_output() -> str:
    return str(Path(platformdirs.user_documents_dir()) / "slidescan" / DEFAULT_NAME)


def expand_output(template: str, now: _dt.datetime | None = None) -> str:
    """Fill `{time}` / `{date}` in an output path template."""
    now = now or _dt.datetime.now()
    return template.replace("{time}", now.strftime("%Y%m%d-%H%M%S")).replace(
        "{date}", now.strftime("%Y%m%d")
    )


class ScanPanel(QtWidgets.QWidget):
    startRequested = QtCore.Signal()
    pauseRequested = QtCore.Signal()
    resumeRequested = QtCore.Signal()
    stopRequested = QtCore.Signal()
    drawRegionToggled = QtCore.Signal(bool)
    #: The chosen method's calibration: take a new one / show the saved one.
    calibrateRequested = QtCore.Signal()
    showCalibrationRequested = QtCore.Signal()
    #: The region, grid or overlap changed: the owner may preview the tiles.
    planChanged = QtCore.Signal()

    def __init__(
        self, objectives: list[str], methods: list[str], parent: QtWidgets.QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._summaries: dict[str, str] = {}
        self._tissue_region: PolygonsRegion | None = None
        self.form = QtWidgets.QWidget()
        fl = QtWidgets.QVBoxLayout(self.form)
        fl.setContentsMargins(0, 0, 0, 0)
        fl.addWidget(self._build_what(objectives))
        fl.addWidget(self._build_focus(methods))
        fl.addWidget(self._build_output())
        fl.addStretch(1)
        self.run = self._build_run()
        self.scroll = QtWidgets.QScrollArea()
        self.scroll.setWidget(self.form)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.scroll, 1)
        layout.addWidget(self.run)
        self._method_changed(self.method.currentText())
        self._strategy_changed()
        self.set_state(None)
        for box in (self.rows, self.cols, self.overlap, *self.region_edits):
            box.valueChanged.connect(self.planChanged)
        self.mode_grid.toggled.connect(self.planChanged)
        self.mode_tissue.toggled.connect(self.planChanged)

    # -- construction --------------------------------------------------------------------------
    def _build_what(self, objectives: list[str]) -> QtWidgets.QGroupBox:
        self.objective = QtWidgets.QComboBox()
        self.set_objectives(objectives)
        self.mode_grid = QtWidgets.QRadioButton("Grid around the stage")
        self.mode_region = QtWidgets.QRadioButton("Region on the map")
        self.mode_tissue = QtWidgets.QRadioButton("Tissue on the slide's overview")
        self.mode_tissue.setToolTip(
            "Find the tissue on an overview of the slide and scan the regions found "
            "(edit them on the map)"
        )
        self.tissue_controls = TissueControls()
        self.mode_grid.setChecked(True)
        self.overlap = QtWidgets.QSpinBox()
        self.overlap.setRange(0, 50)
        self.overlap.setValue(10)
        self.overlap.setSuffix(" %")
        self.order = QtWidgets.QComboBox()
        self.order.addItems(["serpentine", "raster"])
        what = QtWidgets.QGroupBox("What")
        f = QtWidgets.QFormLayout(what)
        f.addRow("Objective", self.objective)
        f.addRow(self.mode_grid)
        f.addRow("", self._build_grid_row())
        f.addRow(self.mode_region)
        f.addRow("", self._build_region_row())
        f.addRow(self.mode_tissue)
        f.addRow("", self.tissue_controls)
        f.addRow("Overlap", self.overlap)
        f.addRow("Order", self.order)
        return what

    def _build_grid_row(self) -> QtWidgets.QHBoxLayout:
        self.rows = QtWidgets.QSpinBox()
        self.cols = QtWidgets.QSpinBox()
        for box in (self.rows, self.cols):
            box.setRange(1, 500)
            box.setValue(3)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.rows)
        row.addWidget(QtWidgets.QLabel("rows ×"))
        row.addWidget(self.cols)
        row.addWidget(QtWidgets.QLabel("cols"))
        return row

    def _build_region_row(self) -> QtWidgets.QGridLayout:
        self.region_edits = [QtWidgets.QDoubleSpinBox() for _ in range(4)]
        grid = QtWidgets.QGridLayout()
        for i, (name, box) in enumerate(
            zip(("x0", "y0", "x1", "y1"), self.region_edits, strict=True)
        ):
            box.setRange(-1e6, 1e6)
            box.setDecimals(0)
            box.setSuffix(" µm")
            box.setButtonSymbols(QtWidgets.QAbstractSpinBox.ButtonSymbols.NoButtons)
            box.setToolTip(f"region {name} (µm)")
            grid.addWidget(QtWidgets.QLabel(name), i // 2, 2 * (i % 2))
            grid.addWidget(box, i // 2, 2 * (i % 2) + 1)
        self.draw_button = QtWidgets.QPushButton("Draw")
        self.draw_button.setCheckable(True)
        self.draw_button.setToolTip("Draw the scan region on the tile map (or Shift+drag there)")
        self.draw_button.toggled.connect(self.drawRegionToggled)
        grid.addWidget(self.draw_button, 0, 4, 2, 1)
        return grid

    def _build_focus(self, methods: list[str]) -> QtWidgets.QGroupBox:
        self.method = QtWidgets.QComboBox()
        self.method.addItems(methods)
        self.method.currentTextChanged.connect(self._method_changed)
        self.strategy = QtWidgets.QComboBox()
        self.strategy.addItem("every tile", "per-tile")
        self.strategy.addItem("focus map (survey, then fit)", "focusmap")
        self.strategy.currentIndexChanged.connect(self._strategy_changed)
        self.survey_points = QtWidgets.QSpinBox()
        self.survey_points.setRange(3, 400)
        self.survey_points.setValue(9)
        self.surface = QtWidgets.QComboBox()
        self.surface.addItems(["quadratic", "plane", "tps"])
        self.method_help = QtWidgets.QLabel("")
        self.method_help.setWordWrap(True)
        self.method_help.setStyleSheet("color: gray; font-size: 8pt")
        self.calibration_row = self._build_calibration_row()
        self.params = MethodParamsForm()
        self.params.edited.connect(self._params_edited)
        self.params_box = QtWidgets.QGroupBox("Method settings")
        self.params_box.setCheckable(True)
        self.params_box.setChecked(False)
        self.params_box.setToolTip("Show the focus method's own settings")
        QtWidgets.QVBoxLayout(self.params_box).addWidget(self.params)
        self.params.setVisible(False)
        self.params_box.toggled.connect(self.params.setVisible)
        focus = QtWidgets.QGroupBox("Focus")
        f = QtWidgets.QFormLayout(focus)
        f.addRow("Method", self.method)
        f.addRow(self.method_help)
        f.addRow(self.calibration_row)
        f.addRow("Strategy", self.strategy)
        f.addRow("Survey points", self.survey_points)
        f.addRow("Surface", self.surface)
        f.addRow(self.params_box)
        return focus

    def _build_calibration_row(self) -> QtWidgets.QWidget:
        """Calibrate / Show, for a method that needs a calibration per objective."""
        self.calibrate_button = QtWidgets.QPushButton("Calibrate…")
        self.calibrate_button.setToolTip(
            "Take DeepFocus's calibration stack for the objective in use (a flat textured "
            "object, roughly in focus) and show its curve"
        )
        self.calibrate_button.clicked.connect(self.calibrateRequested)
        self.show_calibration_button = QtWidgets.QPushButton("Show calibration")
        self.show_calibration_button.setToolTip(
            "The saved calibration of the objective in use, as a plot"
        )
        self.show_calibration_button.clicked.connect(self.showCalibrationRequested)
        row = QtWidgets.QWidget()
        layout = QtWidgets.QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.calibrate_button)
        layout.addWidget(self.show_calibration_button)
        layout.addStretch(1)
        row.setVisible(False)
        return row

    def _build_output(self) -> QtWidgets.QGroupBox:
        self.tissue = QtWidgets.QCheckBox("Skip empty glass (tissue detection)")
        self.tissue.setChecked(True)
        self.output = QtWidgets.QLineEdit(default_output())
        self.output.setToolTip("HDF5 scan file; {time} and {date} are filled in at start")
        browse = QtWidgets.QToolButton()
        browse.setText("…")
        browse.clicked.connect(self._browse)
        out_row = QtWidgets.QHBoxLayout()
        out_row.addWidget(self.output, 1)
        out_row.addWidget(browse)
        self.compression = QtWidgets.QComboBox()
        self.compression.addItems(["none", "lzf", "gzip"])
        options = QtWidgets.QGroupBox("Output")
        f = QtWidgets.QFormLayout(options)
        f.addRow(self.tissue)
        f.addRow("File", out_row)
        f.addRow("Compression", self.compression)
        return options

    def _build_run(self) -> RunControls:
        run = RunControls()
        run.startRequested.connect(self.startRequested)
        run.pauseRequested.connect(self.pauseRequested)
        run.resumeRequested.connect(self.resumeRequested)
        run.stopRequested.connect(self.stopRequested)
        self.start_button = run.start_button
        self.pause_button = run.pause_button
        self.resume_button = run.resume_button
        self.stop_button = run.stop_button
        self.progress = run.progress
        self.warnings = run.warnings
        return run

    # -- form helpers --------------------------------------------------------------------------
    def set_objectives(self, objectives: list[str]) -> None:
        current = self.objective.currentText()
        with QtCore.QSignalBlocker(self.objective):
            self.objective.clear()
            self.objective.addItems(objectives)
            if current in objectives:
                self.objective.setCurrentText(current)

    def set_region(self, x0: float, y0: float, x1: float, y1: float) -> None:
        for box, v in zip(self.region_edits, (x0, y0, x1, y1), strict=True):
            with QtCore.QSignalBlocker(box):
                box.setValue(v)
        self.mode_region.setChecked(True)

    def region(self) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = (b.value() for b in self.region_edits)
        return x0, y0, x1, y1

    def set_tissue_region(self, region: PolygonsRegion | None) -> None:
        """The tissue regions a tissue-mode plan covers (None: none yet)."""
        self._tissue_region = region
        if self.mode_tissue.isChecked():
            self.planChanged.emit()

    @property
    def tissue_region(self) -> PolygonsRegion | None:
        return self._tissue_region

    def _summary(self, name: str) -> str:
        """The method's one-line summary (`focus.registry.describe`'s first line)."""
        if name not in self._summaries:
            from slidescan.focus.registry import describe

            try:
                first = describe(name).split("\n", 1)[0]
            except Exception as exc:  # a broken plug-in: say so in the form
                first = f"{name}: unavailable ({exc})"
            self._summaries[name] = first.split(": ", 1)[-1]
        return self._summaries[name]

    def _method_changed(self, name: str) -> None:
        if not name:
            return
        self.method_help.setText(self._summary(name))
        self.calibration_row.setVisible(name in CALIBRATED_METHODS)
        self.params.set_method(name)
        self._params_edited()

    def _params_edited(self) -> None:
        problem = self.params.problem
        self.run.set_blocked(f"method settings: {problem}" if problem else "")
        if problem and not self.params_box.isChecked():
            self.params_box.setChecked(True)  # show the field that is marked

    def show_method_settings(self) -> None:
        """Open the focus method's settings and scroll the form to them."""
        self.params_box.setChecked(True)
        self.form.adjustSize()
        top = self.params_box.mapTo(self.form, QtCore.QPoint(0, 0)).y()
        self.scroll.verticalScrollBar().setValue(top)

    def _strategy_changed(self, *_: object) -> None:
        focusmap = self.strategy.currentData() == "focusmap"
        self.survey_points.setEnabled(focusmap)
        self.surface.setEnabled(focusmap)

    def _browse(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Scan file", self.output.text(), "HDF5 scan files (*.h5)"
        )
        if path:
            self.output.setText(path if path.endswith(".h5") else path + ".h5")

    # -- plan ----------------------------------------------------------------------------------
    def focus_settings(self, with_params: bool = True) -> FocusSettings:
        """The focus part of the plan; ValueError (one line) for method settings the method
        refuses. `with_params=False`: the method at its defaults (a preview of the tiles)."""
        try:
            params = self.params.values() if with_params else {}
        except ValueError as exc:
            raise ValueError(f"method settings: {exc}") from None
        return FocusSettings(
            method=self.method.currentText(),
            params=params,
            strategy=self.strategy.currentData(),
            survey_points=self.survey_points.value(),
            surface=self.surface.currentText(),
        )

    def build_plan(
        self,
        centre_um: tuple[float, float],
        fov_um: tuple[float, float],
        profile: str,
        output: str | None = None,
        with_params: bool = True,
    ) -> ScanPlan:
        """The plan from the form; raises ValueError with one readable line.
        `with_params=False` leaves the method's settings out (previews need only the tiles)."""
        common: dict[str, Any] = {
            "objective": self.objective.currentText(),
            "profile": profile,
            "order": self.order.currentText(),
            "focus": self.focus_settings(with_params),
            "tissue": TissueSettings(enabled=self.tissue.isChecked()),
            "output": output if output is not None else expand_output(self.output.text()),
            "compression": self.compression.currentText(),
        }
        overlap = self.overlap.value() / 100.0
        try:
            if self.mode_grid.isChecked():
                return ScanPlan.grid(
                    self.rows.value(), self.cols.value(), centre_um, fov_um, overlap, **common
                )
            if self.mode_tissue.isChecked():
                if self._tissue_region is None:
                    raise ValueError(
                        "scan settings: no tissue regions yet: press Find tissue, or draw one"
                    )
                return ScanPlan(region=self._tissue_region, overlap=overlap, **common)
            x0, y0, x1, y1 = self.region()
            return ScanPlan(
                region=RectRegion(x0=x0, y0=y0, x1=x1, y1=y1), overlap=overlap, **common
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err.get("loc", ()))
            raise ValueError(
                f"scan settings: {where + ': ' if where else ''}{err['msg']}"
            ) from None

    # -- persistence ---------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        return {
            "objective": self.objective.currentText(),
            "mode": (
                "grid"
                if self.mode_grid.isChecked()
                else "tissue"
                if self.mode_tissue.isChecked()
                else "region"
            ),
            "rows": self.rows.value(),
            "cols": self.cols.value(),
            "region": list(self.region()),
            "overlap": self.overlap.value(),
            "order": self.order.currentText(),
            "method": self.method.currentText(),
            "params": self.params.raw_values(),
            "strategy": self.strategy.currentData(),
            "survey_points": self.survey_points.value(),
            "surface": self.surface.currentText(),
            "tissue": self.tissue.isChecked(),
            "output": self.output.text(),
            "compression": self.compression.currentText(),
        }

    def apply_settings(self, s: dict[str, Any]) -> None:
        """Restore `settings()`; unknown or stale values are ignored, not fatal."""

        def pick(combo: QtWidgets.QComboBox, value: Any, data: bool = False) -> None:
            i = combo.findData(value) if data else combo.findText(str(value))
            if i >= 0:
                combo.setCurrentIndex(i)

        try:
            pick(self.objective, s.get("objective", ""))
            # the tissue regions of an earlier run are not kept: a grid until they are found
            (self.mode_region if s.get("mode") == "region" else self.mode_grid).setChecked(True)
            self.rows.setValue(int(s.get("rows", self.rows.value())))
            self.cols.setValue(int(s.get("cols", self.cols.value())))
            region = s.get("region")
            if region and len(region) == 4:
                for box, v in zip(self.region_edits, region, strict=True):
                    box.setValue(float(v))
            self.overlap.setValue(int(s.get("overlap", self.overlap.value())))
            pick(self.order, s.get("order", ""))
            pick(self.method, s.get("method", ""))
            self.params.set_values(dict(s.get("params") or {}))
            pick(self.strategy, s.get("strategy", ""), data=True)
            self.survey_points.setValue(int(s.get("survey_points", 9)))
            pick(self.surface, s.get("surface", ""))
            self.tissue.setChecked(bool(s.get("tissue", True)))
            if s.get("output"):
                self.output.setText(str(s["output"]))
            pick(self.compression, s.get("compression", ""))
        except (TypeError, ValueError):
            pass

    # -- run state (the Run box) ---------------------------------------------------------------
    def set_state(self, state: RunnerState | None, message: str = "") -> None:
        """None: no scan. Buttons follow the runner's state machine; the form is locked while a
        scan runs."""
        self.run.set_state(state, message)
        self.form.setEnabled(not self.run.active)

    def set_hardware_ready(self, ready: bool) -> None:
        self.run.set_hardware_ready(ready)
        self.calibration_row.setEnabled(ready)

    def reset_progress(self, total: int) -> None:
        self.run.reset_progress(total)

    def show_progress(self, p: Progress) -> None:
        self.run.show_progress(p)

    def show_images_waiting(self, waiting: int) -> None:
        self.run.show_images_waiting(waiting)

    def show_backlog(self, b: BacklogProgress) -> None:
        self.run.show_backlog(b)

    def show_images_left(self, n: int) -> None:
        self.run.show_images_left(n)

    def add_warning(self, message: str) -> None:
        self.run.add_warning(message)


__all__ = ["ScanPanel", "default_output", "expand_output", "format_duration"]
