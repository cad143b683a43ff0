"""The difference-image CNN autofocus: model, loss, input, checkpoints, training and the method."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from slidescan.focus.drive import FocusDrive
from slidescan.focus.learned import diffcnn_model
from slidescan.focus.learned.checkpoint import save_checkpoint
from slidescan.focus.learned.diffcnn import DiffCNNFocus, optics_objective
from slidescan.focus.learned.diffcnn_calibration import GAIN_RANGE, SlideCorrection, fit_correction
from slidescan.focus.learned.diffcnn_model import (
    DiffCNNMeta,
    DiffCNNPredictor,
    PairPrediction,
    fuse_conv_bn,
    load_diffcnn,
    weighted_median,
)
from slidescan.focus.learned.diffcnn_training import (
    DiffCNNTask,
    DiffCNNTrainConfig,
    PatchDataset,
    tile_errors,
)
from slidescan.focus.learned.losses import distance_weights, weighted_smooth_l1
from slidescan.focus.learned.mobilenet import MobileNetV2, count_parameters, make_divisible
from slidescan.focus.learned.preprocess import InputSpec, network_input, patch_pairs
from slidescan.focus.learned.training import LoopConfig, Trainer
from slidescan.focus.protocol import FocusError, FocusHint, FocusMethod, FocusResult

SPEC = InputSpec(patch_px=32, bin=1, pixel_size_um=0.5, colour="grey", max_patches=8)


# -- model ---------------------------------------------------------------------------------------
def test_mobilenet_v2_matches_the_published_parameter_count():
    # torchvision / the paper: MobileNetV2 1.0, 224x224x3, 1000 classes = 3,504,872 parameters.
    assert count_parameters(MobileNetV2(3, 1000, width_mult=1.0)) == 3_504_872


def test_regression_model_shapes_and_width_multiplier():
    narrow = MobileNetV2(in_channels=6, num_outputs=1, width_mult=0.35, last_channels=256)
    wide = MobileNetV2(in_channels=6, num_outputs=1, width_mult=0.5, last_channels=256)
    narrow.eval()
    out = narrow(torch.zeros(5, 6, 64, 64))
    assert out.shape == (5, 1)
    assert narrow.features[0][0].out_channels == make_divisible(32 * 0.35) == 16
    assert wide.features[0][0].out_channels == 16  # 32 * 0.5
    assert count_parameters(narrow) < count_parameters(wide) < 600_000
    # The stem sees the 6 input channels (3 for the first frame, 3 for the difference).
    assert narrow.features[0][0].in_channels == 6


def test_fusing_batch_norm_keeps_outputs():
    torch.manual_seed(0)
    model = MobileNetV2(2, 1, 0.35, last_channels=64)
    # Give batch norm non-trivial statistics, then compare eval outputs.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 2, 32, 32))
    model.eval()
    x = torch.randn(4, 2, 32, 32)
    with torch.no_grad():
        ref = model(x)
        fused = fuse_conv_bn(model)(x)
    assert torch.allclose(ref, fused, atol=1e-4)


# -- loss ----------------------------------------------------------------------------------------
def test_loss_phase1_weights_by_patch_std():
    pred = torch.tensor([1.0, 0.0, 3.0])
    target = torch.tensor([0.0, 0.0, 0.0])
    std = torch.tensor([0.1, 0.2, 0.3])
    # smooth L1 with beta 0.5: |e| >= beta -> |e| - beta/2 ; 1 -> 0.75, 0 -> 0, 3 -> 2.75
    expected = (0.1 * 0.75 + 0.2 * 0.0 + 0.3 * 2.75) / 0.6
    got = weighted_smooth_l1(pred, target, std, phase=1, beta_um=0.5)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # Quadratic zone: |e| < beta -> 0.5 e^2 / beta
    got = weighted_smooth_l1(torch.tensor([0.2]), torch.tensor([0.0]), torch.tensor([1.0]), 1, 0.5)
    assert got.item() == pytest.approx(0.5 * 0.04 / 0.5, rel=1e-6)


def test_loss_phase2_also_weights_by_distance():
    target = torch.tensor([0.0, 1.0, 8.0])
    w = distance_weights(target, scale_um=1.0)
    assert w.tolist() == pytest.approx([1.0, 1 / (1 + math.log(2)), 1 / (1 + math.log(9))])
    pred = target + torch.tensor([2.0, 2.0, 2.0])  # the same error everywhere
    std = torch.tensor([1.0, 1.0, 1.0])
    # Equal errors -> the weighting cannot change the mean; unequal errors -> near focus counts more.
    same = weighted_smooth_l1(pred, target, std, phase=2, beta_um=0.5)
    assert same.item() == pytest.approx(1.75, rel=1e-6)
    pred = target + torch.tensor([2.0, 0.0, 0.0])  # error only at focus
    p1 = weighted_smooth_l1(pred, target, std, phase=1, beta_um=0.5).item()
    p2 = weighted_smooth_l1(pred, target, std, phase=2, beta_um=0.5).item()
    assert p1 == pytest.approx(1.75 / 3)
    assert p2 == pytest.approx(1.75 * 1.0 / w.sum().item())
    assert p2 > p1
    with pytest.raises(ValueError, match="phase"):
        weighted_smooth_l1(pred, target, std, phase=3)


def test_weighted_median():
    assert weighted_median(np.array([1.0, 2.0, 10.0]), np.array([1.0, 1.0, 1.0])) == 2.0
    assert weighted_median(np.array([1.0, 2.0, 10.0]), np.array([1.0, 1.0, 5.0])) == 10.0
    assert weighted_median(np.array([1.0, 3.0]), np.array([1.0, 1.0])) == 2.0


# -- input -----------------------------------------------------------------------------------------
def _texture(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return gaussian_filter(rng.random((n, n)), 1.5)


def test_difference_is_taken_in_float_not_wrapped_uint8():
    a = np.random.default_rng(0).integers(150, 250, (64, 64)).astype(np.uint8)
    b = a - np.uint8(100)  # darker everywhere
    spec = InputSpec(patch_px=32, bin=1, pixel_size_um=0.5, colour="grey", min_patch_std=0.0)
    pp = patch_pairs(a, b, spec)
    # intensities are relative to one brightness for both frames (the pair's mean, estimated
    # on a subsampled grid)
    r, c = pp.origins[0]
    a0, b0 = a[r : r + 32, c : c + 32], b[r : r + 32, c : c + 32]
    brightness = a0[0, 0] / pp.pairs[0, 0, 0, 0, 0]
    assert brightness == pytest.approx(0.5 * (a.mean() + b.mean()), rel=0.02)
    assert np.allclose(pp.pairs[0, 0, 0] * brightness, a0, atol=1e-3)
    assert np.allclose(pp.pairs[0, 1, 0] * brightness, b0, atol=1e-3)
    x = network_input(pp.pairs, spec)
    diff = x[:, 1]
    # uint8 100 - 200 would wrap to +156; the float difference is negative everywhere
    assert np.all(diff < 0)
    mean_frame = 0.5 * (pp.pairs[:, 0] + pp.pairs[:, 1])
    mu, sigma = mean_frame.mean(axis=(2, 3))[:, 0], mean_frame.std(axis=(2, 3))[:, 0]
    expected = (b0.astype(float) - a0) / brightness / sigma[0]
    assert np.allclose(diff[0], expected, atol=1e-4)
    # the first channel is the first frame standardised with the pair's mean-frame statistics
    assert np.allclose(x[0, 0], (a0 / brightness - mu[0]) / sigma[0], atol=1e-4)
    # and exposure does not matter: a brighter copy gives the same network input
    pp2 = patch_pairs(a.astype(np.uint16) * 16, b.astype(np.uint16) * 16, spec)
    assert np.allclose(network_input(pp2.pairs, spec), x, atol=1e-5)


def test_patches_rank_tissue_and_drop_glass():
    img = np.full((128, 128), 0.8, np.float32)
    img[:64, :64] += 0.2 * (_texture(64) - 0.5) * 4  # tissue in one quadrant only
    pp = patch_pairs(img, img, InputSpec(patch_px=32, bin=1, colour="grey", min_patch_std=0.01))
    assert len(pp) == 4  # the four 32-px patches of the textured quadrant
    assert set(map(tuple, pp.origins)) == {(0, 0), (0, 32), (32, 0), (32, 32)}
    assert np.all(np.diff(pp.patch_std) <= 0)  # most tissue first


def test_patches_resample_to_the_trained_pixel_size():
    spec = InputSpec(patch_px=32, bin=2, pixel_size_um=0.25, colour="rgb", min_patch_std=0.0)
    img = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    # native pixels of 0.25 um, binned by 2 -> 128 model pixels -> 4 x 4 patches
    assert len(patch_pairs(img, img, spec, pixel_size_um=0.25, max_patches=100)) == 16
    # a camera with 0.5 um pixels already has the model's sampling: 256 px -> 8 x 8 patches
    assert len(patch_pairs(img, img, spec, pixel_size_um=0.5, max_patches=100)) == 64
    with pytest.raises(FocusError, match="too small"):
        patch_pairs(img[:40, :40], img[:40, :40], spec, pixel_size_um=0.25)


# -- checkpoints --------------------------------------------------------------------------------------
def _meta(spec: InputSpec = SPEC, **kw) -> DiffCNNMeta:
    base = dict(
        input_spec=spec.to_dict(),
        objective="test/0.75",
        na=0.75,
        delta_um=2.0,
        offset_um=8.0,
        y_mean_um=8.0,
        y_scale_um=3.0,
        y_min_um=2.5,
        y_max_um=14.0,
    )
    base.update(kw)
    return DiffCNNMeta(**base)


def _arch(meta: DiffCNNMeta) -> dict:
    return {
        "in_channels": meta.spec.in_channels,
        "num_outputs": 1,
        "width_mult": 0.35,
        "last_channels": 64,
    }


def _save(path, model, meta: DiffCNNMeta):
    return save_checkpoint(path, meta.checkpoint(model, _arch(meta)))


def _constant_checkpoint(path, distance_um: float, meta: DiffCNNMeta | None = None):
    """A checkpoint whose network answers `distance_um` for any input."""
    meta = meta or _meta()
    model = MobileNetV2(**_arch(meta))
    with torch.no_grad():
        model.head[1].weight.zero_()
        model.head[1].bias.fill_((distance_um - meta.y_mean_um) / meta.y_scale_um)
    return _save(path, model, meta)


def test_checkpoint_round_trip_is_self_describing(tmp_path):
    path = _constant_checkpoint(tmp_path / "m.pt", 5.0)
    model, meta = load_diffcnn(path)
    assert meta.spec == SPEC and meta.delta_um == 2.0
    assert not model.training
    p = DiffCNNPredictor(path)
    pair = np.stack([_texture(64), _texture(64)]).astype(np.float32)
    pred = p.predict(pair[0], pair[1])
    assert pred.distance_um == pytest.approx(5.0, abs=1e-4)
    assert pred.spread_um == pytest.approx(0.0, abs=1e-4) and pred.confidence == pytest.approx(1.0)


def test_missing_and_corrupt_weights_give_one_line_focus_errors(tmp_path):
    with pytest.raises(FocusError, match="not found") as e:
        DiffCNNFocus(weights=tmp_path / "nope.pt")
    assert "\n" not in str(e.value)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 this is not a checkpoint" * 10)
    with pytest.raises(FocusError, match="corrupt") as e:
        DiffCNNFocus(weights=bad)
    assert "\n" not in str(e.value)
    good = _constant_checkpoint(tmp_path / "good.pt", 5.0)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(FocusError) as e:
        DiffCNNFocus(weights=truncated)
    assert "\n" not in str(e.value)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(FocusError, match="not a slidescan model checkpoint"):
        DiffCNNFocus(weights=other)


# -- training ---------------------------------------------------------------------------------------
def _synthetic_patches(n: int, seed: int) -> PatchDataset:
    """Pairs of a random texture blurred by a distance-dependent Gaussian (a toy defocus)."""
    rng = np.random.default_rng(seed)
    pairs = np.empty((n, 2, 1, 32, 32), np.float32)
    y = rng.uniform(2.5, 8.0, n)
    for i in range(n):
        t = rng.random((48, 48))
        for k, d in enumerate((y[i], y[i] - 2.0)):
            pairs[i, k, 0] = gaussian_filter(t, 0.4 * d)[8:40, 8:40]
    std = pairs.mean(axis=1).reshape(n, -1).std(axis=1)
    return PatchDataset(pairs, y, std, np.arange(n) // 2)


def test_tiny_training_run_reduces_the_loss():
    torch.manual_seed(0)
    train, val = _synthetic_patches(256, 1), _synthetic_patches(64, 2)
    model = MobileNetV2(2, 1, 0.35, last_channels=64)
    cfg = DiffCNNTrainConfig(batch_size=32, phase1_fraction=0.5)
    task = DiffCNNTask(train, val, SPEC, cfg, 6, 5.25, 1.6, torch.device("cpu"))
    trainer = Trainer(model, task, LoopConfig(epochs=6, lr=1e-2, seed=0), torch.device("cpu"))
    before = trainer.validate()["patch_mae_um"]
    history = trainer.fit()
    assert [cfg.phase(h.epoch - 1, 6) for h in history] == [1, 1, 1, 2, 2, 2]
    assert history[-1].train_loss < 0.6 * history[0].train_loss
    assert history[-1].metrics["patch_mae_um"] < 0.6 * before


def test_tile_errors_combine_patches_by_weighted_median():
    data = PatchDataset(
        np.zeros((4, 2, 1, 4, 4)),
        np.array([5.0, 5.0, 5.0, 7.0]),
        np.array([1.0, 1.0, 1.0, 1.0]),
        np.array([0, 0, 0, 1]),
    )
    err = tile_errors(np.array([5.1, 9.0, 4.8, 6.0]), data)
    assert err.tolist() == pytest.approx([0.1, 1.0])


# -- the method on a toy microscope ------------------------------------------------------------------
@dataclass
class _Optics:
    objective_name: str = ""
    na: float = 0.75
    immersion_n: float = 1.0
    magnification: float = 20.0
    pixel_size_um: float = 0.5
    wavelength_um: float = 0.55
    depth_of_field_um: float = 0.81


@dataclass
class _Frame:
    image: np.ndarray


@dataclass
class ToyScope:
    """FocusDevice with Gaussian defocus blur; counts time as 1 s per snap, 0.1 s per move."""

    focus_um: float = 0.0
    z: float = 0.0
    z_limits: tuple[float, float] = (-40.0, 40.0)
    z_play_um: float | None = None
    optics: _Optics = field(default_factory=_Optics)
    blank: bool = False
    moves: list[float] = field(default_factory=list)
    snaps: list[float] = field(default_factory=list)
    t: float = 0.0

    def __post_init__(self) -> None:
        self.texture = _texture(160, seed=3)

    def move_z(self, z_um: float) -> None:
        lo, hi = self.z_limits
        assert lo <= z_um <= hi, f"commanded {z_um} outside {self.z_limits}"
        self.moves.append(z_um)
        self.z = z_um
        self.t += 0.1

    def get_z(self) -> float:
        return self.z

    def now(self) -> float:
        return self.t

    def snap(self) -> _Frame:
        self.snaps.append(self.z)
        self.t += 1.0
        if self.blank:
            return _Frame(np.full((128, 128), 0.8, np.float32))
        sigma = 0.3 + 0.8 * abs(self.z - self.focus_um)
        img = 0.5 + 2.0 * (gaussian_filter(self.texture, sigma)[16:144, 16:144] - 0.5)
        return _Frame(img.astype(np.float32))


def test_method_two_shots_below_one_move_one_final_frame(tmp_path):
    weights = _constant_checkpoint(tmp_path / "c.pt", 4.0)
    method = DiffCNNFocus(weights=weights, margin_um=0.5, calibrate_tiles=0)
    scope = ToyScope(focus_um=1.0, z=3.0)
    result = method.focus(FocusDrive(scope), FocusHint(z_um=3.0, range_um=5.0))
    offset = 2.5 + 0.5 + 5.0  # y_min + margin + range
    z1 = 3.0 - offset
    assert scope.snaps[:2] == pytest.approx([z1, z1 + 2.0])
    assert result.ok and result.frames == 3 and len(scope.snaps) == 3
    assert result.z_um == pytest.approx(z1 + 4.0)
    assert scope.snaps[2] == pytest.approx(result.z_um)
    assert result.final_frame is not None
    assert result.curve.kind == "prediction"
    assert result.curve.z_um.tolist() == pytest.approx([z1, z1 + 2.0])
    assert result.curve.values.tolist() == pytest.approx([z1 + 4.0] * 2)
    # Backlash: the first shot was approached from below (overshoot), every later move went up.
    assert scope.moves[0] < z1 and np.all(np.diff(scope.moves[1:]) > 0)
    assert result.hardware_s == pytest.approx(scope.t)


def test_method_clamps_to_soft_limits(tmp_path):
    weights = _constant_checkpoint(tmp_path / "c.pt", 14.0)
    method = DiffCNNFocus(weights=weights)
    scope = ToyScope(z=-5.0, z_limits=(-12.0, 6.0))
    result = method.focus(FocusDrive(scope), FocusHint(z_um=-5.0, range_um=5.0))
    assert all(-12.0 <= z <= 6.0 for z in scope.moves)
    assert result.z_um <= 6.0 and result.extra["clamped"]


def test_method_falls_back_to_a_sweep_when_the_prediction_is_out_of_range(tmp_path):
    weights = _constant_checkpoint(tmp_path / "c.pt", 40.0)  # far outside y in [2.5, 14]
    method = DiffCNNFocus(weights=weights, max_pairs=2)
    scope = ToyScope(focus_um=0.7, z=0.0)
    result = method.focus(FocusDrive(scope), FocusHint(z_um=0.0, range_um=3.0))
    assert result.extra["pairs"] == 2 and result.fallback.to == "zsweep"
    assert "outside the trained range" in result.fallback.reason
    assert "outside the trained range" in result.message
    assert result.frames == len(scope.snaps) > 5
    # the sweep found the toy's focus; every move stayed in the limits
    assert result.ok and abs(result.z_um - 0.7) < 0.3
    assert result.final_frame is not None


def test_method_takes_a_second_pair_when_patches_disagree(tmp_path, monkeypatch):
    weights = _constant_checkpoint(tmp_path / "c.pt", 6.0)
    method = DiffCNNFocus(weights=weights, max_pairs=2, fallback="none")
    answers = iter(
        [
            PairPrediction(7.0, 2.0, 0.8, 0.06, 8, 0.0),  # unsure
            PairPrediction(4.0, 0.05, 0.02, 0.99, 8, 0.0),  # sure
        ]
    )
    monkeypatch.setattr(method.predictor, "predict", lambda *a, **k: next(answers))
    scope = ToyScope(z=0.0)
    result = method.focus(FocusDrive(scope), FocusHint(z_um=0.0, range_um=5.0))
    z1 = -8.0
    est = z1 + 7.0
    z1b = est - method.offset_for(max(2 * 0.8, 1.0))
    assert result.ok and result.frames == 5 and result.extra["pairs"] == 2
    assert scope.snaps[2] == pytest.approx(z1b)
    assert result.z_um == pytest.approx(z1b + 4.0)


def test_method_refines_a_far_pair_with_a_second_pair_near_focus(tmp_path, monkeypatch):
    weights = _constant_checkpoint(tmp_path / "c.pt", 6.0)
    method = DiffCNNFocus(weights=weights, max_pairs=2, fallback="none", trust_within_um=6.0)
    answers = iter(
        [
            PairPrediction(9.0, 0.1, 0.04, 0.96, 8, 0.0),  # confident, but far from focus
            PairPrediction(4.2, 0.1, 0.04, 0.96, 8, 0.0),
        ]
    )
    monkeypatch.setattr(method.predictor, "predict", lambda *a, **k: next(answers))
    scope = ToyScope(z=0.0)
    result = method.focus(FocusDrive(scope), FocusHint(z_um=0.0, range_um=5.0))
    est = -8.0 + 9.0
    z1b = est - (2.5 + 0.5 + 0.75)  # y_min + margin + max(2 stderr, 0.75)
    assert result.ok and result.frames == 5
    assert scope.snaps[2] == pytest.approx(z1b)
    assert result.z_um == pytest.approx(z1b + 4.2)
    # trusting any distance, the same first answer ends the search
    answers = iter([PairPrediction(9.0, 0.1, 0.04, 0.96, 8, 0.0)])
    method.trust_within_um = math.inf
    assert method.focus(FocusDrive(ToyScope(z=0.0)), FocusHint(z_um=0.0, range_um=5.0)).frames == 3


def test_method_reports_failure_on_empty_glass(tmp_path):
    weights = _constant_checkpoint(tmp_path / "c.pt", 6.0)
    result = DiffCNNFocus(weights=weights).focus(
        FocusDrive(ToyScope(blank=True)), FocusHint(z_um=0.0)
    )
    assert not result.ok and "no tissue" in result.message and result.z_um == 0.0


def test_inference_is_deterministic(tmp_path):
    torch.manual_seed(1)
    meta = _meta()
    model = MobileNetV2(**_arch(meta))
    path = _save(tmp_path / "r.pt", model, meta)
    a, b = _texture(128, 5), gaussian_filter(_texture(128, 5), 1.0)
    p1 = DiffCNNPredictor(path).predict(a, b)
    p2 = DiffCNNPredictor(path).predict(a, b)
    assert p1.n_patches == 8
    assert np.array_equal(p1.patch_distance_um, p2.patch_distance_um)
    assert p1.distance_um == p2.distance_um


def test_shipped_weights_follow_the_devices_objective(tmp_path, monkeypatch):
    """With neither weights nor objective given, the method uses the shipped model for the
    device's objective when there is one, else the default 20x/0.75 model."""
    files = {
        "20x/0.75": _constant_checkpoint(tmp_path / "a.pt", 4.0, _meta(objective="20x/0.75")),
        "20x/0.50": _constant_checkpoint(
            tmp_path / "b.pt", 6.0, _meta(objective="20x/0.50", na=0.5)
        ),
    }
    monkeypatch.setattr(
        diffcnn_model, "shipped_weights_path", lambda o: files.get(o, tmp_path / "none.pt")
    )
    method = DiffCNNFocus()
    assert method.auto_objective and method.meta.objective == "20x/0.75"
    low_na = ToyScope(optics=_Optics(na=0.5))
    method.select_model(low_na.optics)
    assert method.meta.objective == "20x/0.50" and method.axial_scale(low_na.optics) == 1.0
    method.select_model(_Optics(na=0.95, magnification=40.0))  # none shipped
    assert method.meta.objective == "20x/0.75"
    method.select_model(_Optics())
    assert method.meta.objective == "20x/0.75"
    # an objective's declared name wins over magnification and NA (an NA override)
    method.select_model(_Optics(objective_name="20x/0.50", na=0.52))
    assert method.meta.objective == "20x/0.50"
    # an explicit objective (or weights file) pins the model
    pinned = DiffCNNFocus(objective="20x/0.75")
    pinned.select_model(low_na.optics)
    assert pinned.meta.objective == "20x/0.75" and pinned.axial_scale(low_na.optics) > 1.9
    assert optics_objective(_Optics(na=0.5)) == "20x/0.50"
    assert optics_objective(_Optics(magnification=float("nan"))) is None


