"""The package layout DESIGN.md fixes: one namespace `slidescan`, every folder listed."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    roots = {folder: name for name, folder in cfg["package-dir"].items()}
    found = set()
    for folder, name in roots.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    assert found - listed == set(), "add these packages to pyproject.toml"


def test_namespace_imports():
    import slidescan.app
    import slidescan.focus
    import slidescan.hardware

    assert slidescan.hardware.Position(1, 2, 3).z == 3
    assert slidescan.focus.depth_of_field_um(0.75) > 0
    assert slidescan.app.__version__
