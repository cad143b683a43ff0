"""The assembled simulator: configuration, the Microscope / FocusDevice contract, extras."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from slidescan.focus.protocol import FocusDevice
from slidescan.hardware.errors import LimitExceeded
from slidescan.hardware.microscope import Microscope
from slidescan.hardware.sim import (
    STAGE_PRESETS,
    SimCameraConfig,
    SimConfig,
    SimulatedMicroscope,
    build_simulator,
)
from slidescan.hardware.sim.benchmark import render_benchmark


@pytest.fixture(scope="module")
def sim() -> SimulatedMicroscope:
    return build_simulator(SimConfig(seed=0, camera=SimCameraConfig(width=64, height=48)))


def test_config_defaults_and_round_trip():
    cfg = SimConfig()
    assert cfg.objective == "20x/0.75" and cfg.stage == STAGE_PRESETS["commercial"]
    again = SimConfig.model_validate(cfg.model_dump(mode="json"))
    assert again == cfg


def test_config_from_a_profile_table():
    table = {
        "seed": 3,
        "objective": "40x/0.95",
        "stage": {"preset": "lowcost", "z_backlash_um": 4.0},
        "camera": {"width": 512, "height": 256, "bit_depth": 12},
        "specimen": {"stain": "ihc", "thickness_um": 3.0, "layers": 3},
        "optics": {"psf": "gaussian", "coverslip_error_um": 5.0},
    }
    cfg = SimConfig.model_validate(table)
    assert cfg.stage.z_backlash_um == 4.0
    assert cfg.stage.z_step_um == STAGE_PRESETS["lowcost"].z_step_um
    assert cfg.camera.shape == (256, 512, 3)
    assert SimConfig.model_validate({"stage": "lowcost"}).stage == STAGE_PRESETS["lowcost"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"objective": "63x/1.4"}, "known objectives"),
        ({"stage": "fancy"}, "known presets"),
        ({"specimen": {"thickness_um": -1}}, "greater than or equal"),
        ({"specimen": {"layers": 0}}, "greater than or equal"),
        ({"camera": {"bit_depth": 12, "jpeg_quality": 80}}, "bit_depth 8"),
        ({"camera": {"exposre_ms": 3}}, "Extra inputs"),
        ({"stage": {"z_limits_um": [5, -5]}}, "lower value"),
        ({"specimen": {"bounds_um": [10, 0, 0, 10]}}, "x0 < x1"),
        ({"specimen": {"kind": "image"}}, "needs image_path"),
        ({"specimen": {"kind": "image", "image_path": "slide.png"}}, "image_pixel_size_um"),
        ({"optics": {"wavelengths_um": [0.61, 0.54, 2.0]}}, "wavelengths_um"),
    ],
)
def test_invalid_config_gives_a_clear_error(table, message):
    with pytest.raises(ValidationError, match=message):
        SimConfig.model_validate(table)


def test_is_a_microscope_and_a_focus_device(sim):
    assert isinstance(sim, Microscope)
    assert isinstance(sim, FocusDevice)
    assert sim.optics.na == 0.75
    assert sim.field_of_view_um == pytest.approx((64 * 0.325, 48 * 0.325))
    assert sim.slide_bounds_um == (20000.0, 6000.0, 30000.0, 14000.0)


def test_move_z_get_z_and_limits(sim):
    lo, hi = sim.z_limits
    sim.move_z(1.234)
    assert sim.get_z() == pytest.approx(1.23)
    with pytest.raises(LimitExceeded):
        sim.move_z(hi + 1)
    assert sim.get_z() == pytest.approx(1.23)
    t0 = sim.now()
    sim.move_z(2.0)
    assert sim.now() > t0


def test_snap_meta_and_render(sim):
    x0, y0, x1, y1 = sim.slide_bounds_um
    sim.move_xy((x0 + x1) / 2, (y0 + y1) / 2)
    truth = sim.true_focus_um(*sim.stage.position().as_tuple()[:2])
    sim.move_z(round(truth, 2) + 1.0)
    frame = sim.snap()
    assert frame.image.shape == (48, 64, 3)
    assert frame.meta["defocus_um"] == pytest.approx(1.0, abs=0.1)  # jitter, steps
    assert frame.position == sim.stage.position()
    image = sim.render(frame.position.x, frame.position.y, truth, noise=False)
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    a = sim.render(frame.position.x, frame.position.y, truth, rng=np.random.default_rng(5))
    b = sim.render(frame.position.x, frame.position.y, truth, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


def test_determinism_with_a_seed():
    cfg = SimConfig(seed=21, camera=SimCameraConfig(width=48, height=48))
    frames = []
    for _ in range(2):
        s = build_simulator(cfg)
        s.move_xy(24000.0, 9000.0)
        s.move_z(0.5)
        frames.append((s.snap().image, s.now(), s.sim_stage.true_position()))
    np.testing.assert_array_equal(frames[0][0], frames[1][0])
    assert frames[0][1:] == frames[1][1:]


def test_focal_surface_and_truth_agree(sim):
    x, y = 24500.0, 9500.0
    truth = sim.field_truth(x, y)
    assert truth.midplane_um == pytest.approx(float(sim.focal_surface_um(x, y)), abs=0.2)
    assert abs(truth.true_focus_um - truth.midplane_um) < 4.0 / 1.52 / 2
    zs = sim.focal_surface_um(np.array([21000.0, 29000.0]), np.array([7000.0, 13000.0]))
    assert zs.shape == (2,)


def test_overview_and_tissue_mask(sim):
    over = sim.overview(pixel_size_um=100.0)
    assert over.dtype == np.uint8 and over.shape == (90, 110, 3)
    assert over[0, 0].tolist() == [255, 255, 255]  # glass outside the tissue
    x0, y0, x1, y1 = sim.slide_bounds_um
    assert over[45, 55].mean() < 220  # stained tissue in the middle
    mask = sim.tissue_mask(np.linspace(x0, x1, 20), np.linspace(y0, y1, 10))
    assert mask.shape == (10, 20)


def test_render_benchmark_reports_figures():
    out = render_benchmark(size=64, repeats=2)
    for key in ("cold_ms", "cold_field_ms", "warm_new_z_ms", "warm_same_z_ms", "sensor_ms"):
        assert out[key] > 0
    assert out["otf_cache"]["misses"] > 0 and out["otf_cache"]["hits"] > 0


def test_na_override_is_validated_and_reaches_the_optics():
    import pydantic

    from slidescan.hardware.sim import SimConfig, build_simulator

    sim = build_simulator(SimConfig(optics={"na": 0.70}, camera={"width": 32, "height": 32}))
    assert sim.optics.na == 0.70
    assert build_simulator(SimConfig(camera={"width": 32, "height": 32})).optics.na == 0.75
    with pytest.raises(pydantic.ValidationError, match="below the immersion index"):
        SimConfig(optics={"na": 1.2})
