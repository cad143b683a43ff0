"""The scan panel: what to scan and how, the run controls, progress and warnings.

The form is a view over `app.plan.ScanPlan`: `build_plan()` turns it into a validated plan
(pydantic's errors become one readable line) and `settings()` / `apply_settings()` round-trip
it through QSettings between runs. A focus method's settings are generated from the method's
own parameter list (`focus.registry.describe`), so a new method gets a form without GUI code.
"""

from __future__ import annotations

import ast
import datetime as _dt
import math
import re
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import ValidationError
from PySide6 import QtCore, QtWidgets

from slidescan.app.events import Progress, RunnerState
from slidescan.app.plan import FocusSettings, RectRegion, ScanPlan, TissueSettings

DEFAULT_NAME = "scan-{time}.h5"


def default_output() -> str:
    return str(Path(platformdirs.user_documents_dir()) / "slidescan" / DEFAULT_NAME)


def expand_output(template: str, now: _dt.datetime | None = None) -> str:
    """Fill `{time}` / `{date}` in an output path template."""
    now = now or _dt.datetime.now()
    return template.replace("{time}", now.strftime("%Y%m%d-%H%M%S")).replace(
        "{date}", now.strftime("%Y%m%d")
    )


def method_parameters(description: str) -> dict[str, Any]:
    """Parameters and defaults from `focus.registry.describe()`'s 'parameters:' line."""
    match = re.search(r"^parameters:\s*(.+)$", description, flags=re.MULTILINE)
    if not match:
        return {}
    try:
        call = ast.parse(f"f({match.group(1)})", mode="eval").body
    except SyntaxError:
        return {}
    out: dict[str, Any] = {}
    for kw in getattr(call, "keywords", []):
        try:
            out[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            out[kw.arg] = None
    return out


def format_duration(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class MethodParamsForm(QtWidgets.QWidget):
    """Editors for one focus method's parameters; only changed values are returned."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QtWidgets.QFormLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._defaults: dict[str, Any] = {}
        self._editors: dict[str, QtWidgets.QWidget] = {}

    def set_parameters(self, defaults: dict[str, Any]) -> None:
        while self._layout.rowCount():
            self._layout.removeRow(0)
        self._defaults = dict(defaults)
        self._editors = {}
        for name, default in defaults.items():
            if isinstance(default, bool):
                editor: QtWidgets.QWidget = QtWidgets.QCheckBox()
                editor.setChecked(default)
            elif isinstance(default, int):
                editor = QtWidgets.QSpinBox()
                editor.setRange(-1_000_000, 1_000_000)
                editor.setValue(default)
            else:
                editor = QtWidgets.QLineEdit("" if default is None else str(default))
                editor.setPlaceholderText("automatic" if default is None else str(default))
            editor.setToolTip(f"{name} (default {default!r})")
            self._editors[name] = editor
            self._layout.addRow(name.replace("_", " "), editor)

    def values(self) -> dict[str, Any]:
        """The parameters that differ from their defaults, typed like the defaults."""
        out: dict[str, Any] = {}
        for name, editor in self._editors.items():
            default = self._defaults[name]
            if isinstance(editor, QtWidgets.QCheckBox):
                value: Any = editor.isChecked()
            elif isinstance(editor, QtWidgets.QSpinBox):
                value = editor.value()
            else:
                text = editor.text().strip()
                if not text:
                    value = default
                elif isinstance(default, float) or default is None:
                    try:
                        value = float(text)
                    except ValueError:
                        value = text
                else:
                    value = text
            if value != default:
                out[name] = value
        return out

    def set_values(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            editor = self._editors.get(name)
            if isinstance(editor, QtWidgets.QCheckBox):
                editor.setChecked(bool(value))
            elif isinstance(editor, QtWidgets.QSpinBox):
                editor.setValue(int(value))
            elif isinstance(editor, QtWidgets.QLineEdit):
                editor.setText(str(value))


class ScanPanel(QtWidgets.QWidget):
    startRequested = QtCore.Signal()
    pauseRequested = QtCore.Signal()
    resumeRequested = QtCore.Signal()
    stopRequested = QtCore.Signal()
    drawRegionToggled = QtCore.Signal(bool)
    #: The region, grid or overlap changed: the owner may preview the tiles.
    planChanged = QtCore.Signal()

    def __init__(
        self, objectives: list[str], methods: list[str], parent: QtWidgets.QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._describe_cache: dict[str, str] = {}

        # -- what ------------------------------------------------------------------------------
        self.objective = QtWidgets.QComboBox()
        self.set_objectives(objectives)
        self.mode_grid = QtWidgets.QRadioButton("Grid around the stage")
        self.mode_region = QtWidgets.QRadioButton("Region on the map")
        self.mode_grid.setChecked(True)
        self.rows = QtWidgets.QSpinBox()
        self.cols = QtWidgets.QSpinBox()
        for box in (self.rows, self.cols):
            box.setRange(1, 500)
            box.setValue(3)
        grid_row = QtWidgets.QHBoxLayout()
        grid_row.addWidget(self.rows)
        grid_row.addWidget(QtWidgets.QLabel("rows ×"))
        grid_row.addWidget(self.cols)
        grid_row.addWidget(QtWidgets.QLabel("cols"))
        self.region_edits = [QtWidgets.QDoubleSpinBox() for _ in range(4)]
        region_row = QtWidgets.QGridLayout()
        for i, (name, box) in enumerate(
            zip(("x0", "y0", "x1", "y1"), self.region_edits, strict=True)
        ):
            box.setRange(-1e6, 1e6)
            box.setDecimals(0)
            box.setSuffix(" µm")
            box.setButtonSymbols(QtWidgets.QAbstractSpinBox.ButtonSymbols.NoButtons)
            box.setToolTip(f"region {name} (µm)")
            region_row.addWidget(QtWidgets.QLabel(name), i // 2, 2 * (i % 2))
            region_row.addWidget(box, i // 2, 2 * (i % 2) + 1)
        self.draw_button = QtWidgets.QPushButton("Draw")
        self.draw_button.setCheckable(True)
        self.draw_button.setToolTip("Draw the scan region on the tile map (or Shift+drag there)")
        self.draw_button.toggled.connect(self.drawRegionToggled)
        region_row.addWidget(self.draw_button, 0, 4, 2, 1)
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
        f.addRow("", grid_row)
        f.addRow(self.mode_region)
        f.addRow("", region_row)
        f.addRow("Overlap", self.overlap)
        f.addRow("Order", self.order)

        # -- focus -----------------------------------------------------------------------------
        self.method = QtWidgets.QComboBox()
        self.method.addItems(methods)
        self.strategy = QtWidgets.QComboBox()
        self.strategy.addItem("every tile", "per-tile")
        self.strategy.addItem("focus map (survey, then fit)", "focusmap")
        self.survey_points = QtWidgets.QSpinBox()
        self.survey_points.setRange(3, 400)
        self.survey_points.setValue(9)
        self.surface = QtWidgets.QComboBox()
        self.surface.addItems(["quadratic", "plane", "tps"])
        self.method_help = QtWidgets.QLabel("")
        self.method_help.setWordWrap(True)
        self.method_help.setStyleSheet("color: gray; font-size: 8pt")
        self.params = MethodParamsForm()
        self.params_box = QtWidgets.QGroupBox("Method settings")
        self.params_box.setCheckable(True)
        self.params_box.setChecked(False)
        QtWidgets.QVBoxLayout(self.params_box).addWidget(self.params)
        self.params.setVisible(False)
        self.params_box.toggled.connect(self.params.setVisible)
        self.method.currentTextChanged.connect(self._method_changed)
        self.strategy.currentIndexChanged.connect(self._strategy_changed)
        focus = QtWidgets.QGroupBox("Focus")
        f = QtWidgets.QFormLayout(focus)
        f.addRow("Method", self.method)
        f.addRow(self.method_help)
        f.addRow("Strategy", self.strategy)
        f.addRow("Survey points", self.survey_points)
        f.addRow("Surface", self.surface)
        f.addRow(self.params_box)

        # -- options, output -------------------------------------------------------------------
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

        # -- run -------------------------------------------------------------------------------
        self.start_button = QtWidgets.QPushButton("Start scan")
        self.start_button.setToolTip("Start the scan (Ctrl+R)")
        self.start_button.setStyleSheet("font-weight: bold")
        self.pause_button = QtWidgets.QPushButton("Pause")
        self.resume_button = QtWidgets.QPushButton("Resume")
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.start_button.clicked.connect(self.startRequested)
        self.pause_button.clicked.connect(self.pauseRequested)
        self.resume_button.clicked.connect(self.resumeRequested)
        self.stop_button.clicked.connect(self.stopRequested)
        buttons = QtWidgets.QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.resume_button, self.stop_button):
            buttons.addWidget(b)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setMaximum(1)
        self.progress.setValue(0)
        self.progress.setFormat("no scan yet")
        self.rate_label = QtWidgets.QLabel("")
        self.state_label = QtWidgets.QLabel("idle")
        self.warnings = QtWidgets.QListWidget()
        self.warnings.setMaximumHeight(110)
        self.warnings.setToolTip("Warnings from the scan (focus fallbacks, device errors)")
        run = QtWidgets.QGroupBox("Run")
        v = QtWidgets.QVBoxLayout(run)
        v.addLayout(buttons)
        v.addWidget(self.progress)
        status = QtWidgets.QHBoxLayout()
        status.addWidget(self.state_label)
        status.addStretch(1)
        status.addWidget(self.rate_label)
        v.addLayout(status)
        v.addWidget(QtWidgets.QLabel("Warnings"))
        v.addWidget(self.warnings)

        form = QtWidgets.QWidget()
        fl = QtWidgets.QVBoxLayout(form)
        fl.setContentsMargins(0, 0, 0, 0)
        for box in (what, focus, options):
            fl.addWidget(box)
        fl.addStretch(1)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidget(form)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(scroll, 1)
        layout.addWidget(run)
        self.form = form
        self._method_changed(self.method.currentText())
        self._strategy_changed()
        self.set_state(None)
        for box in (self.rows, self.cols, self.overlap, *self.region_edits):
            box.valueChanged.connect(self.planChanged)
        self.mode_grid.toggled.connect(self.planChanged)

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

    def _describe(self, name: str) -> str:
        if name not in self._describe_cache:
            from slidescan.focus.registry import describe

            try:
                self._describe_cache[name] = describe(name)
            except Exception as exc:  # a broken plug-in: say so in the form
                self._describe_cache[name] = f"{name}: unavailable ({exc})"
        return self._describe_cache[name]

    def _method_changed(self, name: str) -> None:
        if not name:
            return
        text = self._describe(name)
        self.method_help.setText(text.split("\n", 1)[0].split(": ", 1)[-1])
        self.params.set_parameters(method_parameters(text))

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
    def focus_settings(self) -> FocusSettings:
        return FocusSettings(
            method=self.method.currentText(),
            params=self.params.values(),
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
    ) -> ScanPlan:
        """The plan from the form; raises ValueError with one readable line."""
        common: dict[str, Any] = {
            "objective": self.objective.currentText(),
            "profile": profile,
            "order": self.order.currentText(),
            "focus": self.focus_settings(),
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
            "mode": "grid" if self.mode_grid.isChecked() else "region",
            "rows": self.rows.value(),
            "cols": self.cols.value(),
            "region": list(self.region()),
            "overlap": self.overlap.value(),
            "order": self.order.currentText(),
            "method": self.method.currentText(),
            "params": self.params.values(),
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

    # -- run state -----------------------------------------------------------------------------
    def set_state(self, state: RunnerState | None, message: str = "") -> None:
        """None: no scan. Buttons follow the runner's state machine."""
        running = state is RunnerState.RUNNING
        paused = state is RunnerState.PAUSED
        active = state is not None and state is not RunnerState.IDLE
        self.start_button.setEnabled(not active)
        self.pause_button.setEnabled(running)
        self.resume_button.setEnabled(paused)
        self.stop_button.setEnabled(running or paused)
        self.form.setEnabled(not active)
        text = "idle" if state is None else state.value
        self.state_label.setText(f"{text}: {message}" if message else text)

    def reset_progress(self, total: int) -> None:
        self.progress.setFormat("%v / %m tiles")
        self.progress.setMaximum(max(1, total))
        self.progress.setValue(0)
        self.rate_label.setText("")
        self.warnings.clear()

    def show_progress(self, p: Progress) -> None:
        self.progress.setMaximum(max(1, p.total))
        self.progress.setValue(p.done)
        self.rate_label.setText(f"{p.tiles_per_s:.2f} tiles/s · ETA {format_duration(p.eta_s)}")

    def add_warning(self, message: str) -> None:
        self.warnings.addItem(message)
        self.warnings.scrollToBottom()
