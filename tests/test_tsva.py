"""TSVA (two-shot virtual autofocus): the network, its inference, the focus estimate from a
pair, the image yardstick's arithmetic, a tiny training run, and the method in a scan."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from slidescan.app.cli import main
from slidescan.focus.image_quality import psnr_db, ssim
from slidescan.focus.learned.checkpoint import Checkpoint, save_checkpoint
from slidescan.focus.learned.fusion import Fuser, sharper_first, to_camera
from slidescan.focus.learned.tsva_params import DEFAULT_SPACING_UM
from slidescan.focus.learned.unet import (
    TwoShotUNet,
    count_parameters,
    fused_for_inference,
    two_shot_from_single,
)
from slidescan.focus.pair_estimate import PairEstimator
from slidescan.focus.protocol import FocusError


def expected_parameters(channels: int, base: int, depth: int, shots: int) -> int:
    """Counted by hand from the paper's layout: two 3x3 conv (no bias) + BN per block."""

    def block(cin: int, cout: int) -> int:
        return cin * cout * 9 + 2 * cout + cout * cout * 9 + 2 * cout

    w = [base * 2**k for k in range(depth)]
    total = sum(block(channels if k == 0 else w[k - 1], w[k]) for k in range(depth))
    total += block(shots * w[-1], w[-1])
    for k in range(depth - 1, 0, -1):
        total += w[k] * w[k - 1] * 4 + w[k - 1]  # 2x2 transposed conv with bias
        total += block((1 + shots) * w[k - 1], w[k - 1])
    return total + w[0] * channels + channels  # 1x1 head


@pytest.mark.parametrize(("base", "depth", "shots"), [(8, 4, 2), (8, 4, 1), (4, 3, 2)])
def test_the_network_has_the_papers_layout_and_parameter_count(base, depth, shots):
    net = TwoShotUNet(3, base, depth, shots)
    assert count_parameters(net) == expected_parameters(3, base, depth, shots)
    x = torch.rand(2, 3, 64, 48)
    out = net(x, x.clone()) if shots == 2 else net(x)
    assert out.shape == x.shape
    # the contracting paths share their weights: one encoder serves both shots
    assert len(net.encoder) == depth
    # the deepest maps of both paths are concatenated
    assert net.bottleneck[0].in_channels == shots * base * 2 ** (depth - 1)
    assert net.decoder[-1][0].in_channels == (1 + shots) * base


def test_the_shipped_width_is_about_a_quarter_million_parameters():
    assert count_parameters(TwoShotUNet(3, 8, 4, 2)) == 244_139


def test_the_output_is_a_residual_on_the_first_input():
    net = TwoShotUNet(3, 4, 3, 2).eval()
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.zero_()
        y1, y2 = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
        assert torch.equal(net(y1, y2), y1)
        net.head.bias.fill_(0.25)
        assert torch.allclose(net(y1, y2), y1 + 0.25)


def test_tsva_started_from_the_single_input_net_computes_the_same_and_can_learn():
    torch.manual_seed(3)
    single = TwoShotUNet(3, 4, 3, shots=1)
    with torch.no_grad():  # a trained-looking net: non-zero head, moved batch-norm statistics
        for p in single.parameters():
            p.add_(0.1 * torch.randn_like(p))
        for m in single.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    pair = two_shot_from_single(single)
    assert pair.shots == 2
    single.eval(), pair.eval()
    y1, y2 = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(pair(y1, y2), single(y1), atol=1e-6)
        # the second shot is ignored at the start, whatever it holds
        assert torch.allclose(pair(y1, torch.zeros_like(y2)), pair(y1, y2), atol=1e-6)
    # the zeroed weights are trainable: the second shot gets a gradient path
    pair.train()
    pair(y1, y2).sum().backward()
    w = pair.bottleneck[0].weight
    assert w.grad[:, w.shape[1] // 2 :].abs().sum() > 0
    with pytest.raises(ValueError, match="single-input"):
        two_shot_from_single(pair)


def test_the_fuser_puts_the_sharper_shot_first():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    blurred = np.full_like(sharp, 128)
    a, b = sharper_first(blurred, sharp)
    assert a is sharp and b is blurred
    net = TwoShotUNet(3, 4, 3, 2).eval()
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.zero_()
    fuser = Fuser(net, threads=1)
    out = fuser.fuse(blurred, sharp)  # either order: the residual is on the sharper one
    np.testing.assert_allclose(out, sharp.astype(np.float32), atol=1e-3)
    np.testing.assert_array_equal(to_camera(out, sharp), sharp)


def test_folding_batch_norm_keeps_the_function():
    torch.manual_seed(1)
    net = TwoShotUNet(3, 4, 3, 2)
    net.train()
    for _ in range(3):  # non-trivial running statistics
        net(torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32))
    net.eval()
    y1, y2 = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(fused_for_inference(net)(y1, y2), net(y1, y2), atol=1e-5)


