"""The DeepFocus search (focus/learned/deepfocus.py) on a fake microscope with a fake network
whose scores follow a known calibration curve: the focus found, the frame budget, the soft
limits, glass, the clustering of disagreeing regions, and a calibration for other optics."""

from __future__ import annotations

import numpy as np
import pytest
from test_focus_fakes import FakeFocusDevice, FakeOptics

from slidescan.focus.deepfocus_calibration import DIP_DEPTH, CalibrationError, build_calibration
from slidescan.focus.deepfocus_curve import CurveModel
from slidescan.focus.drive import FocusDrive
from slidescan.focus.learned import deepfocus as deepfocus_module
from slidescan.focus.learned.deepfocus import DeepFocusFocus
from slidescan.focus.learned.deepfocus_model import FrameScores
from slidescan.focus.protocol import FocusHint

CURVE = CurveModel(0.0, 3.0, 0.0, 3.4, 2.5, 1.2, 0.3, 0.5)


class FakeNet:
    """Scores every patch from the device's true defocus through CURVE, plus noise; patches
    listed in `offsets` see their own focus shifted (a region at another height); `level`
    raises every score (a specimen that reads blurrier than the calibration's)."""

    checksum = "fake"
    patch_px = 32  # the fake device's frames are 96 px

    def __init__(self, device, patches=16, noise=0.02, offsets=None, valid=1.0, seed=0, level=0.0):
        self.device, self.patches, self.noise, self.level = device, patches, noise, level
        self.offsets = offsets or {}
        self.valid = valid
        self.rng = np.random.default_rng(seed)
        self.noise_floors: list[float] = []
        self.draws: list[int] = []
        self.drawn_patches: list[int | None] = []

    def score_frame(self, image, max_patches=16, noise_floor=0.0, draws=3, drawn_patches=None):
        self.noise_floors.append(noise_floor)
        self.draws.append(draws)
        self.drawn_patches.append(drawn_patches)
        n = min(self.patches, max_patches)
        d = self.device._z_actual - self.device.truth_um
        shift = np.array([self.offsets.get(i, 0.0) for i in range(n)])
        scores = CURVE(d - shift) + self.level + self.rng.normal(0, self.noise, n)
        return FrameScores(scores, np.full(n, self.valid), [(0, 0)] * n, 0.001)


def _calibration(tmp_path, optics=None, noise_floor=0.0):
    z = np.linspace(-12, 12, 81)
    rng = np.random.default_rng(9)
    scores = [CURVE(v) + rng.normal(0, 0.01, 16) for v in z]
    valid = [np.ones(16, bool)] * z.size
    cal = build_calibration(z, scores, valid, optics or FakeOptics(), "t", noise_floor=noise_floor)
    return cal.save(tmp_path / "cal.json")


@pytest.fixture
def method_on(tmp_path, monkeypatch):
    def make(device, net=None, noise_floor=0.0, **params):
        net = net or FakeNet(device)
        monkeypatch.setattr(deepfocus_module, "load_sharpness", lambda *a, **k: net)
        m = DeepFocusFocus(calibration=_calibration(tmp_path, noise_floor=noise_floor), **params)
        m.prepare(device.optics)
        return m

    return make


@pytest.mark.parametrize("placement", ["golden", "mirror"])
@pytest.mark.parametrize("truth", [-4.0, -1.3, 0.0, 2.2, 4.9])
def test_finds_focus_within_four_frames(method_on, truth, placement):
    dev = FakeFocusDevice(truth_um=truth, z0=0.0)
    m = method_on(dev, placement=placement)
    r = m.focus(FocusDrive(dev), FocusHint(z_um=0.0))
    assert r.ok
    assert r.frames <= 4
    assert abs(r.z_um - truth) < 0.1
    assert r.final_frame is not None and dev.snapped_z[-1] == pytest.approx(r.z_um)
    assert r.extra["fwhm_um"] == pytest.approx(CURVE.dip_width_um(-12, 12, DIP_DEPTH), rel=0.05)


def test_mirror_brackets_the_focus(method_on):
    dev = FakeFocusDevice(truth_um=2.0)
    m = method_on(dev, placement="mirror", search_fwhm=1.0, mirror_distance=0.0)
    r = m.focus(FocusDrive(dev), FocusHint(z_um=0.0))
    a, b, c = dev.snapped_z[:3]
    assert a < b == 0.0  # below the hint, then the hint
    # the third mirrors the nearer (the hint, 2 um below focus) about the focus: 4 um
    assert c == pytest.approx(4.0, abs=0.2)
    assert abs(r.z_um - 2.0) < 0.1


