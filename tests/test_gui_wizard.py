"""The hardware wizard and profile handling in the GUI."""

from __future__ import annotations

import pytest
from PySide6 import QtCore, QtWidgets

from slidescan.app.gui.main_window import MainWindow
from slidescan.app.gui.settings import gui_settings
from slidescan.app.gui.wizard import HardwareWizard, ProfileManager
from slidescan.app.gui.worker import DeviceWorker
from slidescan.hardware.profile import load_profile, open_microscope, user_profile_dir
from slidescan.hardware.registry import stage_kinds

pytestmark = pytest.mark.gui


@pytest.fixture
def worker():
    w = DeviceWorker()
    yield w
    w.wait_idle(30)
    w.shutdown()


def finish(qtbot, wiz: HardwareWizard) -> None:
    while wiz.currentPage() is not wiz.save_page:
        wiz.next()
    wiz.button(QtWidgets.QWizard.WizardButton.FinishButton).click()
    qtbot.waitUntil(lambda: not wiz.isVisible(), timeout=5000)


def test_wizard_creates_a_simulator_profile(qtbot, worker):
    wiz = HardwareWizard(worker=worker)
    qtbot.addWidget(wiz)
    wiz.show()
    page = wiz.stage_page
    assert page.stage_type == "sim"  # preselected: the program works without hardware
    page.preset.setCurrentIndex(page.preset.findData("lowcost"))
    page.run_test(move=True)
    qtbot.waitUntil(lambda: page.result.text().startswith(("✓", "✗")), timeout=30000)
    assert page.result.text().startswith("✓"), page.result.text()
    assert "test move" in page.result.text() and "ok" in page.result.text()
    wiz.next()
    cam = wiz.camera_page
    cam.sim_size.setCurrentIndex(cam.sim_size.findData(512))
    cam.specimen.setCurrentIndex(cam.specimen.findData("ihc"))
    cam.preview_button.setChecked(True)  # live preview from the simulator's camera
    qtbot.waitUntil(lambda: cam.frames_seen >= 2, timeout=30000)
    assert cam.preview.image.shape == (512, 512, 3)
    wiz.next()
    obj = wiz.objectives_page
    for r in range(obj.table.rowCount()):  # 10x and 20x/0.75 only
        use = obj.table.item(r, 1).text() in ("10x/0.30", "20x/0.75")
        obj.table.item(r, 0).setCheckState(
            QtCore.Qt.CheckState.Checked if use else QtCore.Qt.CheckState.Unchecked
        )
    obj.default.setCurrentText("20x/0.75")
    assert "0.325 µm/px" in obj.summary.text()  # 6.5 um pixels / 20x
    wiz.next()
    lim = wiz.limits_page
    lim.boxes["z"][0].setValue(-50.0)
    lim.boxes["z"][1].setValue(40.0)
    wiz.next()
    wiz.save_page.name.setText("wizard-sim")
    wiz.save_page.description.setText("made by the wizard")
    with qtbot.waitSignal(wiz.profileSaved) as saved:
        finish(qtbot, wiz)
    assert saved.args == ["wizard-sim"]
    preview = wiz.save_page.preview.toPlainText()  # the TOML the person saw before saving
    assert 'type = "sim"' in preview and "[simulator" in preview
    assert (user_profile_dir() / "wizard-sim.toml").is_file()
    prof = load_profile("wizard-sim")
    assert prof.is_simulated and prof.description == "made by the wizard"
    assert [o.name for o in prof.objectives] == ["10x/0.30", "20x/0.75"]
    assert prof.default_objective == "20x/0.75"
    m = open_microscope(prof)
    try:
        assert m.camera.shape == (512, 512, 3)
        assert m.stage.limits.range("z") == (-50.0, 40.0)
        assert m.config.specimen.stain == "ihc" and m.config.stage.z_backlash_um > 0  # lowcost
    finally:
        m.close()

    # edit it later: the pages come back filled in
    again = HardwareWizard(worker=worker, edit="wizard-sim")
    qtbot.addWidget(again)
    assert again.stage_page.preset.currentData() == "lowcost"
    assert again.camera_page.sim_size.currentData() == 512
    assert again.limits_page.limits()["z"] == (-50.0, 40.0)
    assert again.objectives_page.default.currentText() == "20x/0.75"
    again.show()
    again.save_page.description.setText("edited")
    finish(qtbot, again)
    assert load_profile("wizard-sim").description == "edited"

    manager = ProfileManager(current="simulator")
    qtbot.addWidget(manager)
    names = [
        manager.list.item(i).data(QtCore.Qt.ItemDataRole.UserRole)
        for i in range(manager.list.count())
    ]
    assert "wizard-sim" in names and "simulator" in names
    manager.delete("wizard-sim")
    assert not (user_profile_dir() / "wizard-sim.toml").exists()


