"""Classical focus methods on the fake device: accuracy, one-sided approach, limits, edge and
no-signal cases, timing and the result record."""

from __future__ import annotations

import numpy as np
import pytest
from test_focus_fakes import FakeFocusDevice, FakeOptics

from slidescan.focus.classical import BrentSearch, NoFocus, ZSweep, curve_confidence, fit_peak
from slidescan.focus.drive import FocusDrive
from slidescan.focus.protocol import FocusHint, FocusMethod, FocusResult


def _run(method, truths, hint_z=10.0, **dev_kw):
    results, devices = [], []
    for i, t in enumerate(truths):
        dev = FakeFocusDevice(truth_um=hint_z + t, seed=i, z0=hint_z - 15.0 + 3 * i, **dev_kw)
        results.append(method.focus(FocusDrive(dev), FocusHint(hint_z)))
        devices.append(dev)
    return results, devices


OFFSETS = [-4.6, -2.9, -1.25, -0.3, 0.45, 1.7, 3.1, 4.8]


@pytest.mark.parametrize("method", [ZSweep(), BrentSearch()], ids=["zsweep", "brent"])
def test_finds_focus_within_a_tenth_of_the_dof_despite_backlash(method):
    results, devices = _run(method, OFFSETS, backlash_um=1.5)
    errors = np.array([r.z_um - d.truth_um for r, d in zip(results, devices, strict=True)])
    dof = FakeOptics().depth_of_field_um
    assert np.max(np.abs(errors)) < 0.15 * dof, errors
    for r, d in zip(results, devices, strict=True):
        assert r.ok and r.confidence > 0.6
        assert d.violations == []
        # Every frame, the sweep's and the final one, was taken after an upward move.
        assert all(d.snapped_from_below), d.snapped_from_below
        assert r.frames == len(d.snapped_z)
        assert r.final_frame is not None
        assert r.final_frame.meta["defocus_um"] == pytest.approx(r.z_um - d.truth_um)


def test_zsweep_defaults_scale_with_the_optics():
    dev = FakeFocusDevice()
    half, step = ZSweep().plan(FocusDrive(dev), FocusHint(0.0))
    dof = dev.optics.depth_of_field_um
    assert step == pytest.approx(0.75 * dof)
    assert 2 * round(half / step) + 1 == 21
    low_na = FakeFocusDevice(optics=FakeOptics(na=0.3, magnification=10))
    half10, step10 = ZSweep().plan(FocusDrive(low_na), FocusHint(0.0))
    assert step10 > 5 * step and half10 > 5 * half
    narrow = ZSweep().plan(FocusDrive(dev), FocusHint(0.0, range_um=2.0))[0]
    assert 2.0 <= narrow < 2.0 + step
    assert ZSweep(range_um=9.0).plan(FocusDrive(dev), FocusHint(0.0, range_um=2.0))[0] >= 9.0


def test_zsweep_sweeps_bottom_to_top_then_finishes_from_below():
    dev = FakeFocusDevice(truth_um=1.0, z0=30.0)
    r = ZSweep().focus(FocusDrive(dev), FocusHint(0.0))
    sweep = dev.snapped_z[:-1]
    assert np.all(np.diff(sweep) > 0)  # one direction
    assert dev.snapped_z[-1] == pytest.approx(r.z_um)
    # Only two downward commands: to below the first plane, and below the final z.
    downs = np.sum(np.diff([30.0, *dev.commanded]) < 0)
    assert downs == 2
    assert r.curve.z_um.size == len(sweep) and np.all(np.diff(r.curve.z_um) > 0)
    assert int(np.argmax(r.curve.values)) == int(np.argmin(np.abs(r.curve.z_um - 1.0)))


def test_zsweep_extends_once_when_focus_is_beyond_the_range():
    dev = FakeFocusDevice(truth_um=8.0)
    r = ZSweep(range_um=4.0).focus(FocusDrive(dev), FocusHint(0.0))
    assert r.extra["extended"] == "up"
    assert abs(r.z_um - 8.0) < 0.15
    dev = FakeFocusDevice(truth_um=-7.5)
    r = ZSweep(range_um=4.0).focus(FocusDrive(dev), FocusHint(0.0))
    assert r.extra["extended"] == "down"
    assert abs(r.z_um + 7.5) < 0.15
    assert all(dev.snapped_from_below)


def test_zsweep_without_extension_reports_an_edge_peak_with_low_confidence():
    dev = FakeFocusDevice(truth_um=5.5)
    r = ZSweep(range_um=4.0, extend=False).focus(FocusDrive(dev), FocusHint(0.0))
    assert r.ok
    assert r.extra["edge"] and r.confidence <= 0.25
    assert "edge" in r.message