@pytest.mark.parametrize("distance, mirrored", [(0.35, "hint"), (1.5, "bottom")])
def test_the_mirrored_frame_is_the_one_nearest_the_wanted_distance(method_on, distance, mirrored):
    # frames at -FWHM (3.5 um: 5.5 um below focus) and at the hint (2 um below); the third
    # mirrors the one whose distance from the focus is nearest `distance` FWHM
    dev = FakeFocusDevice(truth_um=2.0)
    m = method_on(dev, placement="mirror", search_fwhm=1.0, mirror_distance=distance)
    r = m.focus(FocusDrive(dev), FocusHint(z_um=0.0))
    a, b, c = dev.snapped_z[:3]
    ref = {"hint": b, "bottom": a}[mirrored]
    assert c == pytest.approx(2 * 2.0 - ref, abs=0.2)
    assert abs(r.z_um - 2.0) < 0.1


@pytest.mark.parametrize("hint_mirror", [0.1, 0.0])
def test_an_estimate_near_the_hint_mirrors_the_first_frame_about_the_hint(method_on, hint_mirror):
    # focus 0.2 um above the hint (0.06 FWHM): the third frame mirrors the first about the hint,
    # a pair symmetric about it; never (0): the frame nearest 0.35 FWHM from the estimate is
    # mirrored about the estimate
    dev = FakeFocusDevice(truth_um=0.2)
    m = method_on(dev, placement="mirror", hint_mirror=hint_mirror, recover=False)
    r = m.focus(FocusDrive(dev), FocusHint(z_um=0.0))
    a, b, c = dev.snapped_z[:3]
    assert a < b == 0.0
    if hint_mirror:
        assert c == pytest.approx(-a, abs=1e-9)
    else:
        assert c != pytest.approx(-a, abs=0.05) and c > 0.2
    assert abs(r.z_um - 0.2) < 0.1


@pytest.mark.parametrize("far_beyond", [0.75, 0.0])
def test_a_far_hint_puts_the_third_frame_on_the_flank_not_the_other_wing(
    method_on, monkeypatch, far_beyond
):
    # the hint 5 um (1.4 FWHM) below focus: both first frames lie further than 0.75 FWHM from
    # their estimate, so the third goes 0.35 FWHM above it; never (0): the hint's mirror
    dev = FakeFocusDevice(truth_um=0.0)
    m = method_on(dev, placement="mirror", far_beyond=far_beyond, recover=False)
    first = []
    real = m._estimate

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        first.append(out["z"])
        return out

    monkeypatch.setattr(m, "_estimate", spy)
    r = m.focus(FocusDrive(dev), FocusHint(z_um=-5.0))
    fwhm, f1 = r.extra["fwhm_um"], first[0]
    a, b, c = dev.snapped_z[:3]
    assert a < b == -5.0 and abs(f1) < 1.0
    want = f1 + 0.35 * fwhm if far_beyond else 2 * f1 - b
    assert c == pytest.approx(want, abs=1e-6)
    assert abs(r.z_um) < 0.1


def test_an_estimate_at_the_edge_of_its_reach_keeps_the_mirror_for_the_recovery(method_on):
    # focus 9 um above the hint, beyond the first fit's reach: the third frame mirrors the
    # hint far out, the last fit runs into its edge and the recovery finds the focus
    dev = FakeFocusDevice(truth_um=9.0, z_limits=(-30.0, 30.0))
    m = method_on(dev, far_beyond=0.75)
    r = m.focus(FocusDrive(dev), FocusHint(z_um=0.0))
    assert dev.snapped_z[2] > 9.0
    assert r.extra["recovered"] and abs(r.z_um - 9.0) < 0.15


def test_every_frame_is_scored_at_the_calibration_noise_floor(method_on):
    dev = FakeFocusDevice(truth_um=1.0)
    net = FakeNet(dev)
    m = method_on(dev, net, noise_floor=2.5)
    assert m.calibration.noise_floor == 2.5
    r = m.focus(FocusDrive(dev), FocusHint(z_um=0.0))
    assert r.ok and len(net.noise_floors) == r.frames - 1  # the final capture is not scored
    assert set(net.noise_floors) == {2.5}
    assert set(net.draws) == {3}  # the noise drawn three times by default,
    assert set(net.drawn_patches) == {32}  # fewer where 32 patch draws are reached sooner
    net = FakeNet(dev)
    method_on(dev, net, noise_floor=2.5, noise_draws=1).focus(FocusDrive(dev), FocusHint(0.0))
    assert net.draws and set(net.draws) == {1}


