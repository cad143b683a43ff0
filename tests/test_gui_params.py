"""The focus method's settings form, generated from the method's parameter model: the editors
fit each field's type and constraints, a bad value is refused (marked, and Start says why), and
only the values the person changed go into the scan plan."""

from __future__ import annotations

import json
import subprocess
import sys
import typing

import pytest
from PySide6 import QtCore, QtWidgets

from slidescan.app.gui.param_editors import BoolEditor, ChoiceEditor, NumberEditor, TextEditor
from slidescan.app.gui.scan_panel import ScanPanel
from slidescan.focus.metrics import MetricName
from slidescan.focus.registry import available_methods, params_model

pytestmark = pytest.mark.gui

METRICS = list(typing.get_args(MetricName))


@pytest.fixture
def panel(qtbot):
    p = ScanPanel(["20x/0.75"], available_methods())
    qtbot.addWidget(p)
    p.show()
    return p


def plan_params(panel: ScanPanel) -> dict:
    return panel.build_plan((0.0, 0.0), (100.0, 100.0), "test", "x.h5").focus.params


def test_diffcnn_gets_a_form_of_its_own_fields(panel):
    panel.method.setCurrentText("diffcnn")
    eds = panel.params.editors
    assert list(eds) == list(params_model("diffcnn").model_fields)
    assert isinstance(eds["weights"], TextEditor) and eds["weights"].kind == "path"
    assert eds["weights"].value() is None  # empty: the shipped weights
    assert "checkpoint file" in eds["weights"].toolTip()
    cal = eds["calibrate_tiles"]
    assert isinstance(cal, NumberEditor) and cal.is_int and cal.value() == 5
    assert cal.spin.minimum() == 0  # ge=0
    conf = eds["min_confidence"]
    assert (conf.spin.minimum(), conf.spin.maximum()) == (0.0, 1.0)  # ge=0, le=1
    assert eds["range_um"].spin.minimum() == pytest.approx(0.001)  # gt=0: one step above
    fallback = eds["fallback"]
    assert isinstance(fallback, ChoiceEditor)
    assert [fallback.combo.itemText(i) for i in range(fallback.combo.count())] == [
        "zsweep",
        "none",
    ]
    threads = eds["threads"]  # int | None, default 1: "auto" offered, not ticked
    assert threads.auto is not None and not threads.auto.isChecked() and threads.value() == 1
    pairs = eds["calibration_pairs_um"]
    assert isinstance(pairs, TextEditor) and pairs.edit.text() == "3, 4.5"
    assert pairs.value() == (3.0, 4.5)
    assert isinstance(eds["na_scaling"], BoolEditor) and eds["na_scaling"].value() is True
    assert panel.params.changed() == {} and plan_params(panel) == {}
    assert panel.start_button.isEnabled()


def test_zsweep_form_offers_auto_for_optional_numbers(panel):
    panel.method.setCurrentText("zsweep")
    eds = panel.params.editors
    step = eds["step_um"]
    assert step.auto is not None and step.auto.isChecked() and not step.spin.isEnabled()
    assert step.value() is None
    metric = eds["metric"]
    assert [metric.combo.itemText(i) for i in range(metric.combo.count())] == METRICS
    assert eds["fit_points"].spin.minimum() == 3
    assert isinstance(eds["extend"], BoolEditor)
    assert "plane spacing" in step.toolTip()


def test_changed_values_and_only_those_land_in_the_plan(panel):
    panel.method.setCurrentText("zsweep")
    eds = panel.params.editors
    eds["step_um"].auto.setChecked(False)
    eds["step_um"].spin.setValue(0.5)
    eds["metric"].combo.setCurrentText("tenengrad")
    eds["extend"].box.setChecked(False)
    eds["fit_points"].spin.setValue(5)  # its default: not a change
    assert plan_params(panel) == {"step_um": 0.5, "metric": "tenengrad", "extend": False}
    # and they survive a restart of the window (settings round trip)
    saved = json.loads(json.dumps(panel.settings()))
    again = ScanPanel(["20x/0.75"], available_methods())
    again.apply_settings(saved)
    assert again.method.currentText() == "zsweep"
    assert plan_params(again) == plan_params(panel)
    again.deleteLater()