def test_inference_is_deterministic_and_any_frame_size_works():
    torch.manual_seed(2)
    net = TwoShotUNet(3, 4, 3, 2).eval()
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (75, 61, 3), dtype=np.uint8)  # not a multiple of 4
    b = rng.integers(0, 256, (75, 61, 3), dtype=np.uint8)
    first = Fuser(net, threads=1).fuse(a, b)
    again = Fuser(net, threads=1).fuse(a, b)
    assert first.shape == a.shape and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    grey = Fuser(net, threads=1).fuse(a[..., 1], b[..., 1])
    assert grey.shape == a.shape[:2]
    u16 = Fuser(net, threads=1).fuse(a.astype(np.uint16) * 257, b.astype(np.uint16) * 257)
    np.testing.assert_allclose(u16, first, atol=1e-3)


def test_large_frames_are_fused_in_blocks_that_match_the_whole(monkeypatch):
    from slidescan.focus.learned import fusion

    torch.manual_seed(4)
    net = TwoShotUNet(3, 4, 3, 2).eval()
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    whole = Fuser(net, threads=1).fuse(a, b)
    monkeypatch.setattr(fusion, "BLOCK_PX", 48)
    monkeypatch.setattr(fusion, "BLOCK_MARGIN_PX", 40)
    blocks = Fuser(net, threads=1).fuse(a, b)
    # a 3-level network sees ~ 30 px: a 40 px margin makes the blocks agree to rounding
    np.testing.assert_allclose(blocks, whole, atol=0.05)


def test_psnr_against_a_hand_computed_case():
    ref = np.zeros((2, 2, 3), np.float32)
    img = ref.copy()
    img[0, 0, 0] = 12.0  # MSE = 144 / 12 = 12
    assert psnr_db(img, ref) == pytest.approx(10 * math.log10(255**2 / 12.0))
    assert psnr_db(ref, ref) == math.inf
    with pytest.raises(ValueError, match="shape"):
        psnr_db(img[0], ref)
    x = np.random.default_rng(0).uniform(0, 255, (32, 32, 3))
    assert ssim(x, x) == pytest.approx(1.0)
    assert ssim(x, 255 - x) < 0.0


def _gaussian_curve(peak: float, sigma: float = 1.6):
    z = np.arange(peak - 6, peak + 6.01, 0.6)
    return z, 0.02 + np.exp(-((z - peak) ** 2) / (2 * sigma**2))


def _metric(z: float, focus: float, contrast: float, sigma: float = 1.6) -> float:
    return contrast * (0.02 + math.exp(-((z - focus) ** 2) / (2 * sigma**2)))


@pytest.mark.parametrize("offset", [-2.0, -0.7, 0.0, 0.4, 1.9])
def test_the_pair_ratio_gives_the_focus_offset_whatever_the_contrast(offset):
    z, v = _gaussian_curve(10.0)
    est = PairEstimator(z, v, 10.0, spacing_um=1.5)
    centre = 20.0
    focus = centre + offset
    for contrast in (0.3, 1.0, 5.0):
        e = est.estimate(
            _metric(centre - 1.5, focus, contrast), _metric(centre + 1.5, focus, contrast)
        )
        assert e.inside
        assert e.offset_um == pytest.approx(offset, abs=0.05)


def test_a_ratio_beyond_the_table_is_clamped_and_flagged():
    z, v = _gaussian_curve(0.0)
    est = PairEstimator(z, v, 0.0, spacing_um=1.5)
    lo, hi = est.range_um
    far_below = est.estimate(1.0, 1e-9)  # the lower shot far sharper: focus far below
    assert not far_below.inside and far_below.offset_um == pytest.approx(lo)
    assert not est.estimate(0.0, 1.0).inside


def test_a_tiny_training_run_lowers_the_loss():
    from slidescan.app.tools.tsva_data import SampleSet
    from slidescan.focus.learned.training import LoopConfig, Trainer
    from slidescan.focus.learned.tsva_training import TSVATask, TSVATrainConfig

    rng = np.random.default_rng(0)
    n, size = 12, 32
    # the textured shot comes first (the flat one has no Brenner gradient) and the network starts
    # as identity on it; the target is that shot 20 levels brighter: quick to learn
    textured = rng.uniform(40, 200, (n, size, size, 3))
    flat = np.full_like(textured, 128.0)
    shots = np.stack([flat, textured], axis=1).astype(np.uint8)
    target = (shots[:, 1].astype(np.float32) + 20.0).astype(np.float16)
    data = SampleSet(shots, target, rng.normal(0, 1, n), np.full(n, 1.5), np.arange(n))
    cfg = TSVATrainConfig(batch_size=4, patch_px=16, steps_per_epoch=15, bn_samples=8)
    torch.manual_seed(0)
    task = TSVATask(data, data, cfg, torch.device("cpu"))
    trainer = Trainer(TwoShotUNet(3, 4, 2, 2), task, LoopConfig(epochs=3, lr=3e-3), task.device)
    history = trainer.fit()
    assert history[-1].train_loss < 0.6 * history[0].train_loss
    assert history[-1].metrics["psnr_db"] > history[0].metrics["psnr_db"]


