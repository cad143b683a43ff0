"""The hardware wizard and profile handling in the GUI."""

from __future__ import annotations

import sys
import threading
import time

import cv2
import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets
from test_drivers_camera import FakeCapture

from slidescan.app.gui.main_window import MainWindow
from slidescan.app.gui.settings import gui_settings
from slidescan.app.gui.wizard import HardwareWizard, ProfileManager
from slidescan.app.gui.worker import DeviceWorker
from slidescan.hardware.profile import load_profile, open_microscope, user_profile_dir
from slidescan.hardware.registry import CameraConfig, stage_kinds

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
    qtbot.waitUntil(lambda: cam.preview.frames_shown >= 2, timeout=30000)
    assert cam.preview.last_frame.image.shape == (512, 512, 3)
    assert cam.preview.image.image.shape == (256, 256, 3)  # reduced to the small view
    # the exposure control: within the simulator's declared range, applied to the preview
    assert cam.camera_exposure_range == (0.01, 10000.0) and cam.exposure.maximum() == 10000.0
    assert cam.exposure.value() == 10.0  # what the camera holds fills the control
    cam.exposure.setValue(25.0)
    qtbot.waitUntil(lambda: cam.preview.last_frame.exposure_ms == 25.0, timeout=30000)
    previewed = cam.preview.camera
    wiz.next()
    assert not cam.preview.active and worker.wait_idle(30)  # leaving the step closes it ...
    assert not previewed.streaming  # ... on the worker
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
        assert m.camera.shape == (512, 512, 3) and m.camera.exposure_ms == 25.0
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


# -- Basler cameras (pylon's emulation) and the exposure control of every kind -----------------------
PYLON_MISSING = "pypylon is not installed (pip install 'slidescan[basler]'): no Basler tests"
INSTALL = "pip install 'slidescan[basler]'"


@pytest.fixture
def pylon(monkeypatch):
    """Two emulated Basler cameras, 0815-0000 and 0815-0001 (pylon reads PYLON_CAMEMU at each
    enumeration; it is set before pypylon is imported all the same)."""
    monkeypatch.setenv("PYLON_CAMEMU", "2")
    return pytest.importorskip("pypylon.pylon", reason=PYLON_MISSING)


@pytest.fixture
def without_pypylon(monkeypatch):
    """As if pypylon were not installed (whether it is or not)."""
    for name in ("pypylon", "pypylon.pylon", "pypylon.genicam"):
        monkeypatch.setitem(sys.modules, name, None)


def camera_step(worker, qtbot, camera_type: str) -> HardwareWizard:
    """A wizard on its camera step behind a (fake) GRBL stage, with `camera_type` chosen."""
    wiz = HardwareWizard(worker=worker)
    qtbot.addWidget(wiz)
    wiz.show()
    wiz.stage_page.type.setCurrentIndex(wiz.stage_page.type.findData("grbl"))
    wiz.stage_page.port.setCurrentText("fakegrbl://")
    wiz.next()
    assert wiz.currentPage() is wiz.camera_page
    wiz.camera_page.set_camera_type(camera_type)
    assert wiz.camera_page.camera_type == camera_type
    return wiz


def listed(page) -> list[list[str]]:
    tree = page.camera_list.tree
    return [
        [tree.topLevelItem(r).text(c) for c in range(tree.columnCount())]
        for r in range(tree.topLevelItemCount())
    ]


def pick(page, serial: str) -> None:
    """Click the listed camera `serial`."""
    tree = page.camera_list.tree
    row = next(r for r in range(tree.topLevelItemCount()) if tree.topLevelItem(r).text(1) == serial)
    tree.setCurrentItem(tree.topLevelItem(row))


def node(camera, name: str):
    return camera.pylon_camera.GetNodeMap().GetNode(name).GetValue()


