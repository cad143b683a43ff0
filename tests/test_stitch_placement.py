"""Global placement: all pairs at once, outliers removed, the stage where pairs say nothing."""

from __future__ import annotations

import numpy as np

from slidescan.app.stitch.accuracy import error_summary, position_errors
from slidescan.app.stitch.placement import REGISTERED, STAGE, pair_weight, place

ROWS, COLS, STEP = 5, 6, 230.0


def _grid(seed: int = 0):
    """True top-left positions of a ROWS x COLS grid with stage errors, the stage's reading
    (off by ~10 px), and every right/down neighbour pair with its measured shift (0.05 px
    noise) and a good NCC."""
    rng = np.random.default_rng(seed)
    planned = np.array([(c * STEP, r * STEP) for r in range(ROWS) for c in range(COLS)])
    true = planned + rng.normal(0, 6, planned.shape)
    stage = true + rng.normal(0, 10, planned.shape)
    pairs = []
    for r in range(ROWS):
        for c in range(COLS):
            k = r * COLS + c
            if c + 1 < COLS:
                pairs.append((k, k + 1))
            if r + 1 < ROWS:
                pairs.append((k, k + COLS))
    pairs = np.array(pairs)
    shifts = true[pairs[:, 1]] - true[pairs[:, 0]] + rng.normal(0, 0.05, (len(pairs), 2))
    ncc = np.full(len(pairs), 0.98)
    return true, stage, pairs, shifts, ncc


def test_places_a_grid_from_its_pairs():
    true, stage, pairs, shifts, ncc = _grid()
    result = place(len(true), pairs, shifts, ncc, stage, stage_sigma_px=15.0)
    assert result.used.all() and (result.source == REGISTERED).all()
    errors = error_summary(result.xy, true)
    assert errors["rms_error_px"] < 0.1 and errors["max_error_px"] < 0.2
    assert error_summary(stage, true)["rms_error_px"] > 5  # the stage alone is far off
    assert result.rms_pair_residual_px < 0.1


def test_a_planted_outlier_pair_is_removed_and_the_rest_kept():
    true, stage, pairs, shifts, ncc = _grid(1)
    bad = 17
    shifts[bad] += (7.0, -5.0)  # locked onto the wrong peak
    result = place(len(true), pairs, shifts, ncc, stage, stage_sigma_px=15.0)
    assert not result.used[bad]
    assert result.used.sum() == len(pairs) - 1
    assert result.pair_residual_px[bad] > 5
    assert position_errors(result.xy, true).max() < 0.2


def test_an_outlier_with_high_ncc_is_still_caught_by_its_neighbours():
    true, stage, pairs, shifts, ncc = _grid(2)
    ncc[:] = 0.9
    shifts[3] += (0.0, 3.0)
    ncc[3] = 0.999  # the wrong pair is the most confident one
    result = place(len(true), pairs, shifts, ncc, stage, stage_sigma_px=15.0)
    assert not result.used[3] and result.used.sum() == len(pairs) - 1
    assert position_errors(result.xy, true).max() < 0.3


def test_a_tile_with_no_pairs_falls_back_to_the_stage():
    true, stage, pairs, shifts, ncc = _grid(3)
    lonely = 8
    touching = (pairs == lonely).any(axis=1)
    shifts[touching] = np.nan  # refused: glass around it
    result = place(len(true), pairs, shifts, ncc, stage, stage_sigma_px=15.0)
    assert result.source[lonely] == STAGE and np.isnan(result.residual_px[lonely])
    others = np.arange(len(true)) != lonely
    assert (result.source[others] == REGISTERED).all()
    # placed exactly where the stage said, in the frame the stage anchors for the rest
    np.testing.assert_allclose(result.xy[lonely], stage[lonely], atol=1e-6)
    assert position_errors(result.xy[others], true[others]).max() < 0.2


def test_a_disconnected_group_keeps_its_shape_and_sits_at_the_stage():
    true, stage, pairs, shifts, ncc = _grid(4)
    group = {0, 1}  # two tiles joined to each other only
    cut = np.array([(i in group) != (j in group) for i, j in pairs])
    shifts[cut] = np.nan
    result = place(len(true), pairs, shifts, ncc, stage, stage_sigma_px=15.0)
    d_placed = result.xy[1] - result.xy[0]
    np.testing.assert_allclose(d_placed, true[1] - true[0], atol=0.2)
    # as a whole, the group sits where the stage put it on average
    np.testing.assert_allclose(result.xy[[0, 1]].mean(0), stage[[0, 1]].mean(0), atol=0.01)


def test_pair_weight_grows_with_ncc():
    w = pair_weight(np.array([0.5, 0.9, 0.99, 1.0]))
    assert (np.diff(w) > 0).all() and np.isfinite(w).all()
