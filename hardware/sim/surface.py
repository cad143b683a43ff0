"""The focal surface: the focus-drive z at which the section's mid-plane is in focus, per
slide position.

z(x, y) = z0 + tilt + bow + roughness + folds, all seeded and deterministic:

* tilt: a plane, `tilt_um_per_mm` along x and y, zero at the centre of the tissue area;
* bow: a paraboloid `bow_um` higher at the centre than at the edge midpoints of the area;
* roughness: smooth value noise (`roughness_um` RMS, lateral `roughness_scale_um`), e.g. an
  uneven mounting medium or slide;
* folds: ridges where the tissue folded over itself, each a straight segment with a Gaussian
  cross profile (`fold_width_um` sigma) and a cosine taper along its length, raising focus by
  its height (a few um).

The renderer treats one camera field as flat at the mean of z over the field (a field is a
fraction of a millimetre, small against the surface's structure away from folds).
"""

from __future__ import annotations

import numpy as np

from slidescan.hardware.sim.config import SurfaceConfig
from slidescan.hardware.sim.noise import derive_seed, fbm_points


class FocalSurface:
    """Callable z(x, y) in um; accepts scalars or arrays (broadcast)."""

    def __init__(
        self, config: SurfaceConfig, bounds_um: tuple[float, float, float, float], seed: int
    ) -> None:
        self.config = config
        x0, y0, x1, y1 = bounds_um
        self.centre = ((x0 + x1) / 2.0, (y0 + y1) / 2.0)
        self.half = ((x1 - x0) / 2.0, (y1 - y0) / 2.0)
        self._rough_seed = derive_seed(seed, "surface", "roughness")
        rng = np.random.default_rng(derive_seed(seed, "surface", "folds"))
        n = config.folds
        self.folds = {
            "x": rng.uniform(x0, x1, n),
            "y": rng.uniform(y0, y1, n),
            "angle": rng.uniform(0.0, np.pi, n),
            "length": rng.uniform(*config.fold_length_um, n),
            "height": rng.uniform(*config.fold_height_um, n),
        }

    def __call__(self, x_um: np.ndarray | float, y_um: np.ndarray | float) -> np.ndarray:
        cfg = self.config
        x, y = np.broadcast_arrays(np.asarray(x_um, float), np.asarray(y_um, float))
        dx, dy = x - self.centre[0], y - self.centre[1]
        z = cfg.z0_um + (cfg.tilt_um_per_mm[0] * dx + cfg.tilt_um_per_mm[1] * dy) / 1000.0
        z = z + cfg.bow_um * (1.0 - (dx / self.half[0]) ** 2 - (dy / self.half[1]) ** 2)
        if cfg.roughness_um > 0:
            z = z + cfg.roughness_um * fbm_points(x, y, cfg.roughness_scale_um, self._rough_seed, 2)
        return z + self.fold_height(x, y)

    def fold_height(self, x_um: np.ndarray | float, y_um: np.ndarray | float) -> np.ndarray:
        """The folds' contribution alone (um)."""
        x, y = np.broadcast_arrays(np.asarray(x_um, float), np.asarray(y_um, float))
        out = np.zeros(x.shape)
        f = self.folds
        for fx, fy, ang, length, height in zip(
            f["x"], f["y"], f["angle"], f["length"], f["height"], strict=True
        ):
            along = (x - fx) * np.cos(ang) + (y - fy) * np.sin(ang)
            across = -(x - fx) * np.sin(ang) + (y - fy) * np.cos(ang)
            t = np.clip(np.abs(along) / (length / 2.0), 0.0, 1.0)
            taper = 0.5 * (1.0 + np.cos(np.pi * t))
            out += height * taper * np.exp(-0.5 * (across / self.config.fold_width_um) ** 2)
        return out

    def field_mean(self, x_um: float, y_um: float, width_um: float, height_um: float) -> float:
        """Mean of z over a field centred at (x, y), from a 9 x 9 grid of samples."""
        u = (np.arange(9) - 4) / 8.0
        gx, gy = np.meshgrid(x_um + u * width_um, y_um + u * height_um)
        return float(np.mean(self(gx, gy)))