def test_the_wizard_lists_basler_cameras_previews_one_and_saves_it(worker, qtbot, pylon):
    wiz = camera_step(worker, qtbot, "basler")
    page = wiz.camera_page
    qtbot.waitUntil(lambda: "found" in page.camera_list.status.text(), timeout=30000)
    assert listed(page) == [
        ["Emulation", "0815-0000", "BaslerCamEmu", "free"],
        ["Emulation", "0815-0001", "BaslerCamEmu", "free"],
    ]
    assert page.camera_list.status.text().startswith("2 cameras found in ")
    assert not page.preview.active  # nothing is opened until a camera is chosen

    pick(page, "0815-0001")  # choosing one opens it in the preview
    preview = page.preview
    qtbot.waitUntil(lambda: preview.frames_shown >= 3, timeout=30000)
    camera = preview.camera
    assert camera.serial == "0815-0001" and camera.streaming
    frame = preview.last_frame
    assert frame.meta["serial"] == "0815-0001" and frame.image.shape == (1040, 1024)
    shown = preview.image.image  # the frame, reduced by 3 for the small view
    assert shown.shape == (346, 341)
    assert abs(float(shown.mean()) - float(frame.image[: 346 * 3, : 341 * 3].mean())) < 1.0
    ids = [frame.meta["frame_id"]]
    qtbot.waitUntil(lambda: preview.last_frame.meta["frame_id"] != ids[0], timeout=10000)
    assert preview.status.text().startswith("✓ Basler Emulation (0815-0001): 1024 × 1040 px")
    assert "fps shown" in preview.status.text()
    assert listed(page)[1][3] == "open here (preview)"

    # what the camera holds fills the profile: its pixel format (among its own) and exposure
    formats = [page.pixel_format.itemData(i) for i in range(page.pixel_format.count())]
    assert formats[0] is None and set(formats[1:]) == set(camera.pixel_formats)
    assert page.pixel_format.currentData() == "Mono8"
    assert page.exposure.value() == 10.0
    assert page.camera_exposure_range == (0.001, 10000.0)
    assert page.exposure.maximum() == 10000.0 and "0.001–10000 ms" in page.exposure_range.text()
    table = wiz.camera_config()
    assert (table["serial"], table["pixel_format"], table["exposure_ms"]) == (
        "0815-0001",
        "Mono8",
        10.0,
    )

    # the exposure reaches the camera at once, and the frames say so
    page.exposure.setValue(25.0)
    qtbot.waitUntil(lambda: preview.last_frame.exposure_ms == 25.0, timeout=10000)
    assert node(camera, "ExposureTime") == pytest.approx(25000.0)  # microseconds on the camera
    page.exposure.setValue(20000.0)  # past the camera's longest: the control keeps to its range
    assert page.exposure.value() == 10000.0

    # another pixel format reopens the camera with it
    page.pixel_format.setCurrentIndex(page.pixel_format.findData("Mono12"))
    qtbot.waitUntil(
        lambda: (
            preview.last_frame is not None and preview.last_frame.meta["pixel_format"] == "Mono12"
        ),
        timeout=30000,
    )
    assert preview.last_frame.image.dtype == np.uint16
    assert worker.wait_idle(30) and camera.pylon_camera is None  # the first opening is closed
    reopened = preview.camera

    while wiz.currentPage() is not wiz.save_page:
        wiz.next()
    assert worker.wait_idle(30) and reopened.pylon_camera is None  # left the step: closed
    wiz.save_page.name.setText("wizard-basler")
    finish(qtbot, wiz)
    prof = load_profile("wizard-basler")
    assert prof.camera.type == "basler" and prof.camera.serial == "0815-0001"
    assert prof.camera.pixel_format == "Mono12" and prof.camera.exposure_ms == 10000.0
    (user_profile_dir() / "wizard-basler.toml").unlink()


