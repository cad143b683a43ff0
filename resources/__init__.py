"""Shipped data: model weights with model cards (models/), hardware profiles (profiles/), icons."""

from importlib.resources import files
from pathlib import Path


def resource_path(*parts: str) -> Path:
    """Path of a shipped resource file, e.g. resource_path('profiles', 'simulator.toml')."""
    return Path(str(files(__name__).joinpath(*parts)))