def test_per_slide_calibration_removes_a_constant_bias(tmp_path):
    """The network says focus is 4.0 um above the first shot; on this 'slide' it is really
    4.3 um (a bias the network cannot see, like a cover-glass error). The first tiles are also
    swept; afterwards every tile takes three frames and lands on the true focus."""
    weights = _constant_checkpoint(tmp_path / "c.pt", 4.0)
    method = DiffCNNFocus(weights=weights, calibrate_tiles=2, trust_within_um=math.inf)
    errors, frames, names = [], [], []
    for focus in (1.0, 1.5, 0.7, 1.2, 0.9):
        # hint exactly where the CNN (biased by -0.3 um) would put focus from its first shot
        scope = ToyScope(focus_um=focus, z=focus)
        hint = FocusHint(z_um=focus, range_um=1.0)
        z1 = focus - method.offset_for(1.0)
        scope.focus_um = z1 + 4.3  # the truth is 0.3 um above what the network reads
        r = method.focus(FocusDrive(scope), hint)
        errors.append(r.z_um - scope.focus_um)
        frames.append(r.frames)
        names.append((r.method, r.calibration))
    assert frames[0] > 3 and frames[1] > 3 and frames[2:] == [3, 3, 3]
    # calibration tiles say so (the scan file records it)
    assert names == [("diffcnn", True)] * 2 + [("diffcnn", False)] * 3
    assert method.correction().offset_um == pytest.approx(0.3, abs=0.1)
    assert all(abs(e) < 0.12 for e in errors), errors
    # without calibration the bias stays
    plain = DiffCNNFocus(weights=weights, calibrate_tiles=0, trust_within_um=math.inf)
    scope = ToyScope(focus_um=1.0, z=1.0)
    z1 = 1.0 - plain.offset_for(1.0)
    scope.focus_um = z1 + 4.3
    r = plain.focus(FocusDrive(scope), FocusHint(z_um=1.0, range_um=1.0))
    assert r.frames == 3 and r.z_um - scope.focus_um == pytest.approx(-0.3, abs=1e-6)
    method.reset_calibration()
    assert method.correction() == SlideCorrection() and method.calibration_count() == 0
    # frozen: the (empty) calibration is used but no tile is swept for it
    method.calibration_frozen = True
    scope = ToyScope(focus_um=1.0, z=1.0)
    r = method.focus(FocusDrive(scope), FocusHint(z_um=1.0, range_um=1.0))
    assert r.frames == 3 and method.calibration_count() == 0


