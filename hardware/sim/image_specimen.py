"""A real in-focus RGB image as the simulated slide.

The image (PNG, TIFF, JPEG; 8 or 16 bit) is placed with its top-left corner at the lower
corner of the specimen bounds and tiled by mirroring (period twice the image size), so the
slide is unbounded and continuous across tile seams. Conversion, once at load:

1. resample the intensity to the simulator's pixel size (area averaging when shrinking, as a
   camera pixel integrates light; bicubic when enlarging);
2. optical density per RGB channel against the glass level (`image_white_level`, or the
   99.5th percentile of each channel), OD = -log10(I / I_glass), clipped to [0, 3].

Fields are then sampled at sub-pixel offsets by cubic convolution (Keys, a = -1/2), which
reproduces the pixels exactly when the field is pixel-aligned.

Depth. A photograph has no depth, so the OD is split between the slabs by smooth random
partition weights (a softmax over per-slab value noise about a nucleus across): every
structure lands mostly in one slab, different nuclei at different depths, and the slabs add
up exactly to the image's OD, so a render in focus is the image (blurred once more by the
in-focus PSF). The image should therefore be sharper than the simulated optics resolve.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import tifffile

from slidescan.hardware.sim.config import SpecimenConfig
from slidescan.hardware.sim.noise import derive_seed, smoothstep, value_noise
from slidescan.hardware.sim.specimen import Specimen
from slidescan.hardware.sim.stains import od_from_rgb

#: Lateral scale of the slab partition (um) and its sharpness.
PARTITION_SCALE_UM = 6.0
PARTITION_SHARPNESS = 2.5


def load_rgb(path: Path) -> np.ndarray:
    """An RGB image (H, W, 3) as float32 in its native scale; clear errors for bad files."""
    if not path.is_file():
        raise FileNotFoundError(f"specimen image not found: {path}")
    if path.suffix.lower() in (".tif", ".tiff"):
        img = tifffile.imread(path)
    else:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError(f"cannot read specimen image {path}")
        if img.ndim == 3:
            img = img[..., 2::-1] if img.shape[2] >= 3 else img
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] < 3:
        raise ValueError(f"specimen image {path} must be RGB or grey, got shape {img.shape}")
    return np.ascontiguousarray(img[..., :3]).astype(np.float32)


def _keys_weights(t: np.ndarray) -> np.ndarray:
    """Cubic convolution weights (a = -1/2) for offsets -1, 0, 1, 2 at fractions t."""
    t2, t3 = t * t, t * t * t
    return np.stack(
        [
            -0.5 * t3 + t2 - 0.5 * t,
            1.5 * t3 - 2.5 * t2 + 1.0,
            -1.5 * t3 + 2.0 * t2 + 0.5 * t,
            0.5 * t3 - 0.5 * t2,
        ]
    ).astype(np.float32)


def _mirror(i: np.ndarray, n: int) -> np.ndarray:
    """Indices folded into [0, n) with period 2n (edge pixels repeated at the seams)."""
    m = np.mod(i, 2 * n)
    return np.where(m >= n, 2 * n - 1 - m, m)


class ImageSpecimen(Specimen):
    """A real image as the specimen; see the module docstring."""

    def __init__(self, config: SpecimenConfig, seed: int, pixel_size_um: float) -> None:
        super().__init__(config.layers, config.thickness_um, config.bounds_um)
        assert config.image_path is not None and config.image_pixel_size_um is not None
        self.config = config
        self.pixel_um = float(pixel_size_um)
        rgb = load_rgb(Path(config.image_path))
        scale = config.image_pixel_size_um / self.pixel_um
        h = max(4, round(rgb.shape[0] * scale))
        w = max(4, round(rgb.shape[1] * scale))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        resized = cv2.resize(rgb, (w, h), interpolation=interp)
        if config.image_white_level is not None:
            white = np.asarray(config.image_white_level, np.float32)
        else:
            white = np.percentile(rgb.reshape(-1, 3), 99.5, axis=0).astype(np.float32)
        self.white_level = white
        self.od = np.clip(od_from_rgb(np.maximum(resized, 0), white), 0.0, 3.0)  # (h, w, 3)
        self._seeds = [derive_seed(seed, "image-partition", k) for k in range(self.n_layers)]
        self._mask_seed = derive_seed(seed, "image-mask")

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.od.shape[0], self.od.shape[1]

    def _taps(self, coords_um: np.ndarray, origin_um: float, n: int):
        u = (np.asarray(coords_um, np.float64) - origin_um) / self.pixel_um
        iu = np.floor(u)
        w = _keys_weights(u - iu)
        base = iu.astype(np.int64)
        idx = _mirror(base[None, :] - 1 + np.arange(4)[:, None], n)
        return idx, w

    def total_od(self, xs_um: np.ndarray, ys_um: np.ndarray) -> np.ndarray:
        """The image's RGB OD sampled on the grid -> (3, H, W) float32, >= 0."""
        x0, y0 = self.bounds_um[0], self.bounds_um[1]
        hs, ws = self.image_shape
        ix, wx = self._taps(xs_um, x0, ws)
        iy, wy = self._taps(ys_um, y0, hs)
        rows = np.unique(iy)
        lookup = np.searchsorted(rows, iy)
        src = self.od[rows]  # (r, ws, 3)
        cols = wx[0][None, :, None] * src[:, ix[0], :]
        for k in range(1, 4):
            cols += wx[k][None, :, None] * src[:, ix[k], :]
        out = wy[0][:, None, None] * cols[lookup[0]]
        for k in range(1, 4):
            out += wy[k][:, None, None] * cols[lookup[k]]
        return np.maximum(out, 0.0).transpose(2, 0, 1).copy()

    def partition(self, xs_um: np.ndarray, ys_um: np.ndarray) -> np.ndarray:
        """Smooth weights (L, H, W) that sum to 1 at every pixel."""
        logits = np.stack(
            [value_noise(xs_um, ys_um, PARTITION_SCALE_UM, s) for s in self._seeds]
        ) * np.float32(PARTITION_SHARPNESS)
        logits -= logits.max(axis=0, keepdims=True)
        weights = np.exp(logits)
        weights /= weights.sum(axis=0, keepdims=True)
        return weights

    def od_layers(self, xs_um: np.ndarray, ys_um: np.ndarray) -> np.ndarray:
        total = self.total_od(xs_um, ys_um)
        if self.n_layers == 1:
            return total[None]
        return self.partition(xs_um, ys_um)[:, None, :, :] * total[None]

    def tissue_mask(self, xs_um: np.ndarray, ys_um: np.ndarray) -> np.ndarray:
        """Tissue where the image's OD, smoothed over ~10 um, exceeds 0.06."""
        od = self.total_od(xs_um, ys_um).sum(axis=0)
        dx = float(xs_um[1] - xs_um[0]) if len(xs_um) > 1 else self.pixel_um
        sigma = max(0.5, 5.0 / dx)
        smooth = cv2.GaussianBlur(od, (0, 0), sigma)
        return smoothstep(0.04, 0.08, smooth).astype(np.float32)

    def overview_od(self, xs_um: np.ndarray, ys_um: np.ndarray) -> np.ndarray:
        return self.total_od(xs_um, ys_um)
