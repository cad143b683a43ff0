"""File-name-safe names shared by the focus layer's files (weights, calibrations); torch-free."""

from __future__ import annotations

import re


def objective_slug(objective: str) -> str:
    """'20x/0.75' -> '20x_075' (file-name safe)."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", objective.replace("0.", "0")).strip("_").lower()
