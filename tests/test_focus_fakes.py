"""A tiny fake `FocusDevice` for the focus-engine tests, and tests of the fake itself.

The specimen is a fixed texture blurred by a Gaussian of sigma = `blur_px_per_um` x |z - truth|
(plus sensor noise), so the best focus is known exactly. The drive has optional backlash: after
a downward move it sits `backlash_um` above the commanded z (the controller still reports the
commanded z, as an encoder-less drive does). A virtual clock advances per move and per snap.
Every commanded z is recorded, with whether the drive's last motion before each snap was upward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from scipy import ndimage

from slidescan.focus.protocol import FocusDevice, depth_of_field_um


@dataclass(frozen=True)
class FakeOptics:
    objective_name: str = "20x/0.75"
    na: float = 0.75
    immersion_n: float = 1.0
    magnification: float = 20.0
    pixel_size_um: float = 0.325
    wavelength_um: float = 0.55

    @property
    def depth_of_field_um(self) -> float:
        return depth_of_field_um(self.na, self.immersion_n, self.wavelength_um)


@dataclass
class FakeFrame:
    image: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def texture(size: int = 96, seed: int = 0) -> np.ndarray:
    """A band-limited random texture in [0.15, 0.85], like stained tissue at 20x."""
    rng = np.random.default_rng(seed)
    t = ndimage.gaussian_filter(rng.random((size, size)), 1.2)
    t = (t - t.min()) / (t.max() - t.min())
    return 0.15 + 0.7 * t


class FakeFocusDevice:
    def __init__(
        self,
        truth_um: float = 0.0,
        *,
        z_limits: tuple[float, float] = (-100.0, 100.0),
        z0: float = 0.0,
        blur_px_per_um: float = 2.0,
        backlash_um: float = 0.0,
        noise: float = 0.005,
        specimen: np.ndarray | None = None,
        optics: FakeOptics | None = None,
        seed: int = 1,
        move_s_per_um: float = 0.002,
        settle_s: float = 0.02,
        exposure_s: float = 0.01,
    ) -> None:
        self.truth_um = float(truth_um)
        self._limits = (float(z_limits[0]), float(z_limits[1]))
        self._z_cmd = float(z0)
        self._z_actual = float(z0)
        self._moved_up_last: bool | None = None
        self.blur_px_per_um = blur_px_per_um
        self.backlash_um = backlash_um
        self.noise = noise
        self.specimen = texture() if specimen is None else specimen
        self._optics = optics or FakeOptics()
        self._rng = np.random.default_rng(seed)
        self.move_s_per_um = move_s_per_um
        self.settle_s = settle_s
        self.exposure_s = exposure_s
        #: the play the drive states (None: it does not say, like an unknown real stage)
        self.z_play_um: float | None = None
        self.t = 0.0
        self.commanded: list[float] = []
        self.snapped_z: list[float] = []
        self.snapped_from_below: list[bool | None] = []
        self.violations: list[float] = []

    # -- FocusDevice -------------------------------------------------------------------------
    @property
    def optics(self) -> FakeOptics:
        return self._optics

    @property
    def z_limits(self) -> tuple[float, float]:
        return self._limits

    def move_z(self, z_um: float) -> None:
        z = float(z_um)
        self.commanded.append(z)
        lo, hi = self._limits
        if not (math.isfinite(z) and lo <= z <= hi):
            self.violations.append(z)
            raise ValueError(f"z {z} outside the limits {self._limits}")
        if z == self._z_cmd:
            return
        up = z > self._z_cmd
        self.t += self.settle_s + self.move_s_per_um * abs(z - self._z_cmd)
        self._z_cmd = z
        self._z_actual = z if up else z + self.backlash_um
        self._moved_up_last = up

    def get_z(self) -> float:
        return self._z_cmd

    def snap(self) -> FakeFrame:
        self.t += self.exposure_s
        defocus = self._z_actual - self.truth_um
        image = ndimage.gaussian_filter(self.specimen, self.blur_px_per_um * abs(defocus))
        image = image + self._rng.normal(0.0, self.noise, image.shape)
        self.snapped_z.append(self._z_cmd)
        self.snapped_from_below.append(self._moved_up_last)
        return FakeFrame(
            np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8),
            {"true_focus_um": self.truth_um, "defocus_um": defocus},
        )

    def now(self) -> float:
        return self.t


def test_fake_satisfies_the_protocol():
    assert isinstance(FakeFocusDevice(), FocusDevice)


def test_fake_backlash_shifts_the_image_after_a_downward_move():
    dev = FakeFocusDevice(truth_um=0.0, backlash_um=2.0, noise=0.0, z0=5.0)
    dev.move_z(0.0)  # downward: the drive stops 2 um short, i.e. defocused
    assert dev.snap().meta["defocus_um"] == pytest.approx(2.0)
    dev.move_z(-3.0)
    dev.move_z(0.0)  # upward: exact
    assert dev.snap().meta["defocus_um"] == pytest.approx(0.0)
    assert dev.snapped_from_below == [False, True]


def test_fake_refuses_targets_outside_its_limits():
    dev = FakeFocusDevice(z_limits=(-1.0, 1.0))
    with pytest.raises(ValueError):
        dev.move_z(2.0)
    assert dev.violations == [2.0]