def test_diffcnn_values_in_the_plan_are_json(panel, tmp_path):
    panel.method.setCurrentText("diffcnn")
    eds = panel.params.editors
    weights = tmp_path / "mine.pt"
    eds["weights"].edit.setText(str(weights))
    eds["weights"].edit.editingFinished.emit()
    eds["calibrate_tiles"].spin.setValue(0)
    eds["calibration_pairs_um"].edit.setText("2, 3.5, 5")
    eds["calibration_pairs_um"].edit.editingFinished.emit()
    assert plan_params(panel) == {
        "weights": str(weights),
        "calibrate_tiles": 0,
        "calibration_pairs_um": [2.0, 3.5, 5.0],
    }


def test_a_bad_value_is_marked_and_start_says_why(panel):
    panel.method.setCurrentText("diffcnn")
    pairs = panel.params.editors["calibration_pairs_um"]
    pairs.edit.setText("three, four")
    pairs.edit.editingFinished.emit()
    assert "calibration_pairs_um" in panel.params.problem
    assert pairs.problem and "calibration_pairs_um" in pairs.toolTip()
    assert not panel.params.editors["weights"].problem  # only the bad field is marked
    assert not panel.start_button.isEnabled()
    assert "calibration_pairs_um" in panel.start_button.toolTip()
    assert panel.run.problem_label.isVisibleTo(panel)
    assert panel.params_box.isChecked()  # the form opens to show the marked field
    with pytest.raises(ValueError, match="method settings: .*calibration_pairs_um"):
        plan_params(panel)
    pairs.edit.setText("2.5")
    pairs.edit.editingFinished.emit()
    assert panel.params.problem == "" and not pairs.problem
    assert panel.start_button.isEnabled()
    assert plan_params(panel) == {"calibration_pairs_um": [2.5]}
    assert panel.run.problem_label.isHidden()


def test_changing_method_starts_from_its_defaults(panel):
    panel.method.setCurrentText("zsweep")
    panel.params.editors["extend"].box.setChecked(False)
    panel.method.setCurrentText("brent")
    assert plan_params(panel) == {}
    assert "xatol_um" in panel.params.editors


def test_the_diffcnn_form_does_not_import_torch():
    code = (
        "import os, sys; os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
        "from PySide6 import QtWidgets; app = QtWidgets.QApplication([])\n"
        "from slidescan.app.gui.params_form import MethodParamsForm\n"
        "f = MethodParamsForm(); f.set_method('diffcnn')\n"
        "assert 'weights' in f.editors\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "False", out.stderr


def test_start_scan_with_bad_settings_is_a_dialog(qtbot, tmp_path, tissue_dir):
    from test_gui_helpers import fake_microscope

    from slidescan.app.gui.main_window import MainWindow
    from slidescan.app.gui.settings import gui_settings

    settings = gui_settings(tmp_path / "gui.ini")
    settings.setValue("camera/live", "false")
    win = MainWindow(settings=settings)
    qtbot.addWidget(win)
    win.set_microscope(fake_microscope(tissue_dir), "fake")
    qtbot.waitUntil(lambda: win.stage_controller.position is not None, timeout=5000)
    p = win.scan_panel
    p.output.setText(str(tmp_path / "scan.h5"))
    p.method.setCurrentText("diffcnn")
    assert p.start_button.isEnabled()
    pairs = p.params.editors["calibration_pairs_um"]
    pairs.edit.setText("x")
    pairs.edit.editingFinished.emit()
    assert not p.start_button.isEnabled()
    win.start_scan()  # Ctrl+R does not ask the button
    assert win.last_dialog is not None and "calibration_pairs_um" in win.last_dialog.text()
    assert win.runner is None and not (tmp_path / "scan.h5").exists()
    win.worker.wait_idle(10)
    assert isinstance(win.last_dialog, QtWidgets.QMessageBox)


def test_show_method_settings_scrolls_them_into_view(panel, qtbot):
    panel.resize(420, 500)
    panel.method.setCurrentText("diffcnn")
    qtbot.wait(10)
    assert not panel.params.isVisible()
    panel.show_method_settings()
    assert panel.params.isVisible()
    bar = panel.scroll.verticalScrollBar()
    top = panel.params_box.mapTo(panel.form, QtCore.QPoint(0, 0)).y()
    assert bar.value() > 0 and bar.value() == min(top, bar.maximum())
