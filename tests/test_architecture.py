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


def test_the_engine_never_imports_the_offline_tools():
    """Training, evaluation and benchmarks live in app/tools (and app/gui/tools); the engine,
    the store, the CLI core and the application import none of them."""
    room = [f for f in _files("app") if "tools" in f.relative_to(REPO).parts]
    rest = [f for f in _files("app") if f not in room and "commands" not in f.parts]
    banned = ("slidescan.app.tools", "slidescan.app.gui.tools")
    assert _offenders(rest, banned) == []


def test_the_tools_never_import_the_cli():
    tools = [f for f in _files("app") if "tools" in f.relative_to(REPO).parts]
    assert tools and _offenders(tools, ("slidescan.app.commands", "slidescan.app.cli")) == []


def test_no_lazy_imports_slip_past_these_rules(tmp_path):
    """Imports inside functions count too (_imports walks the whole tree)."""
    path = tmp_path / "probe.py"
    path.write_text("def f():\n    import slidescan.app.tools.bench\n", encoding="utf-8")
    assert "slidescan.app.tools.bench" in _imports(path)
