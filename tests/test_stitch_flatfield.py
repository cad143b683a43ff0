"""Flat-field and white balance estimated from tiles of real tissue under a known vignetting."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from slidescan.app.stitch.flatfield import (
    GLASS,
    TISSUE,
    FlatField,
    IlluminationEstimator,
    IlluminationParams,
    WhiteBalance,
)
from slidescan.hardware.sim.camera import SensorModel

SHAPE = (96, 128)
GLASS_LEVEL = 215.0


def _transmission(tissue_dir, pattern: str = "*.png") -> list[np.ndarray]:
    """The real tissue crops as transmission (1 = their brightest glass), RGB."""
    out = []
    for path in sorted(tissue_dir.glob(pattern)):
        rgb = cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float64)
        white = np.percentile(rgb.reshape(-1, 3), 99.9, axis=0)
        out.append(np.clip(rgb / white, 0, 1))
    return out


def _tiles(tissue_dir, vignette, n=60, glass=True, lamp=(1.0, 1.0, 1.0), seed=0):
    """Tiles cut from the crops at random places, some with a glass region (tissue edge or
    hole), times the vignetting and a lamp colour, with shot-like noise, as uint8. Without
    glass: from the H&E crop only (the Ki67 crops show some glass of their own)."""
    rng = np.random.default_rng(seed)
    sources = _transmission(tissue_dir, "*.png" if glass else "he_*.png")
    h, w = SHAPE
    tiles = []
    for k in range(n):
        src = sources[k % len(sources)]
        y = rng.integers(0, src.shape[0] - h)
        x = rng.integers(0, src.shape[1] - w)
        t = src[y : y + h, x : x + w].copy()
        if glass and k % 3 == 0:  # a glass region somewhere: a slanted edge
            yy, xx = np.mgrid[0:h, 0:w]
            a = rng.uniform(0, 2 * np.pi)
            edge = np.cos(a) * (xx - w / 2) + np.sin(a) * (yy - h / 2) > rng.uniform(-30, 30)
            t[edge] = 1.0
        e = t * vignette[:, :, None] * np.asarray(lamp) * GLASS_LEVEL
        e = e + rng.normal(0, 1.0, e.shape) * np.sqrt(e / 15.0)
        tiles.append(np.clip(np.rint(e), 0, 255).astype(np.uint8))
    return tiles


def _relative_error(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    truth = truth / truth.mean()
    return estimate / truth[:, :, None] - 1.0


@pytest.mark.parametrize("loss", [0.08, 0.3])
def test_flatfield_close_to_a_known_vignetting(tissue_dir, loss):
    vignette = SensorModel._vignette(*SHAPE, loss)
    est = IlluminationEstimator((*SHAPE, 3), np.uint8, IlluminationParams())
    for tile in _tiles(tissue_dir, vignette):
        est.add(tile)
    flat, white = est.estimate()
    assert flat.source == GLASS
    err = _relative_error(flat.image(), vignette)
    assert np.sqrt(np.mean(err**2)) < 0.005 and np.abs(err).max() < 0.02, (
        np.sqrt(np.mean(err**2)),
        np.abs(err).max(),
    )
    # glass, corrected, is white: every channel at the same level
    np.testing.assert_allclose(white.white, GLASS_LEVEL * vignette.mean(), rtol=0.01)
    assert white.source == GLASS


def test_flatfield_without_glass_falls_back_to_the_tissue(tissue_dir):
    vignette = SensorModel._vignette(*SHAPE, 0.3)
    est = IlluminationEstimator((*SHAPE, 3), np.uint8, IlluminationParams())
    for tile in _tiles(tissue_dir, vignette, n=90, glass=False):
        est.add(tile)
    flat, _ = est.estimate()
    assert flat.source == TISSUE
    err = _relative_error(flat.image(), vignette)
    # the tissue varies from tile to tile: coarser, but the 30 % fall-off is gone
    assert np.sqrt(np.mean(err**2)) < 0.03, np.sqrt(np.mean(err**2))
    raw = _relative_error(np.ones_like(flat.image()), vignette)
    assert np.sqrt(np.mean(err**2)) < 0.3 * np.sqrt(np.mean(raw**2))


def test_white_balance_neutralises_a_coloured_lamp(tissue_dir):
    vignette = SensorModel._vignette(*SHAPE, 0.1)
    lamp = (1.0, 0.88, 0.7)  # a warm lamp, camera not white-balanced
    est = IlluminationEstimator((*SHAPE, 3), np.uint8, IlluminationParams(glass_saturation=0.4))
    for tile in _tiles(tissue_dir, vignette, lamp=lamp):
        est.add(tile)
    flat, white = est.estimate()
    glass = GLASS_LEVEL * vignette.mean() * np.asarray(lamp)
    np.testing.assert_allclose(white.white, glass, rtol=0.01)
    np.testing.assert_allclose(glass * white.gains, 255.0, rtol=0.01)


def test_models_round_trip_through_json():
    flat = FlatField((8, 10), 2, np.arange(18, dtype=float).reshape(3, 6) * 1e-3, GLASS)
    again = FlatField.from_json(flat.to_json())
    np.testing.assert_allclose(again.image(), flat.image(), rtol=1e-6)
    wb = WhiteBalance((200.0, 190.0, 180.0), 255.0, GLASS)
    assert WhiteBalance.from_json(wb.to_json()) == wb