def test_no_signal_on_blank_glass_fails_cleanly_at_the_hint():
    blank = np.full((64, 64), 0.8)
    for method in (ZSweep(), BrentSearch()):
        dev = FakeFocusDevice(truth_um=0.0, specimen=blank, noise=0.003)
        r = method.focus(FocusDrive(dev), FocusHint(2.0))
        assert not r.ok and r.confidence == 0.0
        assert r.z_um == pytest.approx(2.0)
        assert "no focus signal" in r.message


def test_sweep_is_confined_to_the_limits():
    dev = FakeFocusDevice(truth_um=1.0, z_limits=(-2.0, 3.0), z0=0.0)
    r = ZSweep().focus(
        FocusDrive(dev), FocusHint(100.0)
    )  # a wild hint: clamped, sweep inside the limits
    assert dev.violations == []
    assert all(-2.0 <= z <= 3.0 for z in dev.commanded)
    assert r.extra["clamped"]
    assert abs(r.z_um - 1.0) < 0.15
    dev = FakeFocusDevice(truth_um=1.0, z_limits=(-2.0, 3.0), z0=0.0)
    r = BrentSearch().focus(FocusDrive(dev), FocusHint(-1e6))
    assert dev.violations == []
    assert abs(r.z_um - 1.0) < 0.15


def test_hardware_time_is_the_device_clock_and_compute_is_separate():
    dev = FakeFocusDevice(truth_um=0.5, move_s_per_um=0.01, settle_s=0.05, exposure_s=0.02)
    r = ZSweep().focus(FocusDrive(dev), FocusHint(0.0))
    assert r.hardware_s == pytest.approx(dev.t)
    assert r.hardware_s >= r.frames * 0.02
    assert 0.0 < r.compute_s < 1.0


def test_brent_uses_fewer_frames_than_the_sweep():
    zs, _ = _run(ZSweep(), [1.3])
    br, _ = _run(BrentSearch(), [1.3])
    assert br[0].frames < zs[0].frames
    assert br[0].extra["converged"]
    assert br[0].curve.z_um.size == br[0].extra["evaluations"]
    assert br[0].frames == br[0].extra["evaluations"] + br[0].extra["refined"]


def test_other_metrics_and_parabola_fit_also_work():
    for kw in ({"metric": "tenengrad"}, {"metric": "normalized_variance"}, {"fit": "parabola"}):
        results, devices = _run(ZSweep(**kw), [-2.2, 1.9])
        for r, d in zip(results, devices, strict=True):
            assert abs(r.z_um - d.truth_um) < 0.2, kw


def test_fit_peak_recovers_a_sampled_gaussian_between_samples():
    z = np.arange(-5, 5.01, 0.6)
    for true in (-0.37, 0.0, 0.21, 1.05):
        v = 3.0 * np.exp(-((z - true) ** 2) / (2 * 1.1**2))
        peak = fit_peak(z, v, "gauss")
        assert peak.z_um == pytest.approx(true, abs=1e-9)
        assert peak.quality == pytest.approx(1.0)
        assert not peak.edge
    edge = fit_peak(z, np.exp(z), "gauss")
    assert edge.edge and edge.z_um == z[-1]


def test_curve_confidence_tracks_prominence():
    assert curve_confidence(np.array([1.0, 10.0, 1.0]), 1.0, False) == 1.0
    assert curve_confidence(np.array([9.0, 10.0, 9.5]), 1.0, False) == pytest.approx(0.2)
    assert curve_confidence(np.array([1.0, 10.0, 1.0]), 1.0, True) == 0.25


def test_no_focus_returns_the_clamped_hint():
    dev = FakeFocusDevice(z_limits=(-5.0, 5.0))
    r = NoFocus().focus(FocusDrive(dev), FocusHint(3.0, source="focusmap"))
    assert (r.z_um, r.frames, r.final_frame, dev.commanded) == (3.0, 0, None, [])
    r = NoFocus().focus(FocusDrive(dev), FocusHint(99.0))
    assert r.z_um == 5.0 and r.extra["clamped"]
    r = NoFocus(snap=True).focus(FocusDrive(dev), FocusHint(-1.0))
    assert r.frames == 1 and r.final_frame is not None and dev.get_z() == -1.0


def test_methods_satisfy_the_protocol_and_summarise():
    for m in (ZSweep(), BrentSearch(), NoFocus()):
        assert isinstance(m, FocusMethod)
    r = ZSweep().focus(FocusDrive(FakeFocusDevice()), FocusHint(0.0))
    assert isinstance(r, FocusResult)
    s = r.summary()
    assert s["method"] == "zsweep" and s["metric"] == "brenner" and s["planes"] == 21


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="step_um"):
        ZSweep(step_um=0)
    with pytest.raises(ValueError, match="brenner_green"):
        ZSweep(metric="nope")
    with pytest.raises(ValueError, match="fit"):
        ZSweep(fit="spline")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="xatol_um"):
        BrentSearch(xatol_um=-1)
