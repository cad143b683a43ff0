"""Flat-field (vignetting, uneven illumination) and white balance, estimated from the tiles.

Brightfield tiles are the illumination F(x, y) times the specimen's transmission, and bare
glass transmits everything: wherever a tile shows glass, it shows F itself (times the lamp's
colour). So:

1. every tile (a sample of at most `max_tiles`, spread over the scan) is reduced to a coarse
   grid of block means per channel (`grid` x `grid` blocks) and each block's texture (relative
   standard deviation of its green channel);
2. a block is glass where it is smooth (relative std < `glass_texture`), colourless (HSV
   saturation below 0.08, the threshold of the scan's tissue detection in app/tissue.py:
   stain is coloured), pale (OD against the brightest colourless block below `glass_od`, room
   for a strong vignetting), not saturated, and within
   `glass_band` of the brightest such block seen at that position in any tile; F at that
   block is the median of its glass blocks;
3. log F is fitted, per channel, by a smooth polynomial of degree `degree` in the tile's
   normalised coordinates (weighted by how many glass blocks each position had, refitted
   without positions that disagree by more than `outlier_log`), and scaled to mean 1. A
   degree-4 log-polynomial fits a cos^4 vignette to 1e-6;
4. where too little glass was seen (`min_coverage` of the positions), the estimate falls back
   to the median over all tiles of each block's log brightness, tissue included (in the
   manner of BaSiC's smooth flat-field, without its sparse low-rank split): it works on any
   scan with enough tiles, less precisely;
5. white balance: the median colour of the glass blocks after flat-field correction is the
   white; gains bring it to `white_target` (full scale by default: glass shows as the
   background, white). Without glass the 99.5th percentile of the corrected blocks stands in.

The model is a handful of coefficients, so it travels in the stitch run's info (and is also
written out at full resolution into /stitch/flatfields).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

GLASS, TISSUE, NONE = "glass", "tissue", "none"
PERCENTILE = "percentile"


def _design(shape: tuple[int, int], degree: int, grid: tuple[int, int] | None = None):
    """Polynomial terms x^i y^j (i + j <= degree) at pixel (or block) centres, x, y in
    [-1, 1] across the tile: (n_points, n_terms)."""
    h, w = shape
    gh, gw = grid or (h, w)
    y = (np.arange(gh) + 0.5) / gh * 2.0 - 1.0
    x = (np.arange(gw) + 0.5) / gw * 2.0 - 1.0
    yy, xx = np.meshgrid(y, x, indexing="ij")
    terms = [xx**i * yy**j for i in range(degree + 1) for j in range(degree + 1 - i)]
    return np.stack([t.ravel() for t in terms], axis=1)


@dataclass(frozen=True)
class FlatField:
    """log F = polynomial (per channel) over the tile; F has mean 1 over the tile."""

    shape: tuple[int, int]
    degree: int
    coefficients: np.ndarray  # (channels, terms)
    source: str  # GLASS, TISSUE or NONE (F = 1)

    @classmethod
    def flat(cls, shape: tuple[int, int], channels: int) -> FlatField:
        return cls(tuple(shape), 0, np.zeros((channels, 1)), NONE)  # type: ignore[arg-type]

    @property
    def channels(self) -> int:
        return int(self.coefficients.shape[0])

    def image(self) -> np.ndarray:
        """F at every pixel, (H, W, C) float32 (summed as outer products of the x and y
        powers: no (H * W, terms) design matrix)."""
        h, w = self.shape
        y = (np.arange(h) + 0.5) / h * 2.0 - 1.0
        x = (np.arange(w) + 0.5) / w * 2.0 - 1.0
        out = np.zeros((h, w, self.channels), np.float32)
        terms = [(i, j) for i in range(self.degree + 1) for j in range(self.degree + 1 - i)]
        for c in range(self.channels):
            log_f = np.zeros((h, w), np.float64)
            for k, (i, j) in enumerate(terms):
                log_f += self.coefficients[c, k] * np.outer(y**j, x**i)
            out[:, :, c] = np.exp(log_f)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "degree": self.degree,
            "coefficients": [[float(f"{v:.7g}") for v in row] for row in self.coefficients],
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FlatField:
        return cls(
            tuple(int(v) for v in data["shape"]),  # type: ignore[arg-type]
            int(data["degree"]),
            np.asarray(data["coefficients"], np.float64),
            str(data["source"]),
        )


@dataclass(frozen=True)
class WhiteBalance:
    """Per-channel white (the glass level after flat-field correction) and the level it is
    brought to."""

    white: tuple[float, ...]
    target: float
    source: str  # GLASS, PERCENTILE or NONE

    @property
    def gains(self) -> np.ndarray:
        return np.float64(self.target) / np.maximum(np.asarray(self.white, np.float64), 1e-9)

    def to_json(self) -> dict[str, Any]:
        return {
            "white": [round(float(v), 4) for v in self.white],
            "target": float(self.target),
            "source": self.source,
            "gains": [round(float(g), 6) for g in self.gains],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WhiteBalance:
        return cls(tuple(float(v) for v in data["white"]), float(data["target"]), data["source"])


@dataclass(frozen=True)
class IlluminationParams:
    grid: int = 32
    degree: int = 4
    max_tiles: int = 400
    glass_texture: float = 0.03
    #: Stained, not glass: HSV saturation above app/tissue.py's threshold, or an OD against
    #: the brightest colourless block above this (the vignetting may take up to 0.3 = 50 %).
    glass_od: float = 0.3
    glass_saturation: float = 0.08
    glass_band: float = 0.08
    min_coverage: float = 0.5
    outlier_log: float = 0.03


def full_scale(dtype: np.dtype) -> float:
    """White on the image's scale: the largest value of an integer dtype, 1.0 for floats."""
    dtype = np.dtype(dtype)
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0


