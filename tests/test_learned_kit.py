"""The learned-model kit: one checkpoint format, one training loop, simulator data for any
method (diffcnn's own behaviour is in test_diffcnn*.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from slidescan.focus.learned import architectures
from slidescan.focus.learned.checkpoint import (
    Checkpoint,
    load_checkpoint,
    save_checkpoint,
    shipped_path,
    state_checksum,
)
from slidescan.focus.learned.mobilenet import MobileNetV2
from slidescan.focus.learned.training import resolve_device
from slidescan.focus.protocol import FocusError

DATA = Path(__file__).resolve().parent / "data"
CONFIG = {"in_channels": 2, "num_outputs": 1, "width_mult": 0.35, "last_channels": 32}


def _checkpoint(**parts) -> Checkpoint:
    torch.manual_seed(0)
    model = MobileNetV2(**CONFIG)
    return Checkpoint.of("toy", "mobilenetv2", CONFIG, model, **parts)


def test_round_trip_keeps_everything_a_method_needs(tmp_path):
    ck = _checkpoint(
        normalisation={"mean": 1.5},
        meta={"objective": "20x/0.75", "range": [1, 2]},
        trained={"seed": 3},
        card="# toy model card",
    )
    path = save_checkpoint(tmp_path / "m.pt", ck)
    back = load_checkpoint(path, "toy")
    assert (back.method, back.architecture, back.config) == ("toy", "mobilenetv2", CONFIG)
    assert back.normalisation == {"mean": 1.5} and back.meta["range"] == [1, 2]
    assert back.trained == {"seed": 3} and back.card == "# toy model card"
    assert back.checksum == ck.checksum
    model = back.build()
    assert not model.training
    x = torch.randn(2, 2, 32, 32)
    reference = MobileNetV2(**CONFIG)
    reference.load_state_dict(ck.state_dict)
    with torch.no_grad():
        assert torch.equal(model(x), reference.eval()(x))


def test_every_bad_file_is_a_one_line_error(tmp_path):
    good = save_checkpoint(tmp_path / "good.pt", _checkpoint())
    cases = {}
    cases["missing"] = tmp_path / "nope.pt"
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"PK\x03\x04 not a checkpoint" * 20)
    cases["corrupt"] = junk
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases["corrupt"] = cut
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    cases["not a slidescan model"] = other
    # another method's checkpoint
    cases["holds a 'toy' model, not 'diffcnn'"] = good
    for expected, path in cases.items():
        with pytest.raises(FocusError) as e:
            load_checkpoint(path, "diffcnn" if "diffcnn" in expected else "toy")
        text = str(e.value)
        assert "\n" not in text and (expected.split()[0] in text or "not found" in text), text


def test_tampered_weights_fail_their_checksum(tmp_path):
    ck = _checkpoint()
    path = save_checkpoint(tmp_path / "m.pt", ck)
    blob = torch.load(path, weights_only=True)
    name = next(k for k, v in blob["state_dict"].items() if v.dtype == torch.float32)
    blob["state_dict"][name] = blob["state_dict"][name] + 1e-3
    torch.save(blob, path)
    with pytest.raises(FocusError, match="checksum"):
        load_checkpoint(path, "toy")


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path):
    ck = _checkpoint()
    ck.config = {**CONFIG, "last_channels": 64}
    path = save_checkpoint(tmp_path / "m.pt", ck)
    with pytest.raises(FocusError, match="do not fit") as e:
        load_checkpoint(path, "toy").build()
    assert "\n" not in str(e.value)
    ck.architecture = "resnet9000"
    save_checkpoint(path, ck)
    with pytest.raises(FocusError, match="unknown network architecture"):
        load_checkpoint(path, "toy").build()


def test_checksum_covers_names_shapes_and_values():
    a = {"w": torch.zeros(2, 3), "n": torch.tensor(0)}
    assert state_checksum(a) == state_checksum({k: v.clone() for k, v in a.items()})
    assert state_checksum(a) != state_checksum({"w": torch.zeros(3, 2), "n": torch.tensor(0)})
    assert state_checksum(a) != state_checksum({"v": torch.zeros(2, 3), "n": torch.tensor(0)})
    assert state_checksum(a) != state_checksum({"w": torch.zeros(2, 3), "n": torch.tensor(1)})


def test_slidescan_0_1_diffcnn_files_are_read(tmp_path):
    """The 0.1 format kept architecture and normalisation in its meta; it loads unchanged."""
    ck = load_checkpoint(shipped_path("diffcnn", "20x/0.75"), "diffcnn")
    meta = {**ck.meta, **ck.normalisation, "trained": ck.trained}
    meta.update(in_channels=6, width_mult=0.35, last_channels=256)
    legacy = tmp_path / "old.pt"
    torch.save(
        {"format": "slidescan-diffcnn", "version": 1, "state_dict": ck.state_dict, "meta": meta},
        legacy,
    )
    old = load_checkpoint(legacy, "diffcnn")
    assert old.architecture == "mobilenetv2" and old.config == ck.config
    assert old.normalisation == ck.normalisation and old.checksum == ck.checksum


def test_shipped_weights_are_kit_checkpoints_with_their_card():
    path = shipped_path("diffcnn", "20x/0.75")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    assert blob["format"] == "slidescan-model" and blob["method"] == "diffcnn"
    assert blob["card"] == path.with_suffix(".md").read_text(encoding="utf-8")


def test_architectures_are_built_by_name():
    net = architectures.build("mobilenetv2", CONFIG)
    assert isinstance(net, MobileNetV2) and net.in_channels == 2
    with pytest.raises(FocusError, match="does not take"):
        architectures.build("mobilenetv2", {"channels": 3})


def test_device_choice():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            resolve_device("cuda")


# -- the training loop ---------------------------------------------------------------------------
def _reference_module():
    spec = importlib.util.spec_from_file_location("make_train", DATA / "make_training_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny_trainer(make, epochs: int):
    from slidescan.focus.learned.diffcnn_training import (
        DiffCNNTask,
        DiffCNNTrainConfig,
        PatchDataset,
    )
    from slidescan.focus.learned.preprocess import InputSpec
    from slidescan.focus.learned.training import LoopConfig, Trainer

    cfg = make.CONFIG
    train = PatchDataset(**make.synthetic_patches(192, 1))
    val = PatchDataset(**make.synthetic_patches(48, 2))
    torch.manual_seed(0)
    model = MobileNetV2(2, 1, 0.35, last_channels=64)
    task_cfg = DiffCNNTrainConfig(batch_size=cfg["batch_size"], phase1_fraction=0.5)
    cpu = torch.device("cpu")
    task = DiffCNNTask(train, val, InputSpec(**make.SPEC), task_cfg, epochs, 5.25, 1.6, cpu)
    loop = LoopConfig(epochs=epochs, lr=cfg["lr"], seed=cfg["seed"])
    return Trainer(model, task, loop, cpu)


def test_diffcnn_on_the_kit_loop_trains_as_before_step_for_step():
    """The history of a tiny run recorded with the training code before the move (the
    reference) is reproduced exactly: same batches, augmentations, schedule, batch-norm
    re-estimation and validation."""
    torch.set_num_threads(1)
    make = _reference_module()
    ref = json.loads((DATA / "training_reference.json").read_text())["history"]
    history = _tiny_trainer(make, make.CONFIG["epochs"]).fit()
    got = [
        {
            "train_loss": h.train_loss,
            "val_patch_mae_um": h.metrics["patch_mae_um"],
            "val_tile_mae_um": h.metrics["tile_mae_um"],
            "val_tile_p95_um": h.metrics["tile_p95_um"],
        }
        for h in history
    ]
    want = [{k: r[k] for k in got[0]} for r in ref]
    assert got == want


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path):
    torch.set_num_threads(1)
    make = _reference_module()
    whole = _tiny_trainer(make, 3)
    whole.fit()
    first = _tiny_trainer(make, 3)
    state = tmp_path / "state.pt"
    with pytest.raises(_Stop):  # killed after epoch 2 (its state is saved before on_epoch)
        first.fit(state_path=state, on_epoch=lambda h: _stop_after(h, 2))
    resumed = _tiny_trainer(make, 3)
    rng = resumed.load_state(state)
    assert resumed.state.epoch == 2
    resumed.fit(state_path=state, rng=rng)
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    other = _tiny_trainer(make, 4)  # other settings: refused
    with pytest.raises(ValueError, match="different training settings"):
        other.load_state(state)


class _Stop(Exception):
    pass


def _stop_after(h, epoch: int) -> None:
    if h.epoch == epoch:
        raise _Stop


# -- simulator data ------------------------------------------------------------------------------
def test_clean_render_is_the_noise_free_camera_image():
    from slidescan.app.tools.simdata import render_clean
    from slidescan.hardware.sim import build_simulator

    sim = build_simulator(camera={"width": 64, "height": 64}, optics={"fft_workers": 1})
    x, y = 25_000.0, 10_000.0
    z = sim.truth.true_focus_um(x, y)
    clean = render_clean(sim, x, y, z)
    expected = sim.render(x, y, z, noise=False).astype(np.float32)
    assert clean.dtype == np.float32 and clean.shape == expected.shape
    assert np.abs(clean - expected).max() <= 0.5 + 1e-4  # only the camera's rounding
    noisy = sim.render(x, y, z).astype(np.float32)
    assert np.abs(noisy - clean).mean() > 0.5  # a real frame has noise the target has not
