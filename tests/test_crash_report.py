"""Crash reports: the file (traceback, versions, profile, the end of the log) in the log folder,
and the desktop application writing one for an exception in a slot, in a thread, or at
start-up, and telling the person where it is."""

from __future__ import annotations

import datetime as dt
import sys
import threading
import types

import pytest

from slidescan.app.crash_report import crash_text, versions, write_crash_report
from slidescan.hardware.profile import load_profile


def raised(exc: BaseException):
    try:
        raise exc
    except BaseException:
        return sys.exc_info()


def test_the_report_has_the_traceback_versions_profile_and_log(tmp_path):
    log = tmp_path / "slidescan.log"
    log.write_text("".join(f"line {k}\n" for k in range(100)), encoding="utf-8")
    profile = load_profile("simulator")
    text = crash_text(
        *raised(ValueError("the stage said no")),
        profile=profile,
        profile_name="simulator",
        log_path=log,
        when=dt.datetime(2026, 1, 2, 3, 4, 5),
    )
    assert text.startswith("slidescan crash report, 2026-01-02T03:04:05\n")
    assert "Traceback (most recent call last)" in text
    assert "ValueError: the stage said no" in text
    assert f"python: {sys.version.split()[0]}" in text and "slidescan: " in text
    assert "== hardware profile: simulator" in text
    assert 'name = "simulator"' in text and 'type = "sim"' in text  # the profile as TOML
    assert "line 99" in text and "line 39" not in text  # the last 60 lines of the log


def test_versions_read_loaded_modules_and_import_nothing():
    fake = {"torch": types.SimpleNamespace(__version__="9.9")}
    got = versions(fake)
    assert got["torch"] == "9.9"
    assert "numpy" not in got and "Qt" not in got
    assert got["bundle"] == "no (pip)"


def test_a_report_with_no_profile_and_no_log(tmp_path):
    text = crash_text(*raised(RuntimeError("x")), log_path=tmp_path / "absent.log")
    assert "== hardware profile: none connected\n(none)" in text
    assert "the end of the log" not in text


def test_reports_in_the_same_second_are_both_kept(tmp_path):
    when = dt.datetime(2026, 1, 2, 3, 4, 5)
    a = write_crash_report(*raised(RuntimeError("a")), folder=tmp_path, when=when)
    b = write_crash_report(*raised(RuntimeError("b")), folder=tmp_path, when=when)
    assert a.name == "crash-20260102-030405.txt" and b.name == "crash-20260102-030405-2.txt"
    assert "RuntimeError: b" in b.read_text(encoding="utf-8")


def test_the_default_folder_is_the_log_folder():
    from slidescan.app.gui.logs import log_dir

    path = write_crash_report(*raised(RuntimeError("where")))
    assert path.parent == log_dir()  # tests isolate it (conftest: XDG_STATE_HOME)


# -- the desktop application ----------------------------------------------------------------
@pytest.fixture
def hooks():
    """Put back the process's exception hooks after a test installs the application's."""
    saved = sys.excepthook, threading.excepthook
    yield
    sys.excepthook, threading.excepthook = saved


def reports():
    from slidescan.app.gui.logs import log_dir

    return sorted(log_dir().glob("crash-*.txt"))


@pytest.mark.gui
def test_an_exception_in_a_slot_writes_a_report_and_says_where(qtbot, hooks, capsys, monkeypatch):
    from slidescan.app.gui import app as gui_app

    shown = []
    monkeypatch.setattr(gui_app.dialogs, "show_error", lambda *a, **k: shown.append((a, k)))
    before = set(reports())
    gui_app.install_excepthook(lambda: ("my-profile", load_profile("simulator")))
    sys.excepthook(*raised(KeyError("tile 7")))
    qtbot.waitUntil(lambda: bool(shown), timeout=5000)
    (new,) = set(reports()) - before
    text = new.read_text(encoding="utf-8")
    assert "KeyError: 'tile 7'" in text and "== hardware profile: my-profile" in text
    (_parent, title, message), kwargs = shown[0]
    assert title == "Unexpected error" and str(new) in message
    assert "KeyError" in kwargs["details"] and "Open log folder" in kwargs["buttons"]
    err = capsys.readouterr().err
    assert f"report: {new}" in err


@pytest.mark.gui
def test_an_exception_in_a_thread_is_shown_on_the_gui_thread(qtbot, hooks, monkeypatch):
    from slidescan.app.gui import app as gui_app

    shown = []
    monkeypatch.setattr(
        gui_app.dialogs,
        "show_error",
        lambda *a, **k: shown.append(threading.current_thread() is threading.main_thread()),
    )
    before = set(reports())

    def broken_profile():
        raise RuntimeError("no profile either")

    gui_app.install_excepthook(broken_profile)
    t = threading.Thread(target=lambda: 1 / 0, name="worker")
    t.start()
    t.join(5)
    qtbot.waitUntil(lambda: bool(shown), timeout=5000)
    assert shown == [True]  # the dialog was made on the GUI thread
    (new,) = set(reports()) - before
    text = new.read_text(encoding="utf-8")
    assert "ZeroDivisionError" in text and "== hardware profile: (unknown)" in text


@pytest.mark.gui
def test_a_failed_start_writes_a_report_and_exits_1(qtbot, hooks, monkeypatch):
    from PySide6 import QtWidgets

    from slidescan.app.gui import app as gui_app

    said = []
    monkeypatch.setattr(
        QtWidgets.QMessageBox, "critical", staticmethod(lambda *a: said.append(a) or 0)
    )

    def broken(*args):
        raise OSError("settings folder is read-only")

    monkeypatch.setattr(gui_app, "create_main_window", broken)
    before = set(reports())
    assert gui_app.main() == 1
    (new,) = set(reports()) - before
    assert "OSError: settings folder is read-only" in new.read_text(encoding="utf-8")
    assert str(new) in said[0][2]
