"""The classical focus engine on the optical simulator (tests may import hardware; focus may not).

Fast tests use a 256 x 256 camera; the 20-position accuracy benchmark at the default
1024 x 1024 frame is marked slow (run it with `pytest -m slow tests/test_focus_sim.py`).
"""

from __future__ import annotations

import numpy as np
import pytest

from slidescan.focus.drive import FocusDrive
from slidescan.focus.metrics import METRICS, get_metric
from slidescan.focus.protocol import FocusDevice, FocusHint
from slidescan.focus.registry import get_method
from slidescan.focus.surface import FocusPredictor, fit_surface, survey_points
from slidescan.hardware.sim import SimConfig, build_simulator

SMALL_CAMERA = {"width": 256, "height": 256}


def tissue_positions(sim, n: int, min_tissue: float = 0.6) -> np.ndarray:
    """`n` well-spread field centres whose field is at least `min_tissue` tissue."""
    x0, y0, x1, y1 = sim.slide_bounds_um
    fw, fh = sim.field_of_view_um
    cols, rows = int((x1 - x0) // fw), int((y1 - y0) // fh)
    k = 6  # mask samples per field side
    xs = x0 + (np.arange(cols * k) + 0.5) * fw / k
    ys = y0 + (np.arange(rows * k) + 0.5) * fh / k
    fraction = sim.tissue_mask(xs, ys).reshape(rows, k, cols, k).mean(axis=(1, 3))
    r, c = np.nonzero(fraction >= min_tissue)
    centres = np.column_stack([x0 + (c + 0.5) * fw, y0 + (r + 0.5) * fh])
    return survey_points(centres, n)


def measure(method, sim, positions, hint_range_um: float = 5.0, seed: int = 0) -> dict:
    """Focus at each position from a hint within +/- hint_range of the truth; error figures."""
    rng = np.random.default_rng(seed)
    errors, frames, hardware = [], [], []
    for x, y in positions:
        sim.move_xy(x, y)
        truth = sim.true_focus_um(x, y)
        hint = FocusHint(truth + rng.uniform(-hint_range_um, hint_range_um))
        r = method.focus(FocusDrive(sim), hint)
        assert r.ok, r.message
        errors.append(r.z_um - truth)
        frames.append(r.frames)
        hardware.append(r.hardware_s)
        lo, hi = sim.z_limits
        assert lo <= r.z_um <= hi
    e = np.abs(errors)
    return {
        "mae": float(e.mean()),
        "p95": float(np.percentile(e, 95)),
        "max": float(e.max()),
        "frames": float(np.mean(frames)),
        "hardware_s": float(np.mean(hardware)),
    }


@pytest.fixture(scope="module")
def small_sim():
    return build_simulator(SimConfig(objective="20x/0.75", seed=1, camera=SMALL_CAMERA))


def test_simulator_is_a_focus_device(small_sim):
    assert isinstance(small_sim, FocusDevice)


OFFSETS = np.array([-6.0, -4.0, -2.5, -1.5, -0.75, 0.0, 0.75, 1.5, 2.5, 4.0, 6.0])


@pytest.fixture(scope="module")
def sim_stack(small_sim):
    """Noise-free frames of one tissue field at OFFSETS um from its true focus."""
    x, y = tissue_positions(small_sim, 1)[0]
    truth = small_sim.true_focus_um(x, y)
    return np.stack([small_sim.render(x, y, truth + d, noise=False) for d in OFFSETS])


@pytest.mark.parametrize("name", sorted(METRICS))
def test_metrics_fall_with_defocus_on_a_simulated_stack(sim_stack, name):
    values = get_metric(name)(sim_stack)
    peak = int(np.argmax(values))
    # Truth is the section's OD-weighted centre (4 um thick). The gradient and variance
    # metrics peak there; the Laplacian and high-pass energy weight the finest detail, which
    # can be sharpest in one layer, so their peak may sit one sample (0.75 um) off it.
    tolerance = 0.0 if name in ("brenner", "tenengrad", "normalized_variance") else 0.75
    assert abs(OFFSETS[peak]) <= tolerance, values
    assert np.all(np.diff(values[: peak + 1]) > 0), values  # rises up to the peak
    assert np.all(np.diff(values[peak:]) < 0), values  # falls after it
    assert values[peak] > 10 * min(values[0], values[-1]) or name == "normalized_variance"


@pytest.mark.parametrize("method", ["zsweep", "brent"])
def test_classical_methods_are_accurate_on_the_simulator(small_sim, method):
    positions = tissue_positions(small_sim, 2)
    stats = measure(get_method(method), small_sim, positions, seed=2)
    assert stats["max"] < 0.2, stats


def test_zsweep_on_a_stage_with_backlash():
    """The low-cost stage has 3 um of Z backlash; the guard's approach from below removes it."""
    sim = build_simulator(
        SimConfig(objective="20x/0.75", seed=3, camera=SMALL_CAMERA, stage="lowcost")
    )
    assert sim.config.stage.z_backlash_um >= 3.0
    stats = measure(get_method("zsweep"), sim, tissue_positions(sim, 1), seed=4)
    assert stats["max"] < 0.25, stats


@pytest.mark.slow
def test_focus_map_from_survey_points_predicts_the_focal_surface(small_sim):
    """Survey 9 spread points with the z-sweep, fit a quadratic, compare with the truth."""
    sim = small_sim
    pts = tissue_positions(sim, 9)
    zs = []
    predictor = FocusPredictor()
    for x, y in pts:
        sim.move_xy(x, y)
        hint = predictor.predict(x, y)[0] if len(predictor) else sim.get_z()
        r = get_method("zsweep").focus(FocusDrive(sim), FocusHint(hint))
        zs.append(r.z_um)
        predictor.add(x, y, r.z_um, r.confidence)
    surface = fit_surface(pts, np.array(zs), kind="quadratic")
    check = tissue_positions(sim, 25)
    truth = sim.focal_surface_um(check[:, 0], check[:, 1])
    err = surface.predict(check[:, 0], check[:, 1]) - truth
    # Roughness (0.4 um RMS) and folds are not quadratic; the map still gets within ~a DOF.
    assert np.sqrt(np.mean(err**2)) < 1.0


@pytest.mark.slow
@pytest.mark.parametrize(("method", "mae_max"), [("zsweep", 0.2), ("brent", 0.2)])
def test_twenty_position_accuracy_at_20x(method, mae_max):
    """The benchmark of the task: default simulator at 20x/0.75, 20 tissue positions, hints
    within +/- 5 um. Measured by hand (1024 px frames, 3 um section): z-sweep MAE 0.005 um,
    p95 0.013, 22 frames; Brent MAE 0.009 um, p95 0.026, 15 frames."""
    sim = build_simulator(SimConfig(objective="20x/0.75", seed=0))
    stats = measure(get_method(method), sim, tissue_positions(sim, 20), seed=0)
    print(method, stats)
    assert stats["mae"] <= mae_max, stats
    assert stats["p95"] <= 2 * mae_max, stats
