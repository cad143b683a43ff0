"""DeepFocus's network and its training task: the score definition, patches, a tiny training
run whose loss falls, deterministic inference, one-line errors for bad weights."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from slidescan.focus.deepfocus_calibration import NOISE_FLOOR_FACTOR
from slidescan.focus.learned.checkpoint import Checkpoint, save_checkpoint
from slidescan.focus.learned.deepfocus_model import SharpnessNet
from slidescan.focus.learned.deepfocus_score import (
    MAX_SIGMA_PX,
    blur_sigma_px,
    cut_patches,
    frame_draws,
    frame_patches,
    noise_sigma,
    patch_grid,
    raise_noise,
    score_target,
    standardise,
)
from slidescan.focus.learned.deepfocus_training import DeepFocusTask, DeepFocusTrainConfig
from slidescan.focus.learned.mobilenet import MobileNetV2
from slidescan.focus.learned.training import LoopConfig, Trainer
from slidescan.focus.protocol import FocusError

ARCH = {"in_channels": 1, "num_outputs": 2, "width_mult": 0.2, "last_channels": 32}


def test_score_is_diffraction_at_focus_and_grows_with_defocus():
    # 20x/0.75, 0.325 um/px: 0.21 * 0.55 / 0.75 = 0.154 um = 0.474 px at focus
    assert blur_sigma_px(0.0, 0.75, 0.325) == pytest.approx(0.154 / 0.325, rel=1e-3)
    s = blur_sigma_px(np.array([0.0, 1.0, 2.0, 4.0]), 0.75, 0.325)
    assert np.all(np.diff(s) > 0)
    assert blur_sigma_px(3.0, 0.75, 0.325) == pytest.approx(blur_sigma_px(-3.0, 0.75, 0.325))
    assert score_target(1000.0, 0.75, 0.325) == pytest.approx(np.log(MAX_SIGMA_PX))


def test_patch_grid_is_centred_and_bounded():
    assert patch_grid((256, 256), 128, 16) == [(0, 0), (0, 128), (128, 0), (128, 128)]
    big = patch_grid((2048, 2048), 128, 16)
    assert len(big) == 16
    ys = sorted({y for y, _ in big})
    assert ys[0] > 0 and ys[-1] + 128 < 2048  # spread over the frame, not its corner
    with pytest.raises(ValueError, match="smaller than one"):
        patch_grid((100, 300), 128)


def test_standardised_patches_ignore_gain_and_rgb_is_luminance():
    rng = np.random.default_rng(0)
    a = rng.uniform(50, 200, (2, 64, 64)).astype(np.float32)
    np.testing.assert_allclose(standardise(a), standardise(a * 1.7), atol=1e-4)
    rgb = np.repeat(a[0][..., None], 3, axis=2)
    p, corners = frame_patches(rgb, 4, 32)
    assert p.shape == (4, 32, 32) and len(corners) == 4


def _smooth(size=128):
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    return 100 + 0.3 * x + 20 * np.sin(y / 25.0)  # a ramp and a slow wave: no noise


def test_noise_sigma_reads_the_noise_of_a_smooth_image():
    rng = np.random.default_rng(1)
    for sd in (0.5, 1.5, 4.0):
        assert noise_sigma(_smooth() + rng.normal(0, sd, (128, 128))) == pytest.approx(sd, rel=0.05)
    assert noise_sigma(_smooth()) < 0.05
    with pytest.raises(ValueError, match="noise_sigma"):
        noise_sigma(np.zeros((2, 2)))


def test_raise_noise_reaches_the_floor_and_is_repeatable():
    rng = np.random.default_rng(2)
    p = np.stack([_smooth() + rng.normal(0, 1.0, (128, 128)) for _ in range(4)]).astype(np.float32)
    up = raise_noise(p, 2.0)
    assert noise_sigma(up) == pytest.approx(2.0, rel=0.05)
    np.testing.assert_array_equal(up, raise_noise(p.copy(), 2.0))  # same frame, same noise
    np.testing.assert_array_equal(raise_noise(p, 0.0), p)
    np.testing.assert_array_equal(raise_noise(p, 0.8), p)  # noisier than the floor already
    with pytest.raises(ValueError, match="noise floor"):
        raise_noise(p, -1.0)


def test_a_frame_gets_the_same_noise_whatever_its_memory_layout(tmp_path):
    # the float luminance of one RGB frame differs in its last bits between C and Fortran
    # order; the noise is seeded by the frame's pixels, so the patches read the same
    rng = np.random.default_rng(4)
    rgb = np.clip(_smooth(256)[..., None] + rng.normal(0, 1.0, (256, 256, 3)), 0, 255)
    rgb = rgb.astype(np.uint8)
    a, _ = frame_patches(rgb, 4, 128, noise_floor=3.0)
    b, _ = frame_patches(np.asfortranarray(rgb), 4, 128, noise_floor=3.0)
    np.testing.assert_allclose(a, b, atol=1e-4)
    c, _ = frame_patches(rgb, 4, 128)
    assert np.abs(a - c).max() > 0.05  # the floor did add noise


class _Patches:
    """A PatchSet-like set: blurred noise textures labelled with their blur's ln width."""

    def __init__(self, n: int, size: int, seed: int):
        rng = np.random.default_rng(seed)
        sig = rng.uniform(0.5, 6.0, n)
        tex = [gaussian_filter(rng.uniform(0, 255, (size, size)), s) for s in sig]
        self.patches = np.stack([np.clip(100 + 4 * (t - t.mean()), 0, 255) for t in tex])
        self.patches = self.patches.astype(np.uint8)
        self.score = np.log(sig).astype(np.float32)
        self.valid = np.ones(n, np.uint8)
        self.valid[: n // 8] = 0  # some "blank" ones
        self.patches[: n // 8] = 180
        self.score[: n // 8] = np.nan
        self.objective = np.zeros(n, np.int8)

    def __len__(self) -> int:
        return len(self.patches)


def test_tiny_training_run_lowers_the_loss():
    torch.manual_seed(0)
    train, val = _Patches(96, 48, 1), _Patches(32, 48, 2)
    cfg = DeepFocusTrainConfig(batch_size=16, steps_per_epoch=12, bn_samples=32)
    task = DeepFocusTask(train, val, cfg, torch.device("cpu"))
    trainer = Trainer(MobileNetV2(**ARCH), task, LoopConfig(epochs=4, lr=3e-3), torch.device("cpu"))
    with torch.no_grad():
        losses = [
            task.loss(trainer.model, b, 0)[0] for b in task.batches(0, np.random.default_rng(5))
        ]
    before = float(torch.stack(losses).mean())
    history = trainer.fit()
    assert history[-1].train_loss < 0.7 * before
    assert history[-1].metrics["validity_acc"] > 0.8


def _weights(tmp_path, seed=0):
    torch.manual_seed(seed)
    model = MobileNetV2(**ARCH).eval()
    meta = {"patch_px": 64}
    path = tmp_path / "df.pt"
    save_checkpoint(path, Checkpoint.of("deepfocus", "mobilenetv2", ARCH, model, meta=meta))
    return path


def test_inference_is_deterministic(tmp_path):
    net = SharpnessNet(_weights(tmp_path))
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 255, (192, 256, 3), dtype=np.uint8)
    a = net.score_frame(frame, max_patches=6)
    b = SharpnessNet(_weights(tmp_path)).score_frame(frame, max_patches=6)
    assert a.scores.shape == (6,) and len(a.corners) == 6
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.valid_prob, b.valid_prob)
    assert np.all((a.valid_prob >= 0) & (a.valid_prob <= 1))


def test_calibration_planes_are_scored_as_the_search_scores_them(tmp_path):
    # planes with noise 3, 1 and 3 grey levels: the floor is NOISE_FLOOR_FACTOR x the quietest
    # plane's noise, and every plane's scores are what score_frame gives at that floor (as a
    # search scores its frames)
    net = SharpnessNet(_weights(tmp_path))
    rng = np.random.default_rng(5)
    planes = [
        np.clip(_smooth(192)[..., None] + rng.normal(0, sd, (192, 192, 3)), 0, 255)
        for sd in (3.0, 1.0, 3.0)
    ]
    stack = SimpleNamespace(z_um=np.array([-1.0, 0.0, 1.0]), images=planes)
    seen = {}

    def build(z, scores, valid, optics, source, checksum, noise_sigma, noise_floor, frame_dtype):
        seen.update(scores=scores, sigma=noise_sigma, floor=noise_floor, dtype=frame_dtype)
        return "cal"

    import slidescan.focus.learned.deepfocus_calibrate as calibrate

    monkey = pytest.MonkeyPatch()
    monkey.setattr(calibrate, "build_calibration", build)
    try:
        assert calibrate.calibrate_stack(net, stack, None, "t", max_patches=9) == "cal"
    finally:
        monkey.undo()
    quiet, _ = cut_patches(planes[1], 9, net.patch_px)
    luma = np.sqrt(0.299**2 + 0.587**2 + 0.114**2)  # independent noise per channel, averaged
    assert seen["sigma"] == pytest.approx(noise_sigma(quiet))
    assert seen["sigma"] == pytest.approx(1.0 * luma, rel=0.1)
    assert seen["floor"] == pytest.approx(NOISE_FLOOR_FACTOR * seen["sigma"])
    assert seen["dtype"] == "float64"
    for image, scores in zip(planes, seen["scores"], strict=True):
        want = net.score_frame(image, 9, seen["floor"]).scores
        np.testing.assert_array_equal(scores, want)
    plain = net.score_frame(planes[1], 9).scores
    assert not np.allclose(plain, seen["scores"][1])  # the floor changed what the quiet plane reads


def test_the_floor_noise_is_drawn_several_times_and_the_scores_averaged(tmp_path):
    net = SharpnessNet(_weights(tmp_path))
    rng = np.random.default_rng(8)
    quiet = np.clip(_smooth(192)[..., None] + rng.normal(0, 0.5, (192, 192, 3)), 0, 255)
    floor = 4.0
    each = []
    for k in range(3):
        patches, _ = frame_patches(quiet, 9, net.patch_px, floor, draw=k)
        each.append(net.score_patches(patches))
    avg = net.score_frame(quiet, 9, floor, draws=3)
    # (one batch of all draws: the same numbers to float32 rounding)
    np.testing.assert_allclose(avg.scores, np.mean([e[0] for e in each], axis=0), rtol=1e-5)
    np.testing.assert_allclose(avg.valid_prob, np.mean([e[1] for e in each], axis=0), rtol=1e-5)
    assert not np.allclose(each[0][0], each[1][0])  # the draws differ
    one = net.score_frame(quiet, 9, floor, draws=1)
    np.testing.assert_array_equal(one.scores, each[0][0])  # draw 0 is the single draw
    np.testing.assert_array_equal(avg.scores, net.score_frame(quiet, 9, floor, draws=3).scores)
    # a frame already noisier than the floor gets no noise: every draw would be the same
    noisy = np.clip(_smooth(192)[..., None] + rng.normal(0, 8.0, (192, 192, 3)), 0, 255)
    assert len(frame_draws(noisy, 9, net.patch_px, floor, 3)[0]) == 1
    assert len(frame_draws(quiet, 9, net.patch_px, floor, 3)[0]) == 3
    np.testing.assert_array_equal(
        net.score_frame(noisy, 9, floor, draws=3).scores, net.score_frame(noisy, 9).scores
    )
    with pytest.raises(ValueError, match="at least 1"):
        net.score_frame(quiet, 9, floor, draws=0)
    # fewer draws where the frame's patches average the noise too: draws x patches >= drawn
    n = len(frame_draws(quiet, 9, net.patch_px, floor, 1)[0][0])
    for drawn, want in ((2 * n, 2), (2 * n + 1, 3), (1, 1), (100 * n, 3)):
        got = frame_draws(quiet, 9, net.patch_px, floor, 3, drawn_patches=drawn)[0]
        assert len(got) == want, (drawn, len(got))
    two = net.score_frame(quiet, 9, floor, draws=3, drawn_patches=2 * n)
    np.testing.assert_allclose(two.scores, np.mean([e[0] for e in each[:2]], axis=0), rtol=1e-5)


def test_bad_weights_are_one_line_errors(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(FocusError, match="unreadable or corrupt"):
        SharpnessNet(path)
    with pytest.raises(FocusError, match="not found"):
        SharpnessNet(tmp_path / "missing.pt")
    torch.manual_seed(0)
    other = {"in_channels": 3, "num_outputs": 1, "width_mult": 0.2, "last_channels": 32}
    save_checkpoint(path, Checkpoint.of("deepfocus", "mobilenetv2", other, MobileNetV2(**other)))
    with pytest.raises(FocusError, match="1 channel"):
        SharpnessNet(path)
