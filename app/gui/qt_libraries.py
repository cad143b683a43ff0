"""Qt's system libraries on Linux, checked before Qt is imported.

PySide6's wheels bring Qt but not the system libraries Qt links against. Without them Qt fails
late and cryptically: `import PySide6.QtWidgets` raises about a missing libEGL, or creating the
QApplication prints "Could not load the Qt platform plugin xcb" and aborts. `missing_libraries`
names what is missing first, so `slidescan gui` can say which Debian/Ubuntu packages to install.

Imports no Qt (it runs before Qt is imported) and loads nothing Qt would not load anyway.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

#: What every Qt GUI needs (libQt6Gui and libQt6DBus link these): soname -> Debian package.
GUI_LIBRARIES = {
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libX11.so.6": "libx11-6",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
}

#: What the X11 platform plugin (libqxcb.so, libQt6XcbQpa.so.6 of Qt 6) links.
XCB_LIBRARIES = {
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
}

Lookup = Callable[[str], bool]


def qt_platform(environ: Mapping[str, str]) -> str:
    """The platform plugin Qt will try first on Linux: QT_QPA_PLATFORM's first entry, else
    wayland in a Wayland session, else xcb (X11)."""
    requested = environ.get("QT_QPA_PLATFORM", "").strip()
    if requested:
        return requested.split(";", 1)[0].split(":", 1)[0].strip()
    wayland = environ.get("XDG_SESSION_TYPE") == "wayland" and environ.get("WAYLAND_DISPLAY")
    return "wayland" if wayland else "xcb"


def _bundled_dir() -> Path | None:
    """PySide6's own Qt/lib folder (found without importing PySide6's Qt modules)."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "Qt" / "lib"


def library_present(soname: str) -> bool:
    """Whether the dynamic loader can load `soname` (or PySide6 bundles it)."""
    bundled = _bundled_dir()
    if bundled is not None and (bundled / soname).exists():
        return True
    try:
        ctypes.CDLL(soname, mode=os.RTLD_LAZY)
    except OSError:
        return False
    return True


def missing_libraries(
    environ: Mapping[str, str] | None = None,
    present: Lookup | None = None,
    platform: str = sys.platform,
) -> dict[str, str]:
    """Missing system libraries Qt needs here (soname -> Debian package); {} off Linux.
    `present` answers whether a library loads (default: `library_present`)."""
    if not platform.startswith("linux"):
        return {}
    env = os.environ if environ is None else environ
    present = present or library_present
    needed = dict(GUI_LIBRARIES)
    if qt_platform(env) == "xcb":
        needed.update(XCB_LIBRARIES)
    return {soname: pkg for soname, pkg in needed.items() if not present(soname)}


def install_hint(missing: Mapping[str, str]) -> str:
    """One line: what is missing and the apt command that installs it."""
    packages = " ".join(sorted(set(missing.values())))
    return (
        f"Qt cannot start: missing system libraries {', '.join(missing)}; "
        f"on Debian/Ubuntu install them with: sudo apt-get install {packages}"
    )