class IlluminationEstimator:
    """Collects block statistics of tiles (`add`), then estimates F and the white balance."""

    def __init__(
        self, tile_shape: tuple[int, ...], dtype: np.dtype, params: IlluminationParams
    ) -> None:
        self.params = params
        self.shape = (int(tile_shape[0]), int(tile_shape[1]))
        self.channels = int(tile_shape[2]) if len(tile_shape) == 3 else 1
        self.dtype = np.dtype(dtype)
        g = params.grid
        self.grid = (min(g, max(1, self.shape[0] // 4)), min(g, max(1, self.shape[1] // 4)))
        self._means: list[np.ndarray] = []
        self._texture: list[np.ndarray] = []

    def add(self, image: np.ndarray) -> None:
        im = np.asarray(image, np.float32)
        if im.ndim == 2:
            im = im[:, :, None]
        gh, gw = self.grid
        means = cv2.resize(im, (gw, gh), interpolation=cv2.INTER_AREA).reshape(gh, gw, -1)
        green = im[:, :, 1] if im.shape[2] >= 2 else im[:, :, 0]
        m = cv2.resize(green, (gw, gh), interpolation=cv2.INTER_AREA)
        sq = cv2.resize(green * green, (gw, gh), interpolation=cv2.INTER_AREA)
        rel = np.sqrt(np.maximum(sq - m * m, 0.0)) / np.maximum(m, 1e-6)
        self._means.append(means)
        self._texture.append(rel.astype(np.float32))

    @property
    def n(self) -> int:
        return len(self._means)

    def estimate(self, white_target: float | None = None) -> tuple[FlatField, WhiteBalance]:
        target = full_scale(self.dtype) if white_target is None else float(white_target)
        if self.n == 0:
            return (
                FlatField.flat(self.shape, self.channels),
                WhiteBalance((target,) * self.channels, target, NONE),
            )
        p = self.params
        means = np.stack(self._means)  # (n, gh, gw, C)
        texture = np.stack(self._texture)  # (n, gh, gw)
        scale = full_scale(self.dtype)
        lit = means.max(axis=3) < 0.97 * scale  # saturated blocks say nothing
        green = means[..., 1] if self.channels >= 2 else means[..., 0]
        # Not tissue by app/tissue.py's rules: colourless (stain is coloured: HSV
        # saturation) and pale (mean OD below `glass_od` against the brightest colourless
        # block: room for the vignetting, which darkens glass at the corners).
        top = means.max(axis=3)
        saturation = (top - means.min(axis=3)) / np.maximum(top, 1e-6)
        colourless = (texture < p.glass_texture) & lit & (saturation < p.glass_saturation)
        bright = float(np.percentile(means[colourless], 99.0)) if colourless.any() else scale
        od = -np.log10(np.clip(means / bright, 1e-4, None)).mean(axis=3)
        smooth = colourless & (od < p.glass_od) & (green > 0)
        envelope = np.where(smooth, green, 0.0).max(axis=0)
        glass = smooth & (green >= (1.0 - p.glass_band) * envelope[None])
        count = glass.sum(axis=0)
        coverage = float((count > 0).mean())
        a = _design(self.shape, p.degree, self.grid)
        if coverage >= p.min_coverage:
            target_log = np.log(np.maximum(_masked_median(means, glass), 1e-6))
            weights = np.sqrt(np.minimum(count, 25)).astype(np.float64).ravel()
            source = GLASS
        else:
            target_log = np.median(np.log(np.maximum(means, 1e-6)), axis=0)
            weights = np.ones(a.shape[0])
            source = TISSUE
        coefficients = np.zeros((self.channels, a.shape[1]))
        for c in range(self.channels):
            coefficients[c] = _robust_fit(a, target_log[..., c].ravel(), weights, p.outlier_log)
        # Mean 1 over the tile (the constant term is the first column: x^0 y^0).
        full = _design(self.shape, p.degree, self.grid)
        for c in range(self.channels):
            coefficients[c, 0] -= np.log(np.mean(np.exp(full @ coefficients[c])))
        flat = FlatField(self.shape, p.degree, coefficients, source)

        f_blocks = np.exp(a @ coefficients.T).reshape(*self.grid, self.channels)
        corrected = means / f_blocks[None]
        if glass.sum() >= 10:
            white = tuple(float(np.median(corrected[glass][:, c])) for c in range(self.channels))
            wsource = GLASS
        else:
            flat_blocks = corrected.reshape(-1, self.channels)
            white = tuple(
                float(np.percentile(flat_blocks[:, c], 99.5)) for c in range(self.channels)
            )
            wsource = PERCENTILE
        return flat, WhiteBalance(white, target, wsource)


def _masked_median(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median over axis 0 of values (n, gh, gw, C) where mask (n, gh, gw); 0 where none."""
    masked = np.where(mask[..., None], values, np.nan)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out = np.nanmedian(masked, axis=0)
    return np.nan_to_num(out, nan=0.0)


def _robust_fit(a: np.ndarray, y: np.ndarray, w: np.ndarray, outlier: float) -> np.ndarray:
    """Weighted least squares of y ~ a @ coef, refitted twice without points off by more than
    max(outlier, 3 robust sigmas)."""
    keep = w > 0
    coef = np.zeros(a.shape[1])
    for _ in range(3):
        if keep.sum() < a.shape[1]:
            break
        sw = np.sqrt(w[keep])
        coef, *_ = np.linalg.lstsq(a[keep] * sw[:, None], y[keep] * sw, rcond=None)
        resid = np.abs(y - a @ coef)
        scale = 1.4826 * float(np.median(resid[keep]))
        new = (w > 0) & (resid <= max(outlier, 3.0 * scale))
        if np.array_equal(new, keep):
            break
        keep = new
    return coef