def test_wizard_serial_stage_over_a_fake_controller(qtbot, worker):
    wiz = HardwareWizard(worker=worker)
    qtbot.addWidget(wiz)
    page = wiz.stage_page
    offered = [(page.type.itemData(i), page.type.itemText(i)) for i in range(page.type.count())]
    assert offered == [(k.name, k.label) for k in stage_kinds()]  # the registry's kinds
    page.type.setCurrentIndex(page.type.findData("grbl"))
    assert page.port.findText("fakegrbl://") >= 0  # offered next to the detected ports
    assert page.baud.currentText() == "115200"
    lo, hi = wiz.limits_page.limits()["x"]
    assert lo < hi  # started from the shipped GRBL example
    page.port.setCurrentText("fakegrbl://")
    page.run_test(move=True)
    qtbot.waitUntil(lambda: page.result.text().startswith(("✓", "✗")), timeout=30000)
    assert page.result.text().startswith("✓"), page.result.text()
    page.port.setCurrentText("/dev/no-such-port")
    page.run_test(move=False)
    qtbot.waitUntil(lambda: page.result.text().startswith(("✓", "✗")), timeout=30000)
    assert page.result.text().startswith("✗") and "no-such-port" in page.result.text()
    assert wiz.camera_page.camera_type == "opencv"  # a real stage goes with a real camera


def test_editing_a_serial_profile_fills_the_pages(qtbot, worker):
    wiz = HardwareWizard(worker=worker, edit="prior-proscan")
    qtbot.addWidget(wiz)
    assert wiz.stage_page.stage_type == "prior"
    assert wiz.stage_page.port.currentText() == "/dev/ttyUSB0"
    assert wiz.stage_page.baud.currentText() == "9600"
    assert wiz.limits_page.limits()["y"] == (0.0, 72000.0)
    assert wiz.camera_page.camera_type == "opencv" and wiz.camera_page.width.value() == 2448
    prof = wiz.build_profile()
    assert prof.stage == load_profile("prior-proscan").stage


def test_failing_profile_says_why_and_offers_the_wizard(qtbot, tmp_path, worker):
    prof = load_profile("grbl-openflexure").model_copy(deep=True)
    prof.stage.port = "/dev/no-such-port"
    from slidescan.hardware.profile import save_profile

    save_profile(prof, "broken-grbl")
    settings = gui_settings(tmp_path / "gui.ini")
    win = MainWindow(settings=settings)
    qtbot.addWidget(win)
    win.show()
    win.connect_profile("broken-grbl")
    qtbot.waitUntil(lambda: win.last_dialog is not None, timeout=20000)
    box = win.last_dialog
    assert "broken-grbl" in box.text() and "no-such-port" in box.text()
    labels = [b.text() for b in box.buttons()]
    assert "Run the hardware wizard…" in labels and "Use the simulator" in labels
    assert win.microscope is None and win.isVisible()
    next(b for b in box.buttons() if b.text() == "Run the hardware wizard…").click()
    qtbot.waitUntil(
        lambda: win.hardware.wizard is not None and win.hardware.wizard.isVisible(), timeout=5000
    )
    win.hardware.wizard.reject()
    (user_profile_dir() / "broken-grbl.toml").unlink()


def test_first_start_runs_the_wizard_with_the_simulator(qtbot, monkeypatch, tmp_path):
    from slidescan.app.gui import app as gui_app
    from slidescan.app.gui import settings as gui_settings_module

    monkeypatch.setattr(gui_settings_module, "settings_path", lambda: tmp_path / "first.ini")
    monkeypatch.setattr(
        "slidescan.hardware.profile.user_profile_dir", lambda: tmp_path / "no-profiles"
    )
    win = gui_app.create_main_window()
    qtbot.addWidget(win)
    assert gui_app.first_start(win.settings)
    qtbot.waitUntil(
        lambda: win.hardware.wizard is not None and win.hardware.wizard.isVisible(), timeout=5000
    )
    assert win.hardware.wizard.stage_page.stage_type == "sim"
