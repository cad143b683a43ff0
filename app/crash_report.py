"""Crash reports: what to send when the program fails in a way nobody planned for.

`write_crash_report` writes one text file, ``crash-YYYYmmdd-HHMMSS.txt``, in the log folder
(platformdirs; Help > Open log folder): the traceback, the versions of the program, Python,
the platform and the libraries that were loaded, whether it runs from the installer's bundle,
the hardware profile in use (as TOML) and the end of the log. The caller tells the person
where the file is (app/gui/app.py: a dialog and a line on stderr).

No Qt and no heavy import here: a crash handler must not be the next thing to fail, so the
library versions are read from the modules already loaded, never by importing them.
"""

from __future__ import annotations

import datetime as dt
import platform
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

#: Libraries whose versions go into a report when they are loaded: module -> how to read it.
LIBRARIES = {
    "numpy": "__version__",
    "scipy": "__version__",
    "h5py": "__version__",
    "torch": "__version__",
    "cv2": "__version__",
    "pydantic": "VERSION",
    "tifffile": "__version__",
    "imagecodecs": "__version__",
    "skimage": "__version__",
    "pyqtgraph": "__version__",
    "PySide6": "__version__",
    "serial": "__version__",
    "pypylon": "__version__",
}
#: How many lines of the end of the log a report carries.
LOG_TAIL_LINES = 60


def versions(modules: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Program, Python, platform and loaded-library versions (nothing is imported)."""
    from slidescan.app import __version__

    modules = sys.modules if modules is None else modules
    out = {
        "slidescan": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "bundle": "yes (installer)" if getattr(sys, "frozen", False) else "no (pip)",
    }
    qt = modules.get("PySide6.QtCore")
    if qt is not None:
        out["Qt"] = str(getattr(qt, "qVersion", lambda: "?")())
    for name, attr in LIBRARIES.items():
        module = modules.get(name)
        if module is not None:
            out[name] = str(getattr(module, attr, "?"))
    return out


def profile_text(profile: Any) -> str:
    """The hardware profile as TOML (a pydantic model), else its repr; '' for none."""
    if profile is None:
        return ""
    try:
        import tomli_w

        data = profile.model_dump(mode="json", exclude_none=True)
        return tomli_w.dumps(data)
    except Exception:
        return repr(profile)


def log_tail(path: Path | None, lines: int = LOG_TAIL_LINES) -> str:
    if path is None or not path.is_file():
        return ""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def crash_text(
    kind: type[BaseException],
    exc: BaseException,
    tb: TracebackType | None,
    *,
    profile: Any = None,
    profile_name: str = "",
    log_path: Path | None = None,
    when: dt.datetime | None = None,
    modules: Mapping[str, Any] | None = None,
) -> str:
    when = when or dt.datetime.now()
    parts = [
        f"slidescan crash report, {when.isoformat(timespec='seconds')}",
        "",
        "== what happened",
        "".join(traceback.format_exception(kind, exc, tb)).rstrip(),
        "",
        "== versions",
        *(f"{k}: {v}" for k, v in versions(modules).items()),
        "",
        f"== hardware profile: {profile_name or 'none connected'}",
        profile_text(profile).rstrip() or "(none)",
    ]
    tail = log_tail(log_path)
    if tail:
        parts += ["", f"== the end of the log ({log_path})", tail.rstrip()]
    return "\n".join(parts) + "\n"


def write_crash_report(
    kind: type[BaseException],
    exc: BaseException,
    tb: TracebackType | None,
    *,
    folder: Path | None = None,
    profile: Any = None,
    profile_name: str = "",
    log_path: Path | None = None,
    when: dt.datetime | None = None,
) -> Path:
    """Write a crash report into `folder` (default: the log folder); returns its path."""
    if folder is None:
        import platformdirs

        folder = Path(platformdirs.user_log_dir("slidescan", appauthor=False))
    when = when or dt.datetime.now()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"crash-{when:%Y%m%d-%H%M%S}.txt"
    n = 1
    while path.exists():  # two in the same second: keep both
        n += 1
        path = folder / f"crash-{when:%Y%m%d-%H%M%S}-{n}.txt"
    text = crash_text(
        kind, exc, tb, profile=profile, profile_name=profile_name, log_path=log_path, when=when
    )
    path.write_text(text, encoding="utf-8")
    return path
