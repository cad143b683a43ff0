"""Registration of neighbouring tiles: sub-pixel shifts on real tissue, glass refused, the
periodic ambiguity of a narrow overlap resolved, the overlap NCC exact."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

from slidescan.app.stitch.overlap_ncc import ncc, overlap_ncc_map
from slidescan.app.stitch.register import (
    NO_TEXTURE,
    RegistrationParams,
    grey,
    overlap_slices,
    register_pair,
)

TILE = 192


def _tissue_grey(tissue_dir, name: str) -> np.ndarray:
    image = cv2.imread(str(tissue_dir / name), cv2.IMREAD_COLOR)[:, :, ::-1]
    return grey(image).astype(np.float64)


def _pair(big: np.ndarray, origin: tuple[int, int], shift: tuple[float, float], rng, noise=2.0):
    """Tile a at `origin` (row, col) of `big`, tile b where b's top-left is a's + shift
    (dx, dy), sub-pixel by a cubic-spline shift of the whole image; camera-like noise."""
    y, x = origin
    dx, dy = shift
    a = big[y : y + TILE, x : x + TILE]
    ix, iy = int(np.floor(dx)), int(np.floor(dy))
    moved = ndimage.shift(big, (-(dy - iy), -(dx - ix)), order=3, mode="nearest")
    b = moved[y + iy : y + iy + TILE, x + ix : x + ix + TILE]
    a = a + rng.normal(0, noise, a.shape)
    b = b + rng.normal(0, noise, b.shape)
    return a.astype(np.float32), b.astype(np.float32)


@pytest.mark.parametrize(
    ("name", "coarse_above"),
    [
        ("he_nanozoomer_0.227um.png", 768),
        ("ki67_nanozoomer_0.227um.png", 768),
        ("he_nanozoomer_0.227um.png", 64),  # searched at 1/4 resolution, then refined
    ],
)
def test_recovers_known_subpixel_shifts_on_real_tissue(tissue_dir, name, coarse_above):
    big = _tissue_grey(tissue_dir, name)
    rng = np.random.default_rng(3)
    errors = []
    for k in range(8):
        # horizontal and vertical neighbours, 10-20 % overlap, stage off by up to 6 px
        planned = 0.85 * TILE
        off = rng.uniform(-6, 6, 2)
        if k % 2 == 0:
            shift, expected = (planned + off[0], off[1]), (planned, 0.0)
        else:
            shift, expected = (off[0], planned + off[1]), (0.0, planned)
        a, b = _pair(big, (40, 40), shift, rng)
        params = RegistrationParams(coarse_above_px=coarse_above)
        result = register_pair(a, b, expected, radius_px=15, params=params)
        assert result.ok, result.reason
        assert result.ncc > 0.9
        errors.append((result.dx - shift[0], result.dy - shift[1]))
    errors = np.abs(np.asarray(errors))
    assert errors.max() < 0.1, errors  # measured about 0.03 px


def test_narrow_overlap_is_not_biased(tissue_dir):
    """An overlap 5 px wide: the sub-pixel fit compares the same pixels at every shift."""
    big = _tissue_grey(tissue_dir, "he_nanozoomer_0.227um.png")
    rng = np.random.default_rng(5)
    for frac in (0.2, 0.5, 0.8):
        shift = (TILE - 5 - frac, 1.3)
        a, b = _pair(big, (60, 20), shift, rng)
        result = register_pair(a, b, (TILE - 12, 0.0), radius_px=12)
        assert result.ok, result.reason
        assert abs(result.dx - shift[0]) < 0.2 and abs(result.dy - shift[1]) < 0.2, (
            result,
            shift,
        )


def test_refuses_a_glass_pair():
    rng = np.random.default_rng(0)
    glass = [(215 + rng.normal(0, 2, (TILE, TILE))).astype(np.float32) for _ in range(2)]
    result = register_pair(glass[0], glass[1], (0.85 * TILE, 0.0), radius_px=15)
    assert not result.ok and result.reason == NO_TEXTURE
    assert np.isnan(result.dx) and np.isnan(result.dy)


def test_refuses_tissue_against_glass_overlap(tissue_dir):
    """Tissue in the tiles but bare glass where they overlap: nothing to register."""
    big = _tissue_grey(tissue_dir, "he_nanozoomer_0.227um.png")
    rng = np.random.default_rng(1)
    a, b = _pair(big, (40, 40), (0.85 * TILE, 0.0), rng)
    a[:, 120:] = 215 + rng.normal(0, 2, a[:, 120:].shape)  # glass on a's right
    b[:, :60] = 215 + rng.normal(0, 2, b[:, :60].shape)  # and on b's left
    result = register_pair(a, b, (0.85 * TILE, 0.0), radius_px=15)
    assert not result.ok


def _naive_phase_correlation_shift(wa: np.ndarray, wb: np.ndarray) -> tuple[int, int]:
    """The textbook reading of a phase-correlation peak: the displacement (dy, dx) wrapped
    into [-N/2, N/2) along each axis."""
    fa, fb = np.fft.fft2(wa - wa.mean()), np.fft.fft2(wb - wb.mean())
    cross = fa * np.conj(fb)
    surface = np.real(np.fft.ifft2(cross / np.maximum(np.abs(cross), 1e-9)))
    py, px = np.unravel_index(int(np.argmax(surface)), surface.shape)
    h, w = surface.shape
    return (py - h if py >= h // 2 else py), (px - w if px >= w // 2 else px)


def test_periodic_ambiguity_is_resolved_by_the_overlap_ncc(tissue_dir):
    """A vertical neighbour 10 px left and 230.6 px below, searched with a wide radius (a stage
    that states nothing precise). Phase correlation over the whole tiles is periodic: its
    peak stands for (dx mod W, dy mod H), i.e. four shifts, three of them wrong, and the
    usual reading (wrapped into [-N/2, N/2)) gives b above a. Several alternatives are
    shifts within the search box that really overlap; the NCC of the actual overlap picks
    the true one."""
    big = _tissue_grey(tissue_dir, "he_nanozoomer_0.227um.png")
    rng = np.random.default_rng(2)
    tile = 256
    true = (-10.3, 230.6)
    y, x = 10, 20
    ix, iy = int(np.floor(true[0])), int(np.floor(true[1]))
    moved = ndimage.shift(big, (-(true[1] - iy), -(true[0] - ix)), order=3, mode="nearest")
    a = big[y : y + tile, x : x + tile] + rng.normal(0, 2, (tile, tile))
    b = moved[y + iy : y + iy + tile, x + ix : x + ix + tile] + rng.normal(0, 2, (tile, tile))
    a, b = a.astype(np.float32), b.astype(np.float32)

    dy, dx = _naive_phase_correlation_shift(a, b)
    assert (dx, dy) != (round(true[0]), round(true[1]))  # the usual reading is wrong
    radius = 260
    alternatives = [
        (px, py)
        for px in (dx % tile, dx % tile - tile)
        for py in (dy % tile, dy % tile - tile)
        if max(abs(px - 0), abs(py - 230)) <= radius and overlap_slices((px, py), a.shape)
    ]
    assert len(alternatives) >= 3  # real, overlapping candidates the stage cannot rule out

    result = register_pair(a, b, (0.0, 230.0), radius_px=radius)
    assert result.ok, result.reason
    assert abs(result.dx - true[0]) < 0.15 and abs(result.dy - true[1]) < 0.15


def test_overlap_ncc_map_is_the_ncc_of_the_actual_overlap():
    rng = np.random.default_rng(0)
    a = (100 + rng.normal(size=(50, 40)).cumsum(0).cumsum(1)).astype(np.float32)
    b = (np.roll(a, (3, -5), (0, 1)) + rng.normal(0, 1, a.shape)).astype(np.float32)
    scores = overlap_ncc_map(a, b, (-8, 8), (-12, 12), min_side=3)
    for iy, sy in enumerate(range(-8, 9)):
        for ix, sx in enumerate(range(-12, 13)):
            a_sl, b_sl = overlap_slices((sx, sy), a.shape)
            assert scores[iy, ix] == pytest.approx(ncc(a[a_sl], b[b_sl]), abs=1e-5)
    iy, ix = np.unravel_index(int(np.argmax(scores)), scores.shape)
    assert (iy - 8, ix - 12) == (-3, 5)  # b = a rolled by (3, -5): a(u) = b(u - s), s = (-3, 5)


def test_overlap_ncc_map_marks_too_narrow_overlaps():
    a = np.random.default_rng(1).normal(size=(20, 20)).astype(np.float32)
    scores = overlap_ncc_map(a, a, (0, 0), (15, 19), min_side=4)
    assert (scores[0, 2:] == -1).all() and (scores[0, :2] > -1).all()