def test_a_failed_calibration_sweep_is_not_kept(tmp_path):
    weights = _constant_checkpoint(tmp_path / "c.pt", 4.0)

    class Failing(FocusMethod):
        name = "failing"

        def focus(self, drive, hint):
            return FocusResult(hint.z_um + 5.0, 4, 0.0, 0.0, 0.0, ok=False, message="no peak")

    method = DiffCNNFocus(weights=weights, calibrate_tiles=1, fallback_method=Failing())
    r = method.focus(FocusDrive(ToyScope(focus_um=1.0, z=1.0)), FocusHint(z_um=1.0, range_um=1.0))
    assert not r.ok and "not kept" in r.message and method.correction() == SlideCorrection()


def test_fit_correction_separates_the_gain_from_per_field_offsets():
    rng = np.random.default_rng(0)
    tiles = []
    for field_offset in (-0.3, 0.1, 0.35):  # what one field's pairs are off by, on top
        p = np.array([2.9, 3.7, 4.4])
        y = 1.2 * p - 0.5 + field_offset + rng.normal(0, 0.01, 3)
        tiles.append(list(zip(p.tolist(), y.tolist(), strict=True)))
    c = fit_correction(tiles)
    # pooled least squares would mix the field offsets into the slope; within tiles it does not
    assert c.gain == pytest.approx(1.2, abs=0.03)
    assert c.offset_um == pytest.approx(-0.5 + 0.1, abs=0.05)  # the median field
    assert (c.lo_um, c.hi_um) == (2.9, 4.4)
    # inside the measured range the line; beyond it slope 1 from the end
    assert c(3.0) == pytest.approx(c.gain * 3.0 + c.offset_um)
    assert c(10.0) - c(4.4) == pytest.approx(10.0 - 4.4)
    assert c(1.0) - c(2.9) == pytest.approx(1.0 - 2.9)
    # one point per tile (no slope): offset only; absurd slopes are clipped; nothing: identity
    one = fit_correction([[(4.0, 4.3)], [(3.0, 3.5)]])
    assert one.gain == 1.0 and one.offset_um == pytest.approx(0.4)
    steep = fit_correction([[(3.0, 3.0), (4.0, 8.0)], [(3.0, 3.0), (4.0, 9.0)]])
    assert steep.gain == GAIN_RANGE[1]
    assert fit_correction([]) == SlideCorrection() and SlideCorrection()(3.3) == 3.3


