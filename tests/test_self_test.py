"""`slidescan --self-test`: the step sequence (READY, or one line naming the step that failed),
the watchdog, the display and Qt-library checks before Qt loads, and the real steps on the
main window with a small simulator camera. The built bundle's self-test is
tests/test_bundle_slow.py."""

from __future__ import annotations

import io
import subprocess
import sys
import threading

import pytest

from slidescan.app.cli import main
from slidescan.app.gui import qt_libraries
from slidescan.app.gui import self_test as st


def steps_doing(*outcomes):
    ran = []

    def step(name, outcome):
        def run():
            ran.append(name)
            if outcome is not None:
                raise outcome

        return st.Step(name, run)

    return ran, [step(f"step {k}", o) for k, o in enumerate(outcomes)]


def test_all_steps_pass_prints_ready_and_exits_0():
    ran, steps = steps_doing(None, None, None)
    out, err, timings = io.StringIO(), io.StringIO(), st.Timings()
    assert st.run_steps(steps, out, err, timings) == 0
    assert out.getvalue() == "READY\n" and err.getvalue() == ""
    assert ran == ["step 0", "step 1", "step 2"]
    assert [name for name, _ in timings.steps] == ran
    assert "step 2" in timings.line()


def test_a_failing_step_prints_one_line_naming_it_and_stops():
    ran, steps = steps_doing(None, st.SelfTestError("the scan ended stopped: X\nmore"), None)
    out, err = io.StringIO(), io.StringIO()
    assert st.run_steps(steps, out, err) == 1
    assert out.getvalue() == ""
    assert err.getvalue() == "self-test failed: step 1: the scan ended stopped: X\n"
    assert ran == ["step 0", "step 1"]


def test_an_unexpected_exception_is_one_line_with_its_type():
    _, steps = steps_doing(KeyError("scan"))
    err = io.StringIO()
    assert st.run_steps(steps, io.StringIO(), err) == 1
    assert err.getvalue() == "self-test failed: step 0: KeyError: 'scan'\n"
    assert st.one_line(RuntimeError()) == "RuntimeError"


def test_the_watchdog_ends_a_hung_self_test_with_one_line():
    code = (
        "import time\n"
        "from slidescan.app.gui.self_test import watchdog\n"
        "watchdog(0.3)\n"
        "time.sleep(30)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 3
    assert proc.stderr.strip() == "self-test failed: timeout: not finished after 0 s"


def test_the_watchdog_is_harmless_once_cancelled():
    timer = st.watchdog(60)
    timer.cancel()
    timer.join(5)
    assert not timer.is_alive()


def test_self_test_names_missing_qt_libraries_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setattr(qt_libraries, "library_present", lambda s: s != "libxcb-cursor.so.0")
    assert main(["--self-test"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("self-test failed: start the GUI: Qt cannot start")
    assert "sudo apt-get install libxcb-cursor0" in err


def test_self_test_takes_no_subcommand(capsys):
    assert main(["--self-test", "info", "x.h5"]) == 2
    assert "--self-test takes no subcommand" in capsys.readouterr().err


def test_no_display_is_one_line_not_a_qt_abort():
    from slidescan.app.gui.app import NoDisplayError, check_display

    with pytest.raises(NoDisplayError, match="DISPLAY is not set"):
        check_display({}, "linux")
    with pytest.raises(NoDisplayError, match="WAYLAND_DISPLAY is not set"):
        check_display({"QT_QPA_PLATFORM": "wayland"}, "linux")
    check_display({"DISPLAY": ":99"}, "linux")
    check_display({"QT_QPA_PLATFORM": "offscreen"}, "linux")
    check_display({}, "win32")


def test_the_cli_runs_the_self_test(monkeypatch):
    called = []
    monkeypatch.setattr(st, "main", lambda: called.append(1) or 0)
    assert main(["--self-test"]) == 0 and called == [1]


def test_the_shipped_models_run_through_torch():
    ran = st.run_shipped_models()
    assert "diffcnn_20x_075: mobilenetv2" in ran


@pytest.mark.gui
def test_the_gui_steps_on_the_simulator(qtbot, tmp_path, monkeypatch):
    """The real steps (not the child-process stitch: app/gui/slide_jobs' own tests cover
    that; the bundle test runs it frozen) on a 64 px simulator camera."""
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # the test's hook is put back
    test = st.GuiSelfTest(tmp_path, camera_px=64)
    steps = [s for s in test.steps() if s.name not in ("stitch in a child process",)]
    out, err = io.StringIO(), io.StringIO()
    try:
        code = st.run_steps(steps, out, err)
    finally:
        test.close()
        from PySide6 import QtCore

        QtCore.qInstallMessageHandler(None)
    assert (code, err.getvalue(), out.getvalue()) == (0, "", "READY\n")
    assert test.scan_path.is_file()


@pytest.mark.gui
def test_an_exception_in_a_slot_fails_the_waiting_step(qtbot, tmp_path):
    test = st.GuiSelfTest(tmp_path)
    test._excepthook(ValueError, ValueError("boom"), None)
    with pytest.raises(st.SelfTestError, match="uncaught ValueError: boom"):
        test.wait_until(lambda: False, 5, "never")
    test._errors.clear()
    with pytest.raises(st.SelfTestError, match="nothing did not happen within 0 s"):
        test.wait_until(lambda: False, 0.05, "nothing")
    assert threading.current_thread() is threading.main_thread()
