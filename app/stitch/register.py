"""Registration of two neighbouring tiles in their overlap.

Given grey images a and b and the shift the stage expects (b's top-left minus a's, pixels),
with a search radius r from the stage's repeatability and play:

1. windows: the part of a that b could overlap for any shift within +/- r of the expected one,
   and the same-size part of b that a could overlap (full resolution, nothing else of the
   tiles is touched);
2. the normalised cross-correlation of the actual overlap at every integer shift of that box
   (`overlap_ncc.overlap_ncc_map`: one zero-padded FFT correlation normalised per shift by
   integral images); the best wins. This is where MIST evaluates the NCC of the few periodic
   alternatives of the top phase-correlation peaks; evaluating every shift the stage could
   have made costs the same three FFTs and cannot miss the true peak when phase correlation
   ranks it low, which it does on narrow overlap strips (measured on 10 % overlaps of
   256 px tiles: the true shift was not among the top four peaks in 8 of 118 pairs, and
   4 pairs registered wrong; with the full NCC box none did). Tiles of 768 px and more are
   searched at half (1536: a quarter) resolution and the best shift refined at full
   resolution by a hill climb of `cv2.matchTemplate` NCCs;
3. sub-pixel: per axis, a parabola through the NCC at the best shift and its two neighbours,
   all three over the same pixels of a (a narrow overlap that grows or shrinks by a column
   between them biases the vertex);
4. refusal: an overlap without texture (glass: the smoothed grey's standard deviation is below
   `min_texture` of its mean), NCC below `min_ncc`, or a best shift on the edge of the box
   (the true one may lie outside what the stage should have done) says nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from slidescan.app.stitch.overlap_ncc import overlap_ncc_map, parabola_vertex

NO_OVERLAP = "no overlap"
NO_TEXTURE = "no texture"
POOR_NCC = "poor correlation"
AT_LIMIT = "at the search limit"


@dataclass(frozen=True)
class RegistrationParams:
    #: Smoothed grey standard deviation / mean of the overlap below which it is glass.
    min_texture: float = 0.02
    #: NCC of the overlap at the chosen shift below which the pair is refused.
    min_ncc: float = 0.6
    #: The narrowest overlap (pixels, across the seam) a shift may leave.
    min_overlap_px: int = 4
    #: Tiles this large (smaller side, px) are searched at half resolution first (a quarter
    #: from twice this), then refined at full resolution: the search costs a quarter.
    coarse_above_px: int = 768


@dataclass(frozen=True)
class PairShift:
    """The registered shift of b relative to a (b's top-left minus a's, pixels): NaN when
    refused (`reason` says why)."""

    dx: float
    dy: float
    ncc: float
    texture: float
    overlap_px: int  # pixels in the overlap at the chosen shift
    reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason


def grey(image: np.ndarray) -> np.ndarray:
    """What registration looks at: the green channel of an RGB tile (the sharpest, and most of
    the luminance), the image itself when monochrome, as float32."""
    if image.ndim == 3:
        image = image[:, :, 1] if image.shape[2] >= 2 else image[:, :, 0]
    return np.asarray(image, np.float32)


def _box(d: int, r: int, size: int) -> tuple[int, int]:
    """The range of a's pixels (one axis) that b, shifted by d +/- r, can overlap."""
    return max(0, d - r), min(size, d + size + r)


def overlap_slices(
    shift: tuple[int, int], shape: tuple[int, int]
) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
    """(a's slices, b's slices) of the overlap when b's top-left sits at a's + shift
    (integer (dx, dy)); None when they do not overlap."""
    dx, dy = shift
    h, w = shape
    x0, x1 = max(0, dx), min(w, w + dx)
    y0, y1 = max(0, dy), min(h, h + dy)
    if x1 <= x0 or y1 <= y0:
        return None
    return (slice(y0, y1), slice(x0, x1)), (slice(y0 - dy, y1 - dy), slice(x0 - dx, x1 - dx))


def texture(region: np.ndarray) -> float:
    """Smoothed grey standard deviation over its mean: about 0.003 on glass (a 3 x 3 mean
    takes most of the noise away), 0.1 and more on tissue."""
    if region.size == 0:
        return 0.0
    region = np.asarray(region, np.float32)
    mean = float(region.mean())
    if mean <= 0:
        return 0.0
    smooth = cv2.blur(region, (3, 3), borderType=cv2.BORDER_REFLECT)
    return float(smooth.std()) / mean


