"""Simulated stage: steps, backlash, compensation, repeatability, timing, limits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slidescan.hardware.base import Stage
from slidescan.hardware.clock import VirtualClock
from slidescan.hardware.errors import DeviceTimeout, LimitExceeded
from slidescan.hardware.sim import STAGE_PRESETS, SimStageConfig
from slidescan.hardware.sim.stage import SimStage, trapezoid_fraction, trapezoid_time_s


def _stage(**kw) -> tuple[SimStage, VirtualClock]:
    clock = VirtualClock()
    base = kw.pop("base", STAGE_PRESETS["lowcost"])
    cfg = base.model_copy(update=kw)
    return SimStage(cfg, clock, seed=1, start_um=(1000.0, 1000.0, 0.0)), clock


def test_is_a_stage():
    stage, _ = _stage()
    assert isinstance(stage, Stage)


def test_reports_quantised_command_and_true_position_follows():
    stage, _ = _stage(z_repeatability_um=0.0, xy_jitter_um=0.0)
    stage.move_to(z=1.234)
    assert stage.position().z == pytest.approx(1.2)  # 0.1 um steps
    assert stage.true_position().z == pytest.approx(1.2)
    stage.move_to(x=1000.26)
    assert stage.position().x == pytest.approx(1000.5)  # 0.5 um steps


def test_z_backlash_after_reversal_and_its_compensation():
    stage, _ = _stage(z_repeatability_um=0.0, z_backlash_um=3.0)
    stage.move_to(z=10.0)
    assert stage.true_position().z == pytest.approx(10.0)
    stage.move_to(z=8.0)  # reversal smaller than the play: nothing moves
    assert stage.position().z == pytest.approx(8.0)
    assert stage.true_position().z == pytest.approx(10.0)
    stage.move_to(z=5.0)  # beyond the play: lags by the full backlash
    assert stage.true_position().z == pytest.approx(8.0)
    stage.move_to(z=6.0)  # back up: the play is taken up first
    assert stage.true_position().z == pytest.approx(8.0)
    stage.move_to(z=9.0)
    assert stage.true_position().z == pytest.approx(9.0)
    # StageBase's approach-from-below removes it
    comp, _ = _stage(z_repeatability_um=0.0, z_backlash_um=3.0, compensate_z_um=4.0)
    comp.move_to(z=10.0)
    comp.move_to(z=5.0)
    assert comp.position().z == pytest.approx(5.0)
    assert comp.true_position().z == pytest.approx(5.0)
    # too little compensation leaves the rest
    short, _ = _stage(z_repeatability_um=0.0, z_backlash_um=3.0, compensate_z_um=2.0)
    short.move_to(z=10.0)
    short.move_to(z=5.0)
    assert short.true_position().z == pytest.approx(6.0)


def test_repeatability_noise_is_seeded_with_the_configured_spread():
    errors = []
    stage, _ = _stage(z_repeatability_um=0.08, z_backlash_um=0.0)
    for i in range(400):
        stage.move_to(z=float(i % 7))
        errors.append(stage.true_position().z - stage.position().z)
    assert np.std(errors) == pytest.approx(0.08, rel=0.15)
    assert abs(np.mean(errors)) < 0.02
    # the same seed gives the same errors
    first, _ = _stage(z_repeatability_um=0.08, z_backlash_um=0.0)
    again, _ = _stage(z_repeatability_um=0.08, z_backlash_um=0.0)
    for s in (first, again):
        s.move_to(z=1.0)
        s.move_to(z=3.0)
    assert again.true_position().z == first.true_position().z != 3.0


def test_xy_jitter_moves_the_true_position_only():
    stage, _ = _stage(xy_jitter_um=1.0, xy_backlash_um=0.0)
    offsets = []
    for i in range(200):
        stage.move_to(x=1000.0 + 50 * (i % 2), y=1000.0)
        p, t = stage.position(), stage.true_position()
        assert p.x == 1000.0 + 50 * (i % 2)
        offsets.append((t.x - p.x, t.y - p.y))
    assert np.std(offsets, axis=0) == pytest.approx([1.0, 0.0], abs=0.2)


def test_trapezoid_profile():
    v, a = 200.0, 2000.0
    assert trapezoid_time_s(0.0, v, a) == 0.0
    assert trapezoid_time_s(10.0, v, a) == pytest.approx(2 * math.sqrt(10.0 / a))  # triangle
    assert trapezoid_time_s(1000.0, v, a) == pytest.approx(1000.0 / v + v / a)
    assert trapezoid_fraction(0.0, 1000.0, v, a) == 0.0
    total = trapezoid_time_s(1000.0, v, a)
    assert trapezoid_fraction(total / 2, 1000.0, v, a) == pytest.approx(0.5)
    assert trapezoid_fraction(total, 1000.0, v, a) == 1.0


def test_moves_advance_the_virtual_clock_by_motion_and_settling():
    cfg = STAGE_PRESETS["lowcost"]
    stage, clock = _stage()
    t0 = clock.now()
    stage.move_to(z=2.0)  # up: no backlash pre-move
    expected = trapezoid_time_s(2.0, cfg.z_speed_um_s, cfg.z_accel_um_s2) + cfg.z_settle_ms / 1e3
    assert clock.now() - t0 == pytest.approx(expected)
    t0 = clock.now()
    stage.move_to(x=1500.0, y=1100.0)  # axes move together: the longer one counts
    expected = trapezoid_time_s(500.0, cfg.xy_speed_um_s, cfg.xy_accel_um_s2)
    assert clock.now() - t0 == pytest.approx(expected + cfg.xy_settle_ms / 1e3)
    assert stage.move_duration_s(x=500.0, y=100.0) == pytest.approx(clock.now() - t0)
    t0 = clock.now()
    stage.move_to(z=2.0)  # no motion, no time
    assert clock.now() == t0
    fast, fclock = _stage(base=STAGE_PRESETS["commercial"])
    fast.move_to(x=1500.0)
    assert fclock.now() < (clock.now() - t0) + expected  # commercial is faster


def test_moving_without_waiting_interpolates_until_done():
    stage, clock = _stage(xy_jitter_um=0.0, xy_backlash_um=0.0)
    stage.move_to(x=5000.0, wait=False)
    assert stage.is_moving()
    assert stage.position().x == 1000.0
    duration = stage.move_duration_s(x=4000.0)
    clock.sleep(duration / 2)
    assert 1000.0 < stage.position().x < 5000.0
    assert stage.is_moving()
    stage.wait()
    assert not stage.is_moving() and stage.position().x == 5000.0
    # stop freezes where the profile is
    stage.move_to(x=1000.0, wait=False)
    clock.sleep(duration / 2)
    stage.stop()
    frozen = stage.position().x
    assert 1000.0 < frozen < 5000.0 and not stage.is_moving()
    assert stage.true_position().x == pytest.approx(frozen, abs=0.5)


def test_wait_times_out_on_the_virtual_clock():
    stage, clock = _stage()
    stage.move_to(x=60000.0, wait=False)
    with pytest.raises(DeviceTimeout):
        stage.wait(timeout_s=0.5)
    assert stage.is_moving()


def test_soft_limits_are_refused_before_anything_moves():
    stage, clock = _stage()
    lo, hi = stage.limits.range("z")
    for bad in (hi + 1.0, lo - 0.01, float("nan")):
        with pytest.raises(LimitExceeded):
            stage.move_to(z=bad)
    assert stage.position().z == 0.0 and clock.now() == 0.0
    with pytest.raises(LimitExceeded):
        stage.move_by(dx=-5000.0)
    stage.move_to(z=hi)  # the limit itself is allowed
    assert stage.position().z == pytest.approx(hi)


def test_home_goes_to_the_home_position_and_zeroes_the_mechanics():
    stage, _ = _stage()
    stage.move_to(z=5.0)
    stage.home()
    c = stage.config
    p = stage.position()
    assert (p.x, p.y, p.z) == (c.x_limits_um[0], c.y_limits_um[0], c.z_limits_um[1])
    t = stage.true_position()
    assert (t.x, t.y, t.z) == (p.x, p.y, p.z)


def test_presets_differ_as_documented():
    com, low = STAGE_PRESETS["commercial"], STAGE_PRESETS["lowcost"]
    assert isinstance(com, SimStageConfig)
    assert com.z_backlash_um == 0 and 2 <= low.z_backlash_um <= 5
    assert com.strobe_ms is not None and low.strobe_ms is None
    assert low.z_step_um > com.z_step_um
    assert low.xy_settle_ms > com.xy_settle_ms and low.z_speed_um_s < com.z_speed_um_s
    assert low.z_repeatability_um > com.z_repeatability_um


def test_xy_backlash_lags_after_a_reversal():
    stage, _ = _stage(xy_jitter_um=0.0, xy_backlash_um=8.0)
    stage.move_to(x=1100.0)
    assert stage.true_position().x == pytest.approx(1100.0)
    stage.move_to(x=1050.0)
    assert stage.position().x == 1050.0
    assert stage.true_position().x == pytest.approx(1058.0)


def test_a_z_via_point_runs_within_the_xy_move_and_takes_up_the_play():
    """`move_via`: XY moves while Z goes down to the via point and back up to its target
    (each Z leg from rest to rest); the move lasts as long as the longer of the two, then the
    settle, and Z arrives moving up, so its play is taken up."""
    cfg = STAGE_PRESETS["lowcost"]
    stage, clock = _stage(z_repeatability_um=0.0, xy_jitter_um=0.0, xy_backlash_um=0.0)
    stage.move_to(z=10.0)
    stage.move_to(z=6.0)  # downward: the carriage sits the play above the command
    assert stage.true_position().z == pytest.approx(9.0)
    t0 = clock.now()
    stage.move_via(1100.0, 1000.0, 7.0, 3.5)
    leg1 = trapezoid_time_s(2.5, cfg.z_speed_um_s, cfg.z_accel_um_s2)
    leg2 = trapezoid_time_s(3.5, cfg.z_speed_um_s, cfg.z_accel_um_s2)
    xy = trapezoid_time_s(100.0, cfg.xy_speed_um_s, cfg.xy_accel_um_s2)
    assert xy < leg1 + leg2  # a short XY step: Z's two legs set the time
    settle = max(cfg.xy_settle_ms, cfg.z_settle_ms) / 1e3
    assert clock.now() - t0 == pytest.approx(max(xy, leg1 + leg2) + settle)
    assert stage.move_duration_s(x=100.0, z=1.0, z_via=-2.5) == pytest.approx(clock.now() - t0)
    assert stage.position().as_tuple() == pytest.approx((1100.0, 1000.0, 7.0))
    assert stage.true_position().z == pytest.approx(7.0)  # arrived moving up: no lag
    assert stage.moves == 3  # one command for all of it

    # while it runs, Z passes through the via point
    stage.move_via(1000.0, 1000.0, 8.0, 2.0, wait=False)
    seen = []
    for _ in range(40):
        clock.sleep(0.01)
        seen.append(stage.position().z)
    stage.wait()
    assert min(seen) == pytest.approx(2.0, abs=0.15) and stage.position().z == pytest.approx(8.0)
    assert not stage.is_moving()


def test_a_z_via_point_outside_the_limits_is_refused_before_anything_moves():
    stage, clock = _stage()
    lo, _ = stage.limits.range("z")
    with pytest.raises(LimitExceeded):
        stage.move_via(1500.0, 1000.0, lo + 1.0, lo - 1.0)
    assert stage.position().as_tuple() == (1000.0, 1000.0, 0.0) and clock.now() == 0.0


def test_a_stage_that_cannot_blend_makes_the_z_via_point_a_second_move():
    """StageBase's default (and any stage with software backlash compensation): XY with Z's
    first leg, then the second leg; same end, one more move."""
    stage, clock = _stage(z_repeatability_um=0.0, z_backlash_um=3.0, compensate_z_um=4.0)
    stage.move_via(1500.0, 1000.0, 7.0, 3.5)
    assert stage.position().as_tuple() == pytest.approx((1500.0, 1000.0, 7.0))
    assert stage.true_position().z == pytest.approx(7.0)
    assert stage.moves == 2
