"""`slidescan gui` names the missing Qt system libraries (and the apt packages) before Qt
aborts with "Could not load the Qt platform plugin xcb"."""

from __future__ import annotations

import pytest

from slidescan.app.cli import main
from slidescan.app.gui import qt_libraries
from slidescan.app.gui.qt_libraries import (
    GUI_LIBRARIES,
    XCB_LIBRARIES,
    install_hint,
    library_present,
    missing_libraries,
    qt_platform,
)

pytestmark = pytest.mark.gui

FRESH_DEBIAN = {"libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-cursor.so.0"}


def without(absent: set[str]):
    return lambda soname: soname not in absent


def test_the_platform_qt_will_try():
    assert qt_platform({}) == "xcb"
    assert qt_platform({"QT_QPA_PLATFORM": "offscreen"}) == "offscreen"
    assert qt_platform({"QT_QPA_PLATFORM": "xcb:nomitshm"}) == "xcb"
    assert qt_platform({"QT_QPA_PLATFORM": "wayland;xcb"}) == "wayland"
    assert qt_platform({"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"}) == "wayland"
    assert qt_platform({"XDG_SESSION_TYPE": "x11", "DISPLAY": ":0"}) == "xcb"


def test_missing_xcb_libraries_are_named_with_their_packages():
    missing = missing_libraries({}, without(FRESH_DEBIAN), "linux")
    assert missing == {
        "libxcb-cursor.so.0": "libxcb-cursor0",
        "libxcb-icccm.so.4": "libxcb-icccm4",
        "libxcb-keysyms.so.1": "libxcb-keysyms1",
    }
    hint = install_hint(missing)
    assert "\n" not in hint
    assert hint.endswith("sudo apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1")
    assert missing_libraries({}, without(set()), "linux") == {}


def test_only_what_the_platform_needs_is_checked():
    everything = set(GUI_LIBRARIES) | set(XCB_LIBRARIES)
    offscreen = missing_libraries({"QT_QPA_PLATFORM": "offscreen"}, without(everything), "linux")
    assert set(offscreen) == set(GUI_LIBRARIES)  # no X11 plugin: no xcb libraries
    assert missing_libraries({}, without(everything), "darwin") == {}
    assert missing_libraries({}, without(everything), "win32") == {}


def test_the_real_lookup_asks_the_dynamic_loader():
    assert library_present("libc.so.6")
    assert not library_present("libslidescan-no-such-library.so.7")


def test_slidescan_gui_says_which_packages_to_install(monkeypatch, capsys):
    started = []
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setattr(qt_libraries, "library_present", without(FRESH_DEBIAN))
    monkeypatch.setattr("slidescan.app.gui.app.main", lambda **kw: started.append(kw) or 0)
    code = main(["gui"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and not started
    assert len(err.splitlines()) == 1
    assert "libxcb-icccm.so.4" in err
    assert "sudo apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1" in err


def test_slidescan_gui_starts_when_nothing_is_missing(monkeypatch):
    started = []
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setattr(qt_libraries, "library_present", without(set()))
    monkeypatch.setattr("slidescan.app.gui.app.main", lambda **kw: started.append(kw) or 0)
    assert main(["gui"]) == 0 and len(started) == 1
