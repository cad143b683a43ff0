"""Persistent GUI settings (window layout, last profile, last scan settings) via QSettings.

The file is `gui.ini` in the platform's config folder for slidescan (platformdirs), next to
the hardware profiles; tests isolate it through XDG_CONFIG_HOME.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import platformdirs
from PySide6 import QtCore


def settings_path() -> Path:
    return Path(platformdirs.user_config_dir("slidescan", appauthor=False)) / "gui.ini"


def gui_settings(path: str | Path | None = None) -> QtCore.QSettings:
    p = Path(path) if path is not None else settings_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    return QtCore.QSettings(str(p), QtCore.QSettings.Format.IniFormat)


def read_json(settings: QtCore.QSettings, key: str, default: Any = None) -> Any:
    text = settings.value(key, "")
    if not text:
        return default
    try:
        return json.loads(str(text))
    except ValueError:
        return default


def write_json(settings: QtCore.QSettings, key: str, value: Any) -> None:
    settings.setValue(key, json.dumps(value))
