"""Layering rules from DESIGN.md, checked on the source: hardware and focus never import Qt,
hardware never imports focus, focus never imports hardware or app, and only app.gui imports Qt."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
QT = ("PySide6", "pyqtgraph", "shiboken6", "superqt", "qtpy")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _files(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def _offenders(files: list[Path], banned: tuple[str, ...]) -> list[str]:
    bad = []
    for f in files:
        for name in _imports(f):
            if any(name == b or name.startswith(b + ".") for b in banned):
                bad.append(f"{f.relative_to(REPO)} imports {name}")
    return bad


@pytest.mark.parametrize("folder", ["hardware", "focus"])
def test_no_qt_below_app(folder):
    assert _offenders(_files(folder), QT) == []


def test_app_core_has_no_qt():
    core = [f for f in _files("app") if "gui" not in f.relative_to(REPO).parts]
    assert _offenders(core, QT) == []


def test_hardware_does_not_import_focus_or_app():
    assert _offenders(_files("hardware"), ("slidescan.focus", "slidescan.app")) == []


def test_focus_does_not_import_hardware_or_app():
    assert _offenders(_files("focus"), ("slidescan.hardware", "slidescan.app")) == []
