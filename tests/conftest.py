"""Shared fixtures. Qt always runs offscreen; real tissue crops live in tests/data/tissue."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# One OpenMP/BLAS thread for torch and numpy in tests: on a 2-core machine that is also running
# the simulator's FFT threads, torch's spinning OpenMP pool made a 7 s training test take 230 s.
# Tests assert behaviour, never speed (speed is measured by `slidescan bench`).
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
#: Crops of the real tissue images in ../shared/data (tests/data/README.md): in the repository,
#: so the suite is whole in a clone with nothing beside it.
TISSUE_DIR = REPO / "tests" / "data" / "tissue"


@pytest.fixture(scope="session")
def tissue_dir() -> Path:
    """Folder of real in-focus tissue PNGs (crops kept in the repository)."""
    assert TISSUE_DIR.is_dir(), f"test fixtures missing: {TISSUE_DIR}"
    return TISSUE_DIR


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    """Config, logs and caches go to a temp folder, never the developer's home."""
    root = tmp_path_factory.getbasetemp() / "userdirs"
    for var, sub in (
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_STATE_HOME", "state"),
    ):
        monkeypatch.setenv(var, str(root / sub))
