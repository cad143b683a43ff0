"""Where the tissue is on a slide's overview, and the regions a scan must cover.

Per overview pixel: the optical density OD = -log10(I / glass) averaged over the channels, and
the HSV saturation (stained tissue is coloured even where it is pale), both smoothed a little.
The glass level is the bright mode of the image (its 99th percentile per channel), so exposure
does not matter. A pixel is tissue where OD exceeds a threshold chosen by Otsu's method on the
OD histogram, kept between `min_od` and `max_od` so an all-glass or all-tissue overview does
not pull it to noise, or where the saturation exceeds `saturation_threshold`. Nearby pieces
are joined by a morphological closing, specks smaller than `min_piece_um2` (dust, debris) are
removed and holes smaller than `max_hole_um2` filled (tears and lumens inside a section are
scanned anyway: tissue detection per tile skips what is really empty).
The regions to scan are the pieces grown by `margin_um` (tissue at a piece's edge must not
fall between tiles), as polygons in stage micrometres.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from slidescan.app.records import Overview


@dataclass(frozen=True)
class TissueMap:
    """Tissue on an overview: `mask` (h, w) bool on the overview's pixel grid, and the
    threshold used."""

    overview: Overview
    mask: np.ndarray
    od_threshold: float

    @property
    def tissue_area_mm2(self) -> float:
        p = self.overview.pixel_size_um
        return float(self.mask.sum()) * p * p / 1e6

    def regions(self, margin_um: float) -> list[list[tuple[float, float]]]:
        """The tissue pieces grown by at least `margin_um`, as polygons (lists of (x, y) stage
        um: the outline of each piece, its holes not cut out). The outline runs through the
        centres of the grown mask's boundary pixels, so the mask is grown by one pixel more
        than the margin: every tissue pixel lies wholly inside, with the margin around it."""
        p = self.overview.pixel_size_um
        k = int(np.ceil(max(margin_um, 0.0) / p)) + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
        padded = np.pad(self.mask.astype(np.uint8), k)  # room to grow past the image edge
        grown = cv2.dilate(padded, kernel)
        contours, _ = cv2.findContours(grown, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        polygons = []
        for c in contours:
            pts = c.reshape(-1, 2).astype(float) - k + 0.5  # pixel centres, unpadded
            if len(pts) < 3:  # a piece one pixel wide: the square around it
                (x, y) = pts[0]
                pts = np.array([[x - 0.5, y - 0.5], [x + 0.5, y - 0.5], [x + 0.5, y + 0.5],
                                [x - 0.5, y + 0.5]])  # fmt: skip
            xs = self.overview.x0_um + pts[:, 0] * p
            ys = self.overview.y0_um + pts[:, 1] * p
            polygons.append([(float(x), float(y)) for x, y in zip(xs, ys, strict=True)])
        return polygons


def optical_density(image: np.ndarray) -> np.ndarray:
    """Mean OD over the channels, against the image's own glass level ((h, w) float32)."""
    rgb = np.asarray(image, np.float32)
    if rgb.ndim == 2:
        rgb = rgb[:, :, None]
    glass = np.percentile(rgb.reshape(-1, rgb.shape[2]), 99, axis=0)
    rel = np.clip(rgb / np.maximum(glass, 1e-6), 1e-4, 1.0)
    return (-np.log10(rel)).mean(axis=2)


def saturation(image: np.ndarray) -> np.ndarray:
    rgb = np.asarray(image, np.float32)
    if rgb.ndim == 2:
        return np.zeros(rgb.shape, np.float32)
    mx, mn = rgb.max(axis=2), rgb.min(axis=2)
    return np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0).astype(np.float32)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a sample of values (maximising the between-class variance)."""
    v = np.asarray(values, np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return hi
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(edges[int(np.argmax(between[:-1])) + 1])


def detect_tissue(
    overview: Overview,
    *,
    min_od: float = 0.04,
    max_od: float = 0.3,
    saturation_threshold: float = 0.05,
    smooth_um: float = 30.0,
    close_um: float = 100.0,
    min_piece_um2: float = 0.05e6,
    max_hole_um2: float = 0.5e6,
) -> TissueMap:
    """The tissue on `overview` (see the module docstring). OD and saturation are smoothed
    over `smooth_um` first (camera noise on glass averages out, a textured section does not),
    and pieces closer than `close_um` are joined (a section's pale stroma between stained
    cells is tissue too)."""
    image = np.asarray(overview.image)
    p = overview.pixel_size_um
    sigma = smooth_um / p
    od = optical_density(image)
    sat = saturation(image)
    if sigma >= 0.3:
        od = cv2.GaussianBlur(od, (0, 0), sigma)
        sat = cv2.GaussianBlur(sat, (0, 0), sigma)
    threshold = float(np.clip(otsu_threshold(od), min_od, max_od))
    mask = ((od > threshold) | (sat > saturation_threshold)).astype(np.uint8)
    k = int(round(close_um / p))
    if k >= 1:
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
        mask = cv2.morphologyEx(np.pad(mask, k), cv2.MORPH_CLOSE, disk)[k:-k, k:-k]
    mask = mask.astype(bool)
    area = p * p
    mask = _remove_small(mask, min_piece_um2 / area)
    mask = ~_remove_small(~mask, max_hole_um2 / area, keep_border=True)
    return TissueMap(overview, mask, threshold)


def _remove_small(mask: np.ndarray, min_pixels: float, keep_border: bool = False) -> np.ndarray:
    """`mask` without its connected pieces smaller than `min_pixels` (with `keep_border`,
    pieces touching the image border are kept whatever their size: the glass around the
    section is not a hole)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_pixels
    if keep_border:
        h, w = mask.shape
        x, y = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
        bw, bh = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
        keep |= (x == 0) | (y == 0) | (x + bw == w) | (y + bh == h)
    keep[0] = False  # the background label
    return keep[labels]
