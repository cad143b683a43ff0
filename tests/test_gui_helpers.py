"""Small fakes shared by the GUI tests (imported by the test_gui_* modules; holds no tests)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from slidescan.hardware.base import CameraBase, Frame, Position, SoftLimits, StageBase


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


class BlurCamera(CameraBase):
    """Looks at a real tissue image through a Gaussian 'defocus' that grows with |z - focus|.

    The specimen is the tissue image tiled over the stage plane at `pixel_size_um`; the focal
    surface is a gentle plane, so a z-sweep finds a different focus per tile.
    """

    def __init__(self, stage: InstantStage, texture: np.ndarray, size: int, clock) -> None:
        super().__init__(exposure_ms=2.0, clock=clock, position_source=stage.position)
        self.stage = stage
        self.texture = texture
        self.size = size

    @staticmethod
    def focus_at(x: float, y: float) -> float:
        return 1.0 + 0.002 * x - 0.001 * y

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.size, self.size, 3)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    @property
    def pixel_size_um(self) -> float:
        return 0.325

    def _acquire(self):
        import cv2

        p = self.stage.position()
        h, w = self.texture.shape[:2]
        r0 = int(round(p.y / self.pixel_size_um)) - self.size // 2
        c0 = int(round(p.x / self.pixel_size_um)) - self.size // 2
        rows = np.arange(r0, r0 + self.size) % h
        cols = np.arange(c0, c0 + self.size) % w
        img = self.texture[rows][:, cols]
        truth = self.focus_at(p.x, p.y)
        sigma = 1.5 * abs(p.z - truth)
        if sigma > 0.05:
            img = cv2.GaussianBlur(img, (0, 0), sigma)
        self.clock.sleep(self.exposure_ms / 1000)
        return np.ascontiguousarray(img), {"true_focus_um": truth, "defocus_um": p.z - truth}

    def _stream_pause(self) -> None:
        import time

        time.sleep(0.02)


def fake_microscope(tissue_dir: Path, size: int = 64):
    """A fast Microscope (instant stage, blur camera on real tissue, virtual clock)."""
    import cv2

    from slidescan.hardware.clock import VirtualClock
    from slidescan.hardware.microscope import Microscope
    from slidescan.hardware.optics import OBJECTIVES, OpticalPath

    path = sorted(tissue_dir.glob("he_*.png"))[0]
    texture = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    clock = VirtualClock()
    stage = InstantStage(SoftLimits((-5000, 5000), (-5000, 5000), (-30, 30)))
    camera = BlurCamera(stage, texture, size, clock)
    return Microscope(stage, camera, OpticalPath(OBJECTIVES["20x/0.75"]), clock, name="fake")


#: Tissue pieces of `BlobTruth`'s slide: (centre x, centre y, radius) in stage um.
BLOBS = ((0.0, 0.0, 260.0), (900.0, 100.0, 200.0), (300.0, 800.0, 220.0))


class BlobTruth:
    """A simulated slide's truth for `fake_microscope`: three round pieces of stained tissue
    on glass (`BLOBS`), the blur camera's focal plane."""

    slide_bounds_um = (-400.0, -400.0, 1300.0, 1200.0)

    def true_focus_um(self, x_um: float, y_um: float) -> float:
        return BlurCamera.focus_at(x_um, y_um)

    def overview(self, pixel_size_um: float = 25.0, margin_um: float = 500.0) -> np.ndarray:
        x0, y0, x1, y1 = self.slide_bounds_um
        w = int(round((x1 - x0 + 2 * margin_um) / pixel_size_um))
        h = int(round((y1 - y0 + 2 * margin_um) / pixel_size_um))
        xs = x0 - margin_um + (np.arange(w) + 0.5) * pixel_size_um
        ys = y0 - margin_um + (np.arange(h) + 0.5) * pixel_size_um
        gx, gy = np.meshgrid(xs, ys)
        image = np.full((h, w, 3), (245, 245, 245), np.uint8)
        for cx, cy, r in BLOBS:
            inside = (gx - cx) ** 2 + (gy - cy) ** 2 <= r * r
            image[inside] = (150, 70, 160)
        return image


def fake_slide_microscope(tissue_dir: Path, size: int = 64):
    """`fake_microscope` that knows its slide (`BlobTruth`), as the simulator does."""
    from slidescan.hardware.microscope import Microscope

    class SlideMicroscope(Microscope):
        @property
        def truth(self):
            return BlobTruth()

    m = fake_microscope(tissue_dir, size)
    return SlideMicroscope(m.stage, m.camera, m.optics, m.clock, name="fake-slide")


def stop_scan_before_close(qtbot):
    """pytest-qt's `before_close_func` for a main window: a test that ends (or fails) with a
    scan running stops it and waits for the window to see it finish, so the window's close
    releases the hardware instead of asking "Scan running — stop and quit?"."""

    def stop(win) -> None:
        if win.runner is not None:
            win.runner.cancel()
            win.runner.wait(30)
            qtbot.waitUntil(lambda: win.runner is None, timeout=30_000)

    return stop