def _coarse_factor(shape: tuple[int, int], above: int) -> int:
    """Decimation of the exhaustive search for large tiles: 1 below `above` px, then 2, 4."""
    side = min(shape)
    factor = 1
    while side >= above * factor:
        factor *= 2
    return factor


def _exhaustive(
    win_a: np.ndarray,
    win_b: np.ndarray,
    lo: tuple[int, int],
    hi: tuple[int, int],
    off: tuple[int, int],
    min_side: int,
    factor: int,
) -> tuple[tuple[int, int], float]:
    """The integer tile shift (x, y) in the box lo..hi whose overlap has the highest NCC, at
    resolution 1 / `factor` (window displacement s and tile shift t: t = s + off)."""
    if factor > 1:
        wh, ww = (n // factor * factor for n in win_a.shape)
        size = (ww // factor, wh // factor)
        win_a = cv2.resize(win_a[:wh, :ww], size, interpolation=cv2.INTER_AREA)
        win_b = cv2.resize(win_b[:wh, :ww], size, interpolation=cv2.INTER_AREA)
        min_side = max(2, min_side // factor)
    sy = (math.floor((lo[1] - off[1]) / factor), math.ceil((hi[1] - off[1]) / factor))
    sx = (math.floor((lo[0] - off[0]) / factor), math.ceil((hi[0] - off[0]) / factor))
    scores = overlap_ncc_map(win_a, win_b, sy, sx, min_side)
    iy, ix = (int(v) for v in np.unravel_index(int(np.argmax(scores)), scores.shape))
    t = ((sx[0] + ix) * factor + off[0], (sy[0] + iy) * factor + off[1])
    clipped = (min(max(t[0], lo[0]), hi[0]), min(max(t[1], lo[1]), hi[1]))
    return clipped, float(scores[iy, ix])


def _refine(
    a: np.ndarray,
    b: np.ndarray,
    start: tuple[int, int],
    reach: int,
    lo: tuple[int, int],
    hi: tuple[int, int],
    min_side: int,
) -> tuple[tuple[int, int], float]:
    """Full-resolution hill climb from `start` over shifts within `reach` px (each step one
    `cv2.matchTemplate` of a's overlap, less `reach` px on every side, against b), until the
    best is inside the neighbourhood or on the edge of the box lo..hi."""
    best, score = start, -1.0
    for _ in range(8):
        sl = overlap_slices(best, a.shape)
        if sl is None:
            return best, -1.0
        (ys, xs), (yb, xb) = sl
        core = a[ys.start + reach : ys.stop - reach, xs.start + reach : xs.stop - reach]
        if min(core.shape) < max(min_side, 2):
            return best, -1.0
        around = b[yb.start : yb.stop, xb.start : xb.stop]
        scores = cv2.matchTemplate(
            np.ascontiguousarray(around, np.float32),
            np.ascontiguousarray(core, np.float32),
            cv2.TM_CCOEFF_NORMED,
        )  # scores[i, j]: shift best - (j - reach, i - reach)
        shifts_x = best[0] - (np.arange(scores.shape[1]) - reach)
        shifts_y = best[1] - (np.arange(scores.shape[0]) - reach)
        inside = ((shifts_y >= lo[1]) & (shifts_y <= hi[1]))[:, None] & (
            (shifts_x >= lo[0]) & (shifts_x <= hi[0])
        )[None, :]
        masked = np.where(inside, scores, -np.inf)
        i, j = np.unravel_index(int(np.argmax(masked)), masked.shape)
        new = (int(shifts_x[j]), int(shifts_y[i]))
        score = float(masked[i, j])
        edge = i in (0, scores.shape[0] - 1) or j in (0, scores.shape[1] - 1)
        if new == best or not edge:
            return new, score
        best = new
    return best, score


def subpixel(a: np.ndarray, b: np.ndarray, best: tuple[int, int]) -> tuple[float, float]:
    """Fractional (fx, fy) to add to the integer shift `best`: per axis, the vertex of the
    parabola through the NCC at best - 1, best, best + 1, each over the SAME pixels of a (the
    overlap at `best` less one pixel on every side), so the overlap does not change size
    between the three (on a 4 px wide overlap that change alone biased the vertex by up to
    0.9 px). The nine NCCs of the 3 x 3 neighbourhood come from one `cv2.matchTemplate`."""
    sl = overlap_slices(best, a.shape)
    assert sl is not None
    (ys, xs), (yb, xb) = sl
    core = np.ascontiguousarray(
        a[ys.start + 1 : ys.stop - 1, xs.start + 1 : xs.stop - 1], np.float32
    )
    if min(core.shape) < 2:
        return 0.0, 0.0
    # b's pixels for shifts best + (-1..1): b moves the other way (a(u) ~ b(u - t)).
    around = np.ascontiguousarray(b[yb.start : yb.stop, xb.start : xb.stop], np.float32)
    scores = cv2.matchTemplate(around, core, cv2.TM_CCOEFF_NORMED)  # (3, 3)
    # scores[i, j] is b offset by (i - 1, j - 1) from the core, i.e. shift best - (j - 1).
    fx = parabola_vertex(scores[1, 2], scores[1, 1], scores[1, 0])
    fy = parabola_vertex(scores[2, 1], scores[1, 1], scores[0, 1])
    return fx, fy


def register_pair(
    a: np.ndarray,
    b: np.ndarray,
    expected: tuple[float, float],
    radius_px: float,
    params: RegistrationParams | None = None,
) -> PairShift:
    """The shift of grey tile b relative to grey tile a (same shape, any float dtype: the
    parts looked at are taken as float32), searched within `radius_px` (per axis) of
    `expected` (b's top-left minus a's, pixels)."""
    params = params or RegistrationParams()
    if a.shape != b.shape:
        raise ValueError(f"tiles differ in shape: {a.shape} vs {b.shape}")
    h, w = a.shape
    r = int(math.ceil(radius_px))
    ex, ey = int(round(expected[0])), int(round(expected[1]))
    ax0, ax1 = _box(ex, r, w)
    ay0, ay1 = _box(ey, r, h)
    bx0, bx1 = _box(-ex, r, w)
    by0, by1 = _box(-ey, r, h)
    ww, wh = min(ax1 - ax0, bx1 - bx0), min(ay1 - ay0, by1 - by0)
    if ww < params.min_overlap_px or wh < params.min_overlap_px:
        return PairShift(math.nan, math.nan, 0.0, 0.0, 0, NO_OVERLAP)
    win_a = np.asarray(a[ay0 : ay0 + wh, ax0 : ax0 + ww], np.float32)
    win_b = np.asarray(b[by0 : by0 + wh, bx0 : bx0 + ww], np.float32)
    # A cheap refusal before any FFT: a window without texture means glass in the overlap.
    if min(texture(win_a), texture(win_b)) < params.min_texture:
        return PairShift(math.nan, math.nan, 0.0, 0.0, 0, NO_TEXTURE)

    # Window displacement s (a_win(u) ~ b_win(u - s)) and tile shift t: t = s + a0 - b0.
    off = (ax0 - bx0, ay0 - by0)
    lo, hi = (ex - r, ey - r), (ex + r, ey + r)
    factor = _coarse_factor((h, w), params.coarse_above_px)
    best, score = _exhaustive(win_a, win_b, lo, hi, off, params.min_overlap_px, factor)
    if factor > 1 and score > -1.0:
        best, score = _refine(a, b, best, factor, lo, hi, params.min_overlap_px)
    if score <= -1.0:
        return PairShift(math.nan, math.nan, 0.0, 0.0, 0, NO_OVERLAP)
    sl = overlap_slices(best, a.shape)
    assert sl is not None
    tex = min(texture(a[sl[0]]), texture(b[sl[1]]))
    size = int(a[sl[0]].size)
    if tex < params.min_texture:
        return PairShift(math.nan, math.nan, score, tex, size, NO_TEXTURE)
    if score < params.min_ncc:
        return PairShift(math.nan, math.nan, score, tex, size, POOR_NCC)
    if r > 0 and (best[0] in (lo[0], hi[0]) or best[1] in (lo[1], hi[1])):
        return PairShift(math.nan, math.nan, score, tex, size, AT_LIMIT)
    fx, fy = subpixel(a, b, best)
    return PairShift(best[0] + fx, best[1] + fy, score, tex, size)