def test_closing_the_wizard_closes_the_camera(worker, qtbot, pylon):
    from slidescan.hardware.drivers.basler import BaslerCamera

    wiz = camera_step(worker, qtbot, "basler")
    page = wiz.camera_page
    qtbot.waitUntil(lambda: page.camera_list.tree.topLevelItemCount() == 2, timeout=30000)
    pick(page, "0815-0000")
    qtbot.waitUntil(lambda: page.preview.frames_shown >= 1, timeout=30000)
    camera = page.preview.camera
    wiz.reject()
    assert worker.wait_idle(30)
    assert camera.pylon_camera is None and not camera.streaming
    again = BaslerCamera("0815-0000", pixel_size_um=1.0)  # free: a second open succeeds
    try:
        assert again.snap().image.shape == (1040, 1024)
    finally:
        again.close()


def test_a_camera_still_opening_when_the_step_is_left_is_closed(worker, qtbot, pylon):
    wiz = camera_step(worker, qtbot, "basler")
    page = wiz.camera_page
    qtbot.waitUntil(lambda: page.camera_list.tree.topLevelItemCount() == 2, timeout=30000)
    opening, go_on = threading.Event(), threading.Event()
    opened = []
    opener = wiz.camera_opener

    def slow_opener():
        inner = opener()

        def open_it():
            opening.set()
            go_on.wait(30)  # the person leaves the step meanwhile
            camera, closer = inner()
            opened.append(camera)
            return camera, closer

        return open_it

    page._opener = slow_opener
    pick(page, "0815-0000")
    qtbot.waitUntil(opening.is_set, timeout=30000)
    wiz.back()
    assert not page.preview.active
    go_on.set()
    assert worker.wait_idle(30)
    assert len(opened) == 1 and opened[0].pylon_camera is None and not opened[0].streaming
    assert page.preview.camera is None and page.preview.frames_shown == 0


def test_a_wizard_closed_while_it_looks_for_cameras_drops_the_answer(worker, qtbot, pylon):
    wiz = HardwareWizard(worker=worker)  # as the main window opens it: deleted when closed
    wiz.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
    wiz.stage_page.type.setCurrentIndex(wiz.stage_page.type.findData("grbl"))
    wiz.camera_page.set_camera_type("basler")
    gate = threading.Event()
    worker.submit(gate.wait, 30)
    wiz.camera_page.camera_list.look(wiz.camera_page.kind)  # answered after the wizard is gone
    with qtbot.waitSignal(wiz.destroyed, timeout=5000):
        wiz.reject()
    del wiz
    gate.set()
    assert worker.wait_idle(30)
    qtbot.wait(100)  # the answer arrives: to widgets that are gone it must not go


def test_editing_a_basler_profile_fills_the_camera_step(worker, qtbot, pylon):
    from slidescan.hardware.profile import save_profile

    prof = load_profile("grbl-openflexure").model_copy(deep=True)
    prof.camera = CameraConfig.model_validate(
        {
            "type": "basler",
            "serial": "0815-0001",
            "pixel_format": "Mono12",
            "exposure_ms": 4.0,
            "roi": {"width": 128, "height": 96},
            "sensor_pixel_um": 3.45,
        }
    )
    save_profile(prof, "edit-basler")
    wiz = HardwareWizard(worker=worker, edit="edit-basler")
    qtbot.addWidget(wiz)
    page = wiz.camera_page
    assert page.camera_type == "basler" and page.camera_list.serial == "0815-0001"
    assert page.pixel_format.currentData() == "Mono12" and page.exposure.value() == 4.0
    mine = {"sensor_pixel_um"}  # the objectives step's (from the calibrated objective)
    assert wiz.build_profile().camera.model_dump(exclude=mine) == prof.camera.model_dump(
        exclude=mine
    )  # the ROI the step does not show is kept
    wiz.show()
    wiz.next()
    qtbot.waitUntil(lambda: len(listed(page)) == 2, timeout=30000)
    assert page.camera_list.tree.currentItem().text(1) == "0815-0001"
    assert not page.preview.active  # opened when a person asks, not by loading
    page.preview_button.setChecked(True)
    qtbot.waitUntil(lambda: page.preview.frames_shown >= 1, timeout=30000)
    assert page.preview.last_frame.image.shape == (96, 128)
    assert page.preview.last_frame.exposure_ms == 4.0
    wiz.reject()
    (user_profile_dir() / "edit-basler.toml").unlink()