@pytest.fixture
def tiny_weights(tmp_path):
    """A TSVA checkpoint of a tiny, untrained network (the scan mechanics, not the quality)."""
    torch.manual_seed(0)
    arch = {"channels": 3, "base": 2, "depth": 2, "shots": 2}
    net = TwoShotUNet(**arch)
    meta = {"objective": "20x/0.75", "spacing_um": [0.75, 2.5]}
    path = tmp_path / "tiny_tsva.pt"
    save_checkpoint(path, Checkpoint.of("tsva", "two_shot_unet", arch, net, meta=meta))
    return path


def test_a_corrupt_or_missing_weight_file_is_one_line(tmp_path, tiny_weights):
    from slidescan.focus.learned.tsva import TSVAFocus

    bad = tmp_path / "bad.pt"
    bad.write_bytes(tiny_weights.read_bytes()[:300])
    for path, words in ((bad, "unreadable or corrupt"), (tmp_path / "no.pt", "not found")):
        with pytest.raises(FocusError, match=words) as info:
            TSVAFocus(weights=path)
        assert "\n" not in str(info.value)


def test_tsva_in_a_scan_two_frames_per_tile_and_every_image_fused(tmp_path, tiny_weights):
    from slidescan.app.events import EventLog, FinishReason
    from slidescan.app.plan import FocusSettings, ScanPlan, TissueSettings
    from slidescan.app.runner import ScanRunner
    from slidescan.app.store import ScanReader
    from slidescan.hardware.sim import SimConfig, build_simulator

    sim = build_simulator(
        SimConfig(seed=3, camera={"width": 96, "height": 64}, optics={"fft_workers": 1})
    )
    x0, y0, x1, y1 = sim.truth.slide_bounds_um
    plan = ScanPlan.grid(
        2,
        3,
        ((x0 + x1) / 2, (y0 + y1) / 2),
        sim.field_of_view_um,
        focus=FocusSettings(method="tsva", params={"weights": str(tiny_weights)}),
        tissue=TissueSettings(enabled=False),
        output=str(tmp_path / "tsva.h5"),
    )
    runner = ScanRunner(plan, sim, EventLog())
    runner.start()
    finished = runner.wait(180)
    assert finished.reason is FinishReason.COMPLETED, finished.message
    with ScanReader(tmp_path / "tsva.h5") as r:
        assert r.verify() == [] and r.pending() == []
        current = r.current()
        first = current[current["index"] == 0][0]
        assert first["image_source"] == b"capture" and first["calibration"]  # the sweep
        fused = current[current["index"] != 0]
        assert set(fused["image_source"]) == {b"made"} and set(fused["made_kind"]) == {b"fused"}
        assert (fused["frames"] == 2).all() and (fused["shot_count"] == 2).all()
        # the focus estimated from each pair is recorded (the flat simulated slide: close)
        err = np.abs(fused["z_um"] - fused["true_focus_um"])
        assert np.isfinite(fused["z_um"]).all() and err.max() < 0.5
        for i in np.flatnonzero(~r.tiles["superseded"] & (r.tiles["index"] != 0)):
            (za, a), (zb, b) = r.shots(int(i))
            assert abs(abs(za - zb) - 2 * DEFAULT_SPACING_UM) < 0.05  # two shots 2 dD apart


