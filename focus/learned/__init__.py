"""Learned autofocus methods.

`diffcnn`: the difference-image CNN of Dastidar & Ethirajan (Biomed. Opt. Express 11(1):480,
2020). Two frames a known distance apart in Z, on the same side of focus; a MobileNetV2 reads
their difference and regresses the distance to focus; one move and one final capture.

Importing this package is cheap: torch is only imported by the submodules that need it.
"""

from __future__ import annotations

__all__ = ["DiffCNNFocus"]


def __getattr__(name: str):  # lazy, so `import slidescan.focus.learned` does not pull torch
    if name == "DiffCNNFocus":
        from slidescan.focus.learned.diffcnn import DiffCNNFocus

        return DiffCNNFocus
    raise AttributeError(name)
