"""The DeepFocus paper's offline measurements: the invariance arithmetic (sigma, the paper's
conditional entropy) on hand-made curves, Brent's frame budget, fixed-hint trials and the
capture-range rule, the budget table, and the CLI's one-line errors. No network weights: the
CNN score is replaced by a fake where a command needs one."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import ndimage
from test_focus_fakes import FakeFocusDevice

from slidescan.app.cli import main
from slidescan.app.tools import (
    deepfocus_budget,
    deepfocus_capture,
    deepfocus_gap,
    deepfocus_invariance,
)
from slidescan.app.tools.deepfocus_capture import capture_range
from slidescan.app.tools.deepfocus_invariance import (
    SampleCurves,
    Scorer,
    common_grid,
    conditional_entropy,
    invariance,
    normalise,
    resample,
    sd_profile,
)
from slidescan.app.tools.evaluate import evaluate_offsets
from slidescan.focus.classical import BrentSearch
from slidescan.focus.drive import FocusDrive
from slidescan.focus.metrics import brenner
from slidescan.focus.protocol import FocusHint, FocusMethod, FocusResult
from slidescan.hardware.optics import OpticalPath, get_objective
from slidescan.hardware.stackfile import FocusStack, open_stacks, write_stacks

OPTICS = OpticalPath(get_objective("20x/0.75"))  # DOF 0.812 um

# -- invariance arithmetic -----------------------------------------------------------------------


def _scorer(key="s", blur_high=True):
    return Scorer(key, key, lambda im: 0.0, blur_high)


def _samples(curves, defocus):
    return [
        SampleCurves(f"x{i}", np.asarray(defocus, float), {"s": np.asarray(c, float)})
        for i, c in enumerate(curves)
    ]


def test_identical_curves_have_zero_sd_and_shifted_ones_a_known_sd():
    d = np.arange(-5.0, 5.01, 0.5)
    curve = np.abs(d)
    rep = invariance(_samples([curve, curve, curve], d), [_scorer()], 2.0, dof_um=1.0)
    assert rep.rows[0].sigma == pytest.approx(0.0, abs=1e-12)
    # Two samples, normalised: one is |d| / 5, the other 1 everywhere except 0 at focus.
    other = np.where(d == 0, 0.0, 1.0)
    rep = invariance(_samples([curve, other], d), [_scorer()], 2.0, dof_um=1.0)
    near = np.abs(d) <= 2.0
    diff = np.abs(curve[near] / 5.0 - other[near])
    assert rep.rows[0].sigma == pytest.approx(np.mean(diff / math.sqrt(2)))  # SD (ddof 1) of 2


def test_sharpness_is_inverted_and_blur_kept():
    v = np.array([1.0, 3.0, 2.0])
    assert normalise(v, blur_high=True).tolist() == [0.0, 1.0, 0.5]
    assert normalise(v, blur_high=False).tolist() == [1.0, 0.0, 0.5]
    assert normalise(np.ones(3), blur_high=False).tolist() == [1.0, 1.0, 1.0]
    n = normalise(np.array([np.nan, 1.0, 2.0]), True)
    assert np.isnan(n[0]) and n[1:].tolist() == [0.0, 1.0]


def test_entropy_of_an_informative_score_is_zero_and_of_a_flat_one_z_log_z():
    z = 20
    informative = np.tile((np.arange(z) + 0.5) / z, (4, 1))  # every z its own bin
    assert conditional_entropy(informative, bins=20) == pytest.approx(0.0, abs=1e-12)
    flat = np.ones((4, z))
    assert conditional_entropy(flat, bins=20) == pytest.approx(z * math.log(z))
    # Half the samples in one bin, half in another, the same at every z: each term is
    # 0.5 ln(0.5 / (z / 2)).
    split = np.vstack([np.full((2, z), 0.1), np.full((2, z), 0.9)])
    assert conditional_entropy(split, 20) == pytest.approx(-z * math.log(1.0 / z))
    # A v-shaped score (|d|) tells |d| but not its sign: ln 2 per point.
    d = np.arange(-9.5, 10)
    v = np.tile(np.abs(d) / 9.5, (3, 1))
    assert conditional_entropy(v, 10) == pytest.approx(d.size * math.log(2))


def test_invariance_ranks_an_invariant_informative_score_first():
    d = np.arange(-10.0, 10.01, 0.5)
    rng = np.random.default_rng(0)
    good = [np.log(1 + np.abs(d)) + 0.01 * rng.standard_normal(d.size) for _ in range(4)]
    # A sharpness that saturates at a sample-dependent width (the paper's HPF-like plateau).
    bad = [np.exp(-(d**2) / (2 * w**2)) for w in (0.5, 1.0, 2.0, 4.0)]
    samples = [SampleCurves(f"x{i}", d, {"cnn": good[i], "hpf": bad[i]}) for i in range(4)]
    scorers = [
        Scorer("cnn", "CNN", lambda im: 0.0, True),
        Scorer("hpf", "HPF", lambda im: 0.0, False),
    ]
    rep = invariance(samples, scorers, 5.0, dof_um=1.0)
    cnn, hpf = rep.rows
    assert cnn.sigma < 0.05 < hpf.sigma
    assert cnn.entropy < hpf.entropy
    assert rep.most_invariant.key == "cnn" and rep.most_informative.key == "cnn"
    assert "most sample-invariant: CNN" in rep.format_table()
    assert rep.to_dict()["grid_points"] == d.size
    assert rep.planes == 4 * d.size


def test_common_grid_is_the_shared_range_on_multiples_of_the_step():
    a = SampleCurves("a", np.arange(-5.2, 4.0, 0.5), {})
    b = SampleCurves("b", np.arange(-4.1, 6.0, 0.5), {})
    g = common_grid([a, b])
    assert g[0] >= -4.1 and g[-1] <= 3.8 and np.any(np.isclose(g, 0.0))
    assert np.allclose(np.diff(g), 0.5)
    c = SampleCurves("c", np.arange(10.0, 20.0, 0.5), {})
    with pytest.raises(ValueError, match="too little defocus range"):
        common_grid([a, c])


def test_resampling_takes_a_grid_end_missed_by_rounding_as_the_stack_end():
    d = np.arange(-15.0, 15.01, 0.25) + 1e-12  # z - truth with the truth's rounding
    g = common_grid([SampleCurves("a", d, {})])
    assert g[0] == -15.0 < d[0]
    v = resample(d, np.abs(d), g)
    assert np.isfinite(v).all() and v[0] == pytest.approx(15.0)
    assert np.isnan(resample(d, np.abs(d), np.array([15.5]))).all()


def test_sd_ignores_missing_values():
    c = np.array([[0.0, 1.0, np.nan], [0.5, 1.0, 0.2], [1.0, 1.0, np.nan]])
    sd = sd_profile(c)
    assert sd[0] == pytest.approx(0.5) and sd[1] == 0.0 and np.isnan(sd[2])


# -- Brent's frame budget ------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [2, 3, 4, 6])
def test_brent_never_exceeds_its_budget_and_ends_on_its_best_frame(budget):
    for i, off in enumerate([-4.6, -1.25, 0.45, 3.1, 7.0]):
        dev = FakeFocusDevice(truth_um=10.0 + off, seed=i, z0=-20.0, backlash_um=1.0)
        r = BrentSearch(max_frames=budget).focus(FocusDrive(dev), FocusHint(10.0, range_um=5.0))
        assert len(dev.snapped_z) == r.frames == r.extra["evaluations"] <= budget
        assert r.ok and r.final_frame is not None and all(dev.snapped_from_below)
        assert r.final_frame.meta["defocus_um"] == pytest.approx(r.z_um - dev.truth_um)
        assert all(abs(z - 10.0) <= 5.0 + 1e-9 for z in dev.snapped_z)  # hint +/- range


def test_brent_gets_closer_with_more_frames():
    def mae(budget):
        errs = []
        for i, off in enumerate([-4.6, -2.9, -1.25, 0.45, 1.7, 3.1, 4.8]):
            dev = FakeFocusDevice(truth_um=10.0 + off, seed=i)
            r = BrentSearch(max_frames=budget).focus(FocusDrive(dev), FocusHint(10.0, range_um=5.0))
            errs.append(abs(r.z_um - dev.truth_um))
        return float(np.mean(errs))

    assert mae(8) < mae(5) < mae(3)


def test_brent_without_a_budget_keeps_its_coarse_pass_and_refinement():
    for method in (BrentSearch(), BrentSearch(max_frames=None)):
        dev = FakeFocusDevice(truth_um=1.3, seed=0)
        r = method.focus(FocusDrive(dev), FocusHint(0.0))
        assert r.extra["coarse_planes"] >= 7 and "max_frames" not in r.extra
        assert r.frames == r.extra["evaluations"] + r.extra["refined"] > 8
    with pytest.raises(ValueError):
        BrentSearch(max_frames=1)


# -- fixed hints and the capture range -----------------------------------------------------------


def test_capture_range_rule():
    assert capture_range([1, 2, 3, 5], [1.0, 0.95, 0.8, 1.0]) == 2
    assert capture_range([5, 1, 3, 2], [1.0, 1.0, 0.8, 0.9]) == 2  # taken in increasing order
    assert capture_range([1, 2], [0.5, 1.0]) == 0.0
    assert capture_range([1, 2, 4], [1.0, 1.0, 0.9]) == 4


class Reach(FocusMethod):
    """Finds focus exactly (from the frame's metadata) when the hint is within `reach` um,
    else stays at the hint; takes `frames` frames."""

    name = "reach"

    def __init__(self, reach: float, frames: int = 1):
        self.reach, self.n = reach, frames

    def focus(self, drive, hint: FocusHint) -> FocusResult:
        for _ in range(self.n):
            truth = drive.device.snap().meta["true_focus_um"]
        z = truth if abs(hint.z_um - truth) <= self.reach else hint.z_um
        return FocusResult(z_um=z, frames=self.n, hardware_s=0, compute_s=0, confidence=1)


def _stacks(truths=(0.0, 2.0, -1.0), half=12.0, step=0.5, size=24, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for k, truth in enumerate(truths):
        base = ndimage.gaussian_filter(rng.random((size, size)), 0.7)
        base = (base - base.min()) / (base.max() - base.min())
        z = truth + np.arange(-half, half + step / 2, step)
        planes = [ndimage.gaussian_filter(base, 0.3 + 0.8 * abs(zi - truth)) for zi in z]
        images = np.clip(np.stack(planes) * 200 + 20, 0, 255).astype(np.uint8)
        out.append(FocusStack(f"s{k}", images, z, true_focus_um=truth))
    return out


@pytest.fixture
def stack_file(tmp_path):
    return write_stacks(tmp_path / "a.h5", _stacks(), OPTICS, source="test")


def test_evaluate_offsets_runs_one_trial_per_stack_and_offset_at_that_hint(stack_file):
    with open_stacks(stack_file) as f:
        recs = evaluate_offsets(Reach(3.0), f, [-4.0, -2.0, 2.0, 4.0])
    assert len(recs) == 12 and [r.trial for r in recs[:4]] == [0, 1, 2, 3]
    for r in recs:
        off = [-4.0, -2.0, 2.0, 4.0][r.trial]
        assert r.hint_z_um == pytest.approx(r.true_focus_um + off)
        assert abs(r.error_um) == pytest.approx(0.0 if abs(off) <= 3 else 4.0)
    with open_stacks(stack_file) as f, pytest.raises(ValueError, match="outside"):
        evaluate_offsets(Reach(3.0), f, [50.0])


@dataclass
class _Fake:
    key: str
    method: FocusMethod
    params: dict

    def make(self):
        return self.method


def test_run_capture_finds_each_methods_reach(stack_file, monkeypatch):
    fakes = [_Fake("deepfocus", Reach(5.0), {}), _Fake("brent+tenengrad", Reach(1.0), {})]
    monkeypatch.setattr(deepfocus_capture, "contenders", lambda *a, **k: fakes)
    with open_stacks(stack_file) as f:
        rep = deepfocus_capture.run_capture([("a.h5", f)], "cal.json", offsets_um=[0.5, 1, 2, 4, 8])
    assert rep.success["deepfocus"] == [1, 1, 1, 1, 0]
    assert rep.success["brent+tenengrad"] == [1, 1, 0, 0, 0]
    assert rep.ranges_um == {"deepfocus": 4.0, "brent+tenengrad": 1.0}
    assert rep.trials_per_offset == 6
    text = rep.format_table()
    assert "capture range deepfocus: 4.00 um" in text
    with open_stacks(stack_file) as f:
        d = deepfocus_capture.run_capture([("a.h5", f)], "cal.json").to_dict()
    assert d["offsets_dof"][:3] == pytest.approx([1, 2, 3])  # default: DOF multiples in reach
    assert max(d["offsets_um"]) <= 11.0


def test_run_budgets_pools_files_into_one_row_per_budget(stack_file, tmp_path, monkeypatch):
    other = write_stacks(tmp_path / "b.h5", _stacks((1.0,), seed=3), OPTICS, source="test")

    def fakes(cal, weights, budget):
        return [
            _Fake("deepfocus", Reach(99.0, budget - 1), {}),
            _Fake("brent+x", Reach(0.0, budget), {}),
        ]

    monkeypatch.setattr(deepfocus_budget, "contenders", fakes)
    with open_stacks(stack_file) as a, open_stacks(other) as b:
        rep = deepfocus_budget.run_budgets(
            [("a", a, {}), ("b", b, {})], "cal.json", budgets=[3, 5], hint_range_um=2.0, trials=2
        )
    assert rep.keys == ["deepfocus", "brent+x"]
    assert rep.cells[(3, "deepfocus")].trials == 8 and rep.cells[(3, "deepfocus")].mae_um == 0
    assert (
        rep.cells[(5, "brent+x")].frames_mean == 5 and rep.cells[(3, "deepfocus")].frames_mean == 2
    )
    assert rep.cells[(3, "brent+x")].mae_um > 0
    assert len(rep.format_table().splitlines()) == 5 + 2
    assert rep.format_markdown().startswith("| frames | deepfocus MAE um")


def _calibration(tag: str):
    from slidescan.focus.deepfocus_calibration import build_calibration
    from slidescan.focus.deepfocus_curve import CurveModel

    curve = CurveModel(0.0, 3.0, 0.0, 3.5, 3.0, 1.2, 0.3, 0.6)
    z = np.linspace(-11, 11, 45)
    scores = [curve(v) + np.zeros(4) for v in z]
    return build_calibration(z, scores, [np.ones(4, bool)] * z.size, OPTICS, tag)


def test_run_gap_searches_each_stack_with_both_calibrations_on_the_same_hints(stack_file, tmp_path):
    given = _calibration("given").save(tmp_path / "given.json")
    seen = []

    def calibrate_own(stack, optics, source):
        seen.append((stack.id, source))
        return _calibration(source)

    def make_method(cal):
        # the stack's own calibration finds focus from anywhere, the given one from nowhere
        return Reach(99.0 if "own_" in cal else 0.0, frames=3)

    def run():
        with open_stacks(stack_file) as f:
            return deepfocus_gap.run_gap(
                [("a.h5", f, {})],
                given,
                hint_range_um=2.0,
                trials=4,
                seed=3,
                calibrate_own=calibrate_own,
                make_method=make_method,
            )

    rep = run()
    assert seen == [("s0", "a.h5:s0"), ("s1", "a.h5:s1"), ("s2", "a.h5:s2")]
    assert [r.stack_id for r in rep.rows] == ["s0", "s1", "s2"]
    own, gv = rep.pooled["own"], rep.pooled["given"]
    assert own.trials == gv.trials == 12 and own.stacks == gv.stacks == 3
    assert own.mae_um == 0.0 and own.frames_mean == 3
    # the given arm's error is its hint's offset: the same hints in both arms, |offset| <= 2
    assert 0.0 < gv.mae_um <= 2.0
    assert all(r.given.mae_um > r.own.mae_um for r in rep.rows)
    d = rep.to_dict()
    assert d["summary"]["given"]["mae_um"] == pytest.approx(gv.mae_um)
    assert d["given_fwhm_um"] == pytest.approx(_calibration("x").fwhm_um)
    assert "pooled" in rep.format_table()
    assert run().pooled["given"].mae_um == gv.mae_um  # seeded: the same hints again
    with open_stacks(stack_file) as f, pytest.raises(ValueError, match="plane step"):
        deepfocus_gap.run_gap([("a.h5", f, {})], given, plane_step=0)


def test_thinned_keeps_every_kth_plane():
    s = _stacks((0.0,))[0]
    t = deepfocus_gap.thinned(s, 3)
    assert np.array_equal(t.z_um, s.z_um[::3]) and t.images.shape[0] == len(s.z_um[::3])
    assert t.true_focus_um == s.true_focus_um
    with pytest.raises(ValueError):
        deepfocus_gap.thinned(s, 0)


# -- the command line ----------------------------------------------------------------------------


def _fake_cnn(weights=None, max_patches=16):
    return Scorer("deepfocus", "DeepFocus (CNN)", lambda im: -math.log(brenner(im)), True)


def test_invariance_command_end_to_end(stack_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(deepfocus_invariance, "deepfocus_scorer", _fake_cnn)
    other = write_stacks(tmp_path / "b.h5", _stacks((0.5,), seed=5), OPTICS, source="test")
    assert main(["focus", "invariance", "--stacks", str(stack_file), str(other), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert len(d["samples"]) == 4 and d["bins"] == 20
    assert [s["key"] for s in d["scores"]] == [
        "deepfocus",
        "highpass",
        "tenengrad",
        "variance_of_laplacian",
        "brenner",
        "normalized_variance",
    ]
    assert d["range_um"] == pytest.approx(5 * 0.812, abs=0.01)
    assert main(["focus", "invariance", "--stacks", str(stack_file), "--range", "3"]) == 0
    out = capsys.readouterr().out
    assert "most sample-invariant:" in out and "3 samples" in out


def _one_line_error(capsys, code, argv):
    assert main(["focus", *argv]) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("slidescan: error: focus") and captured.err.count("\n") == 1
    return captured.err


def test_command_errors_are_one_line(stack_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(deepfocus_invariance, "deepfocus_scorer", _fake_cnn)
    ten = OpticalPath(get_objective("10x/0.30"))
    other = write_stacks(tmp_path / "ten.h5", _stacks((0.0,)), ten, source="test")
    err = _one_line_error(capsys, 1, ["invariance", "--stacks", str(stack_file), str(other)])
    assert "share their optics" in err
    one = write_stacks(tmp_path / "one.h5", _stacks((0.0,)), OPTICS, source="test")
    assert "at least 2 stacks" in _one_line_error(capsys, 1, ["invariance", "--stacks", str(one)])
    assert "not found" in _one_line_error(
        capsys, 1, ["invariance", "--stacks", str(tmp_path / "missing.h5")]
    )
    _one_line_error(capsys, 2, ["invariance", "--stacks", str(one), "--range", "-1"])
    cal = ["--calibration", str(tmp_path / "none.json")]
    _one_line_error(capsys, 2, ["budget", "--stacks", str(one), *cal, "--budgets", "3,x"])
    assert "at least 2 frames" in _one_line_error(
        capsys, 2, ["budget", "--stacks", str(one), *cal, "--budgets", "1,3"]
    )
    _one_line_error(capsys, 2, ["budget", "--stacks", str(one), *cal, "--stage", "nosuch"])
    _one_line_error(capsys, 1, ["budget", "--stacks", str(one), *cal])  # weights or calibration
    _one_line_error(capsys, 2, ["capture-range", "--stacks", str(one)])  # --calibration needed
    _one_line_error(capsys, 2, ["capture-range", "--stacks", str(one), *cal, "--offsets", "-2"])
    _one_line_error(capsys, 1, ["capture-range", "--stacks", str(one), *cal, "--offsets", "2"])
    gap = ["calibration-gap", "--stacks", str(one), *cal]
    assert "--trials" in _one_line_error(capsys, 2, [*gap, "--trials", "0"])
    assert "--max-frames" in _one_line_error(capsys, 2, [*gap, "--max-frames", "1"])
    assert "--plane-step" in _one_line_error(capsys, 2, [*gap, "--plane-step", "0"])
    _one_line_error(capsys, 1, gap)  # the calibration file is missing