def test_focus_eval_mode_tsva_scores_every_method_by_offset(tmp_path, tiny_weights, capsys):
    from slidescan.app.tools.simdata import render_clean
    from slidescan.hardware.sim import SimConfig, build_simulator
    from slidescan.hardware.stackfile import StackWriter

    single = tmp_path / "single.pt"
    torch.manual_seed(1)
    arch = {"channels": 3, "base": 2, "depth": 2, "shots": 1}
    save_checkpoint(single, Checkpoint.of("tsva", "two_shot_unet", arch, TwoShotUNet(**arch)))
    sim = build_simulator(SimConfig(seed=4, camera={"width": 48, "height": 40}))
    x, y = sim.truth.slide_bounds_um[0] + 900, sim.truth.slide_bounds_um[1] + 900
    focus = float(sim.true_focus_um(x, y))
    z = focus + np.arange(-6.0, 6.01, 0.25)
    images = np.stack([sim.render(x, y, float(zk)) for zk in z])
    path = tmp_path / "stacks.h5"
    with StackWriter(path, sim.optics, source="simulator") as w:
        w.append(images, z, true_focus_um=focus, reference=render_clean(sim, x, y, focus))
    code = main(
        [
            "focus",
            "eval",
            "--mode",
            "tsva",
            "--stacks",
            str(path),
            "--param",
            f"weights={tiny_weights}",
            "--spacing",
            "1.5",
            "--single-weights",
            str(single),
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["reference"] == ["reference (noise-free render)"]
    offsets = [row["offset_um"] for row in report["by_offset"]]
    assert offsets == pytest.approx(np.arange(-3.0, 3.01, 0.5))
    methods = ("tsva", "unet_single", "sharper_shot", "deconvolution", "in_focus_capture")
    for row in report["by_offset"]:
        assert set(methods) <= set(row)
        for m in methods:
            assert 0 < row[m]["psnr_db"] < 100 and -1 <= row[m]["ssim"] <= 1
    assert set(methods) <= set(report["summary"])
    # the in-focus capture is the same at every offset; a shot in focus (e = dD) beats one
    # 1.5 um from it (e = 3 um)
    capture = {round(row["in_focus_capture"]["psnr_db"], 6) for row in report["by_offset"]}
    assert len(capture) == 1
    by = {row["offset_um"]: row for row in report["by_offset"]}
    assert report["spacing_um"] == 1.5
    assert by[1.5]["sharper_shot"]["psnr_db"] > by[3.0]["sharper_shot"]["psnr_db"]


def test_with_no_reference_the_answer_itself_is_not_scored(tmp_path, tiny_weights, capsys):
    """A recorded stack has no noise-free render: the plane nearest focus is the yardstick, so
    the in-focus capture (that plane) and offsets whose shot is that plane are left out, and
    the JSON stays strict (no Infinity)."""
    from slidescan.hardware.sim import SimConfig, build_simulator
    from slidescan.hardware.stackfile import StackWriter

    sim = build_simulator(SimConfig(seed=5, camera={"width": 40, "height": 32}))
    x, y = sim.truth.slide_bounds_um[0] + 900, sim.truth.slide_bounds_um[1] + 900
    focus = float(sim.true_focus_um(x, y))
    z = focus + np.arange(-5.0, 5.01, 0.5)
    images = np.stack([sim.render(x, y, float(zk)) for zk in z])
    path = tmp_path / "recorded.h5"
    with StackWriter(path, sim.optics, source="recorded") as w:
        w.append(images, z, true_focus_um=focus)
    args = ["focus", "eval", "--mode", "tsva", "--stacks", str(path), "--spacing", "1"]
    args += ["--param", f"weights={tiny_weights}", "--json"]
    assert main(args) == 0

    def no_constants(name):
        raise AssertionError(f"not strict JSON: {name}")

    report = json.loads(capsys.readouterr().out, parse_constant=no_constants)
    assert report["reference"] == ["nearest plane (no reference in the file)"]
    by = {row["offset_um"]: row for row in report["by_offset"]}
    # e = -1 and +1 put a shot on the focus plane itself (F + e -/+ 1 um = F)
    assert report["skipped_cells"] == 2
    assert "tsva" not in by[1.0] and "tsva" not in by[-1.0]
    assert "in_focus_capture" not in report["summary"]
    for e in (-3.0, -0.5, 0.0, 0.5, 3.0):
        assert math.isfinite(by[e]["tsva"]["psnr_db"])
        assert math.isfinite(by[e]["sharper_shot"]["psnr_db"])
    assert math.isfinite(report["summary"]["sharper_shot"]["psnr_db"])


@pytest.mark.parametrize("method, shots", [("tsva", 2), ("unet_single", 1)])
def test_the_shipped_networks_load_and_fuse_a_pair(method, shots):
    from slidescan.focus.learned.checkpoint import load_checkpoint, shipped_path
    from slidescan.focus.learned.tsva import load_fuser

    path = shipped_path(method, "20x/0.75")
    ckpt = load_checkpoint(path, "tsva")  # the checksum is verified on load
    assert ckpt.config["shots"] == shots and ckpt.trained["seed"] == 0
    assert "slidescan train tsva" in ckpt.trained["command"]
    assert ckpt.meta["loss"] == "l1" and "## Evaluation" in ckpt.card
    assert path.with_suffix(".md").read_text(encoding="utf-8") == ckpt.card
    fuser, _ = load_fuser(path, threads=1, device="cpu")
    rng = np.random.default_rng(3)
    a = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    b = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    out = fuser.fuse(a, b if shots == 2 else None)
    assert out.shape == a.shape and np.isfinite(out).all()
    np.testing.assert_array_equal(out, fuser.fuse(a, b if shots == 2 else None))