def test_per_slide_calibration_fits_the_slides_gain(tmp_path, monkeypatch):
    """On this 'slide' the network reads y as (y + 0.9) / 1.4 (an aperture or
    cover glass it was not trained on). The calibration tiles take pairs at two more distances
    and a sweep; later tiles, hinted up to 0.6 um off, land within 0.06 um. With an offset
    alone the error grows with the distance of the pair."""
    weights = _constant_checkpoint(tmp_path / "c.pt", 4.0)

    def scan(pairs_um):
        method = DiffCNNFocus(weights=weights, calibrate_tiles=2, calibration_pairs_um=pairs_um)
        scope = ToyScope()

        def network(image1, image2, pixel_size_um=None):
            y = scope.focus_um - scope.snaps[-2]  # the lower shot's true distance to focus
            return PairPrediction((y + 0.9) / 1.4, 0.05, 0.02, 0.99, 8, 0.0)

        monkeypatch.setattr(method.predictor, "predict", network)
        errors, frames = [], []
        for focus, hint in [
            (1.0, 1.0),
            (0.5, 0.2),
            (1.2, 1.8),
            (0.0, -0.6),
            (0.8, 1.4),
            (0.3, 0.3),
        ]:
            scope.focus_um = focus
            r = method.focus(FocusDrive(scope), FocusHint(z_um=hint, range_um=1.0))
            errors.append(r.z_um - focus)
            frames.append(r.frames)
        return method, np.abs(errors), frames

    method, errors, frames = scan((3.0, 4.5))
    assert frames[2:] == [3, 3, 3, 3]
    c = method.correction()
    assert c.gain == pytest.approx(1.4, abs=0.05) and c.offset_um == pytest.approx(-0.9, abs=0.1)
    assert errors.max() < 0.06, errors
    _, offset_only, _ = scan(())
    assert offset_only[2:].max() > 0.15, offset_only
