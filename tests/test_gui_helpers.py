"""Small fakes shared by the GUI tests (imported by the test_gui_* modules; holds no tests)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from slidescan.hardware.base import Frame, Position, SoftLimits, StageBase


class InstantStage(StageBase):
    """A stage that arrives at once and records every commanded target (um)."""

    can_home = True

    def __init__(self, limits: SoftLimits | None = None) -> None:
        super().__init__(limits=limits or SoftLimits((-1000, 1000), (-1000, 1000), (-50, 50)))
        self.pos = {"x": 0.0, "y": 0.0, "z": 0.0}
        self.commands: list[dict[str, float]] = []
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def _read_native(self) -> dict[str, float]:
        with self._lock:
            return dict(self.pos)

    def _move_native(self, targets: dict[str, float]) -> None:
        with self._lock:
            self.threads.add(threading.current_thread().name)
            self.commands.append(dict(targets))
            self.pos.update(targets)

    def _wait_native(self, timeout_s: float) -> None:
        pass

    def _stop_native(self) -> None:
        pass

    def home(self) -> None:
        self._move_native({"x": 0.0, "y": 0.0})


def tissue_frame(tissue_dir: Path, size: int = 256, position: Position | None = None) -> Frame:
    """A real tissue crop as a camera frame (RGB uint8)."""
    import cv2

    path = sorted(tissue_dir.glob("*.png"))[0]
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)[:size, :size]
    return Frame(
        image=np.ascontiguousarray(img),
        timestamp=0.0,
        exposure_ms=5.0,
        position=position or Position(100.0, 200.0, 0.0),
        pixel_size_um=0.5,
    )