@pytest.mark.parametrize("beyond", [10.0, 0.5, 0.0])
def test_a_level_apart_is_left_free_when_the_hint_is_far(method_on, beyond):
    # a specimen that reads 0.25 ln px blurrier than the calibration's, the hint 4.5 um
    # (about 1.3 FWHM) below focus: a fit with the calibration's level misplaces the focus
    dev = FakeFocusDevice(truth_um=0.0)
    m = method_on(
        dev,
        FakeNet(dev, level=0.25),
        placement="mirror",
        free_offset_beyond=beyond,
        mirror_distance=0.0,  # the nearer frame's mirror: three frames on one side of focus
        far_beyond=0.0,
        recover=False,  # its first estimate, at the calibration's level, lies at its edge
    )
    r = m.focus(FocusDrive(dev), FocusHint(z_um=-4.5))
    assert r.ok and r.frames == 4
    if beyond > 1:  # never
        assert abs(r.z_um) > 0.2
    else:
        assert abs(r.z_um) < 0.1


@pytest.mark.parametrize("spreads", [(0.2, 0.1), (0.0, 0.0)])
def test_the_level_and_depth_priors_reach_every_fit_after_the_first(
    method_on, monkeypatch, spreads
):
    level, depth = spreads
    seen = []
    real = deepfocus_module.fit_shift

    def spy(*args, **kwargs):
        seen.append((kwargs["free_offset"], kwargs["offset_sd"], kwargs["depth_sd"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(deepfocus_module, "fit_shift", spy)
    dev = FakeFocusDevice(truth_um=0.0)
    m = method_on(dev, placement="mirror", level_spread=level, depth_spread=depth)
    assert m.params.free_offset_beyond == 0.0  # the default: free at every fit after the first
    r = m.focus(FocusDrive(dev), FocusHint(z_um=-2.0))
    assert r.ok and abs(r.z_um) < 0.1
    first = [s for s in seen if not s[0]]
    later = [s for s in seen if s[0]]
    assert first and later  # the first estimate keeps the calibration's level
    assert all(s[1:] == (None, None) for s in first)
    want = (level or None, depth or None)
    assert all(s[1:] == want for s in later)


@pytest.mark.parametrize("refine", [0.15, 0.0])
def test_a_fifth_frame_of_budget_tightens_the_pair_around_the_focus(method_on, refine):
    # the hint 3 um below focus: frames at -4.7 and -3 um, the mirror near +3 um; the nearest
    # frame is ~3 um from the estimate, so the fourth search frame goes `refine` FWHM past it
    dev = FakeFocusDevice(truth_um=0.0)
    m = method_on(
        dev, placement="mirror", max_frames=5, refine=refine, mirror_distance=0.0, far_beyond=0.0
    )
    r = m.focus(FocusDrive(dev), FocusHint(z_um=-3.0))
    assert abs(r.z_um) < 0.1
    search = dev.snapped_z[:-1]
    if refine == 0:
        assert len(search) == 3 and r.frames == 4
        return
    assert len(search) == 4 and r.frames == 5
    first3, fourth = np.asarray(search[:3]), search[3]
    near = first3[np.argmin(np.abs(first3 - r.z_um))]
    assert abs(near - r.z_um) > refine * r.extra["fwhm_um"]
    assert np.sign(fourth - r.z_um) == -np.sign(near - r.z_um)
    assert abs(fourth - r.z_um) == pytest.approx(refine * r.extra["fwhm_um"], abs=0.15)


def test_first_frame_is_the_bottom_of_the_interval(method_on):
    dev = FakeFocusDevice(truth_um=1.0)
    m = method_on(dev, search_fwhm=2.0)
    drive = FocusDrive(dev)
    lo, centre, hi = m.interval(drive, FocusHint(z_um=2.0))
    assert m.first_z(drive, FocusHint(z_um=2.0)) == lo
    assert centre == 2.0 and hi - centre == pytest.approx(centre - lo)
    assert hi - centre == pytest.approx(2.0 * CURVE.dip_width_um(-12, 12, DIP_DEPTH), rel=0.05)


def test_budget_is_kept_even_when_not_convex(method_on):
    dev = FakeFocusDevice(truth_um=0.0)
    m = method_on(dev, max_frames=6, convexity_margin=1.0)  # the stop test can never pass
    r = m.focus(FocusDrive(dev), FocusHint(z_um=1.0))
    assert r.frames == 6 and len(dev.snapped_z) == 6
    assert abs(r.z_um) < 0.1


def test_soft_limits_hold_whatever_the_curve_says(method_on):
    dev = FakeFocusDevice(truth_um=9.0, z_limits=(-5.0, 6.0))
    m = method_on(dev)
    r = m.focus(FocusDrive(dev), FocusHint(z_um=4.0))
    assert dev.violations == []
    assert all(-5.0 <= z <= 6.0 for z in dev.commanded)
    assert r.z_um <= 6.0


def test_glass_fails_the_tile_and_returns_the_hint(method_on):
    dev = FakeFocusDevice(truth_um=1.0)
    m = method_on(dev, FakeNet(dev, valid=0.1))
    r = m.focus(FocusDrive(dev), FocusHint(z_um=0.5))
    assert not r.ok and r.z_um == 0.5 and r.confidence == 0.0
    assert "texture" in r.message


def test_the_largest_cluster_of_regions_decides(method_on):
    dev = FakeFocusDevice(truth_um=0.0)
    net = FakeNet(dev, offsets={i: 6.0 for i in range(5)})  # 5 of 16 regions sit 6 um higher
    m = method_on(dev, net)
    r = m.focus(FocusDrive(dev), FocusHint(z_um=1.0))
    assert abs(r.z_um) < 0.15
    assert r.extra["cluster_regions"] == 11 and r.extra["regions"] == 16
    assert 0.5 < r.confidence < 0.8


def test_a_calibration_for_another_objective_is_refused(tmp_path, monkeypatch):
    dev = FakeFocusDevice()
    monkeypatch.setattr(deepfocus_module, "load_sharpness", lambda *a, **k: FakeNet(dev))
    path = _calibration(
        tmp_path, FakeOptics("10x/0.30", 0.30, magnification=10, pixel_size_um=0.65)
    )
    m = DeepFocusFocus(calibration=path)
    with pytest.raises(CalibrationError, match="does not match the objective in use"):
        m.prepare(dev.optics)


def test_focus_far_beyond_the_search_is_recovered_with_more_frames(method_on):
    # 9 um from the hint: the 0.5 FWHM search (about +/-2.2 um here) cannot reach it
    dev = FakeFocusDevice(truth_um=9.0, z_limits=(-30.0, 30.0))
    m = method_on(dev)
    r = m.focus(FocusDrive(dev), FocusHint(z_um=0.0))
    assert r.extra["recovered"]
    assert r.frames > 4
    assert abs(r.z_um - 9.0) < 0.15
    assert dev.violations == []


def test_focus_far_below_the_hint_is_recovered_too(method_on):
    # 9 um below the hint: both first frames lie on the flat wing above focus and the last fit
    # (three frames on one side) stays inside its reach; the first estimate, at the edge of
    # its reach, is what calls the recovery
    dev = FakeFocusDevice(truth_um=-9.0, z_limits=(-30.0, 30.0))
    m = method_on(dev)
    r = m.focus(FocusDrive(dev), FocusHint(z_um=0.0))
    assert r.extra["recovered"] and r.frames > 4
    assert abs(r.z_um + 9.0) < 0.15


def test_no_recovery_when_switched_off(method_on):
    dev = FakeFocusDevice(truth_um=9.0, z_limits=(-30.0, 30.0))
    m = method_on(dev, recover=False)
    r = m.focus(FocusDrive(dev), FocusHint(z_um=0.0))
    assert not r.extra["recovered"] and r.frames == 4
    assert abs(r.z_um - 9.0) > 2.0  # the search could not see that far


@pytest.mark.parametrize("cut_short", [False, True])
def test_on_the_microscope_the_noise_is_read_far_from_focus(cut_short):
    # centred on focus the stack's first plane is far below it; with the lower soft limit
    # just under the focus the stack is cut short there, so the noise is read at its top
    # (in focus, texture would inflate the estimate, and with it the floor)
    from slidescan.focus.deepfocus_calibration import saturation_defocus_um
    from slidescan.focus.learned.deepfocus_calibrate import calibrate_on_drive
    from slidescan.focus.learned.deepfocus_score import noise_sigma

    sat = saturation_defocus_um(FakeOptics())
    limits = (-0.3 * sat, 100.0) if cut_short else (-100.0, 100.0)
    fine = 0.15 + 0.7 * np.random.default_rng(2).random((96, 96))  # texture down to 1 px
    dev = FakeFocusDevice(truth_um=0.0, z_limits=limits, noise=0.01, specimen=fine)
    cal = calibrate_on_drive(FakeNet(dev), FocusDrive(dev), 0.0, "t", max_patches=9)
    first = dev.snapped_z[0]
    assert abs(first) > sat  # the noise frame: the far end
    assert (first > 0) == cut_short
    assert cal.noise_sigma == pytest.approx(0.01 * 255, rel=0.15)  # uint8 frames
    in_focus = noise_sigma(fine * 255)  # what a plane in focus would read: its texture
    assert in_focus > 10 * cal.noise_sigma
    assert cal.frame_dtype == "uint8"