def test_a_camera_another_program_holds_is_listed_so(worker, qtbot, pylon, monkeypatch):
    held = pylon.Accessibility_OpenedExclusively  # the emulation cannot be held: pylon says so
    monkeypatch.setattr(pylon.TlFactory, "IsDeviceAccessibleInfo", lambda self, info: (False, held))
    wiz = camera_step(worker, qtbot, "basler")
    page = wiz.camera_page
    qtbot.waitUntil(lambda: len(listed(page)) == 2, timeout=30000)
    assert [row[3] for row in listed(page)] == ["in use by another program"] * 2


def test_a_profiles_camera_that_is_not_found_stays_chosen(worker, qtbot, pylon):
    wiz = camera_step(worker, qtbot, "basler")
    page = wiz.camera_page
    page.camera_list.choose("4711")
    page.camera_list.refresh()
    qtbot.waitUntil(lambda: len(listed(page)) == 3, timeout=30000)
    assert listed(page)[2] == ["", "4711", "", "not found"]
    assert wiz.camera_config()["serial"] == "4711"


def test_no_basler_camera_found_is_one_line(worker, qtbot, pylon, monkeypatch):
    monkeypatch.delenv("PYLON_CAMEMU")
    wiz = camera_step(worker, qtbot, "basler")
    page = wiz.camera_page
    qtbot.waitUntil(lambda: "found" in page.camera_list.status.text(), timeout=30000)
    assert listed(page) == []
    assert page.camera_list.status.text().startswith("No camera found: is it connected")


def test_without_pypylon_the_step_names_the_install(worker, qtbot, without_pypylon):
    wiz = camera_step(worker, qtbot, "basler")
    page = wiz.camera_page
    qtbot.waitUntil(lambda: page.camera_list.status.text().startswith("✗"), timeout=30000)
    text = page.camera_list.status.text()
    assert INSTALL in text and "\n" not in text and listed(page) == []
    page.preview_button.setChecked(True)  # opening says the same, in one line
    qtbot.waitUntil(lambda: page.preview.status.text().startswith("✗"), timeout=30000)
    assert INSTALL in page.preview.status.text() and not page.preview_button.isChecked()


class PacedCapture(FakeCapture):
    """A USB camera at about 100 fps (the fake serves frames as fast as they are read)."""

    def read(self):
        time.sleep(0.01)
        return super().read()


def test_a_usb_camera_takes_the_exposure_within_its_declared_range(worker, qtbot, monkeypatch):
    made: list[PacedCapture] = []

    def capture(index, backend):
        made.append(PacedCapture(index, backend))
        return made[-1]

    monkeypatch.setattr("slidescan.hardware.drivers.opencv_camera.cv2.VideoCapture", capture)
    wiz = camera_step(worker, qtbot, "opencv")
    page = wiz.camera_page
    page.backend.setCurrentText("v4l2")
    assert page.exposure.value() == 0 and page.exposure.text() == "camera default"
    page.preview_button.setChecked(True)
    qtbot.waitUntil(lambda: page.preview.frames_shown >= 2, timeout=30000)
    assert page.camera_exposure_range == (0.1, 60000.0)  # what OpenCVCamera declares
    assert page.exposure.value() == 0  # OpenCV cannot read the camera's own: left to it
    assert wiz.camera_config()["exposure_ms"] is None
    page.exposure.setValue(0.05)  # below the shortest it takes: its shortest
    assert page.exposure.value() == 0.1
    page.exposure.setValue(12.5)
    qtbot.waitUntil(lambda: page.preview.last_frame.exposure_ms == 12.5, timeout=10000)
    assert made[-1].props[cv2.CAP_PROP_EXPOSURE] == 125  # V4L2 counts 100 us
    assert wiz.camera_config()["exposure_ms"] == 12.5
    wiz.reject()
    assert worker.wait_idle(30) and made[-1].released
