"""Slides that are not a scan: an image in memory (`ArraySlide`), and a procedural slide of any
size that is never held whole (`PatternSlide`), for tests and export benchmarks. Both are
`MosaicSource`s: regions outside the image read as glass."""

from __future__ import annotations

import math

import cv2
import numpy as np

from slidescan.app.export.pyramid import background
from slidescan.app.stitch.source import SlideInfo


class ArraySlide:
    """An (H, W[, C]) array served as a slide."""

    def __init__(self, image: np.ndarray, info: SlideInfo | None = None) -> None:
        self.image = np.asarray(image)
        self._info = info or SlideInfo(pixel_size_um=1.0)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.image.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.image.dtype

    @property
    def info(self) -> SlideInfo:
        return self._info

    def read(self, y0: int, x0: int, height: int, width: int) -> np.ndarray:
        out = np.full((height, width, *self.image.shape[2:]), background(self.dtype), self.dtype)
        h, w = self.image.shape[:2]
        ya, yb = max(y0, 0), min(y0 + height, h)
        xa, xb = max(x0, 0), min(x0 + width, w)
        if ya < yb and xa < xb:
            out[ya - y0 : yb - y0, xa - x0 : xb - x0] = self.image[ya:yb, xa:xb]
        return out


class PatternSlide:
    """A tissue-like RGB uint8 slide of any size, made region by region and never held whole.

    A seeded `period` x `period` texture (stroma with nuclei, camera noise) repeats across the
    slide; a smooth field of the stage position cuts it into tissue and glass (with glass
    noise), so that tiles compress like a real slide's, some full, some empty. The same region
    always reads the same pixels.
    """

    def __init__(
        self,
        height: int,
        width: int,
        info: SlideInfo | None = None,
        seed: int = 0,
        period: int = 1024,
    ) -> None:
        self._shape = (int(height), int(width), 3)
        self._info = info or SlideInfo(pixel_size_um=0.325, objective="20x/0.75")
        self._texture = _tissue_texture(period, seed)
        self._glass = _glass_texture(period, seed + 1)
        self.period = period

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    @property
    def info(self) -> SlideInfo:
        return self._info

    def read(self, y0: int, x0: int, height: int, width: int) -> np.ndarray:
        ys = np.arange(y0, y0 + height)
        xs = np.arange(x0, x0 + width)
        out = _wrapped(self._texture, ys, xs)
        glass = ~self._tissue_mask(ys, xs)
        if glass.any():
            np.copyto(out, _wrapped(self._glass, ys, xs), where=glass[:, :, None])
        h, w = self._shape[:2]
        out[(ys < 0) | (ys >= h)] = 255
        out[:, (xs < 0) | (xs >= w)] = 255
        return out

    @staticmethod
    def _tissue_mask(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Tissue where a smooth separable field of the position is high (about 60 % of the
        area, in islands a few thousand pixels across), decided per 8 x 8 block."""
        qy, qx = ys // 8, xs // 8
        by, bx = np.arange(qy[0], qy[-1] + 1), np.arange(qx[0], qx[-1] + 1)
        ay, ax = 2 * math.pi * by * 8 / 5300.0, 2 * math.pi * bx * 8 / 7000.0
        cy, cx = 2 * math.pi * by * 8 / 3100.0, 2 * math.pi * bx * 8 / 3100.0
        field = np.outer(np.cos(ay), np.sin(ax)) + 0.6 * (
            np.outer(np.cos(cy), np.sin(cx)) + np.outer(np.sin(cy), np.cos(cx))
        )
        return (field > -0.35)[np.ix_(qy - qy[0], qx - qx[0])]


def _wrapped(texture: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """texture[ys % p, xs % p] for consecutive ys and xs: at most four slices copied when the
    region is no larger than the texture."""
    p = texture.shape[0]
    if ys.size > p or xs.size > p:
        return texture[np.ix_(ys % p, xs % p)]
    out = np.empty((ys.size, xs.size, texture.shape[2]), texture.dtype)
    for rows, src_rows in _runs(int(ys[0]), ys.size, p):
        for cols, src_cols in _runs(int(xs[0]), xs.size, p):
            out[rows, cols] = texture[src_rows, src_cols]
    return out


def _runs(start: int, n: int, p: int) -> list[tuple[slice, slice]]:
    """(destination, source) slices that cover start..start+n-1 modulo p (n <= p)."""
    a = start % p
    first = min(n, p - a)
    runs = [(slice(0, first), slice(a, a + first))]
    if first < n:
        runs.append((slice(first, n), slice(0, n - first)))
    return runs


def _tissue_texture(size: int, seed: int) -> np.ndarray:
    """Pink stroma with purple nuclei, blurred a little, plus camera noise."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, (size, size)).astype(np.float32)
    m = 32  # > 5 sigma: the blur wraps around, so the texture tiles seamlessly
    base = cv2.GaussianBlur(np.pad(base, m, mode="wrap"), (0, 0), 6)[m:-m, m:-m]
    base /= base.std() + 1e-6
    img = np.empty((size, size, 3), np.float32)
    for c, (mean, amp) in enumerate(((226, 14), (170, 22), (205, 12))):
        img[:, :, c] = mean + amp * base
    nuclei = np.zeros((size, size), np.uint8)
    for _ in range(size * size // 900):
        y, x = rng.integers(0, size, 2)
        axes = (int(rng.integers(3, 8)), int(rng.integers(3, 7)))
        cv2.ellipse(nuclei, (int(x), int(y)), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    nuc = cv2.GaussianBlur(nuclei.astype(np.float32) / 255, (0, 0), 1.2)[:, :, None]
    img = img * (1 - nuc) + np.array([95, 60, 150], np.float32) * nuc
    img += rng.normal(0, 3, img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _glass_texture(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(244, 2, (size, size, 3)) + 0.5, 0, 255).astype(np.uint8)
