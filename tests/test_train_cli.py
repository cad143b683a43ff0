"""`slidescan train tsva|deepfocus` end to end on a few rendered samples: the weights and card
written, the provenance in the checkpoint, --resume picking up the saved state, and the one-line
refusals. The trainings themselves are tested in test_tsva*.py / test_deepfocus_model.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from slidescan.app.cli import main
from slidescan.focus.learned.checkpoint import load_checkpoint

TSVA = ["--samples", "4", "--val-samples", "2", "--epochs", "1", "--steps", "2"]
TSVA += ["--batch-size", "2", "--patch", "32", "--depth", "2", "--threads", "1", "--workers", "1"]


def test_train_tsva_writes_weights_and_card_and_resumes(tmp_path, tissue_dir, capsys, monkeypatch):
    common = ["train", "tsva", *TSVA, "--cache", str(tmp_path / "cache")]
    common += ["--tissue", str(tissue_dir), "--out", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", ["slidescan", *common])  # what the card records
    assert main([*common, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    ckpt = load_checkpoint(summary["weights"], "tsva")
    t = ckpt.trained
    assert t["seed"] == 0 and "slidescan train tsva" in t["command"] and not t["resumed"]
    assert t["parameters"] == summary["parameters"] > 0
    assert "procedural H&E and IHC" in t["data"]["train_specimens"]
    card = Path(summary["model_card"]).read_text(encoding="utf-8")
    assert ckpt.card.startswith("#") and ckpt.card == card

    assert main(common) == 0
    captured = capsys.readouterr()
    assert "resumed" not in captured.err  # no --resume: a fresh run
    assert main([*common, "--resume"]) == 0
    captured = capsys.readouterr()
    assert "resumed at epoch 1 of 1" in captured.err
    assert "held-out validation: PSNR" in captured.out
    assert load_checkpoint(summary["weights"], "tsva").trained["resumed"]


def test_train_tsva_can_start_from_single_input_weights(tmp_path, tissue_dir, capsys):
    common = ["train", "tsva", *TSVA, "--cache", str(tmp_path / "cache")]
    common += ["--tissue", str(tissue_dir), "--json"]
    assert main([*common, "--shots", "1", "--out", str(tmp_path / "single")]) == 0
    single = json.loads(capsys.readouterr().out)["weights"]
    assert main([*common, "--init-from", single, "--out", str(tmp_path / "pair")]) == 0
    ckpt = load_checkpoint(json.loads(capsys.readouterr().out)["weights"], "tsva")
    start = ckpt.trained["initialised_from"]
    assert start["shots"] == 1 and start["checksum"] == load_checkpoint(single, "tsva").checksum[:8]
    assert ckpt.config["shots"] == 2 and "the second path's weights at zero" in ckpt.card
    # two-shot weights cannot start the single-input net; a width mismatch is refused too
    pair = str(tmp_path / "pair" / "tsva_20x_075.pt")
    for extra, message in (
        (["--shots", "1", "--init-from", pair], "two-shot weights cannot start"),
        (["--base", "4", "--init-from", single], "this run trains"),
        (["--init-from", str(tmp_path / "none.pt")], "none.pt"),
    ):
        assert main([*common, *extra, "--out", str(tmp_path / "x")]) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["tsva", "--epochs", "0"], "train tsva: --epochs must be at least 1"),
        (["tsva", "--thin-fraction", "2"], "train tsva: --thin-fraction must be between 0 and 1"),
        (
            ["tsva", "--bayer-fraction", "-1"],
            "train tsva: --bayer-fraction must be between 0 and 1",
        ),
        (["deepfocus", "--scenes", "0"], "train deepfocus: --scenes must be at least 1"),
        (["diffcnn", "--samples", "0"], "train diffcnn: --samples must be at least 1"),
        (["tsva", "--tissue", "/no/such/folder"], "real tissue images not found at /no/such"),
        (["deepfocus", "--lr", "0"], "train deepfocus: --lr and --width must be positive"),
        (
            ["deepfocus", "--holdout-stacks", "x", "--objective", "7x/0.1"],
            "train deepfocus: unknown objective '7x/0.1'",
        ),
        (
            ["deepfocus", "--holdout-stacks", "x", "--z-step", "0"],
            "train deepfocus: --z-range and --z-step must be positive",
        ),
        (
            ["deepfocus", "--holdout-stacks", "x", "--z-range", "inf"],
            "train deepfocus: --z-range and --z-step must be positive",
        ),
        (
            ["deepfocus", "--holdout-stacks", "x", "--z-range", "20", "--z-step", "0.3"],
            "train deepfocus: --z-range must be a whole number of --z-step",
        ),
        (
            ["deepfocus", "--holdout-stacks", "x", "--size", "64"],
            "train deepfocus: --size must be at least 128 px",
        ),
    ],
)
def test_bad_training_arguments_are_one_line(args, message, capsys):
    assert main(["train", *args]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_resume_without_a_state_is_one_line(tmp_path, tissue_dir, capsys):
    code = main(
        ["train", "tsva", *TSVA, "--cache", str(tmp_path / "cache"), "--tissue", str(tissue_dir)]
        + ["--out", str(tmp_path / "empty"), "--resume"]
    )
    assert code == 1
    assert "--resume: no training state at" in capsys.readouterr().err


def test_train_deepfocus_writes_held_out_stacks(tmp_path, tissue_dir, capsys):
    from slidescan.hardware.stackfile import open_stacks

    out = tmp_path / "stacks"
    args = ["train", "deepfocus", "--holdout-stacks", str(out), "--tissue", str(tissue_dir)]
    args += ["--objective", "10x/0.30", "--positions", "1", "--size", "128"]
    assert main([*args, "--z-range", "2", "--z-step", "1", "--seed", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    names = sorted(s["name"] for s in report["stacks"])
    assert names == ["he_procedural", "he_real", "ihc_procedural", "ihc_skimage"]
    with open_stacks(out / "holdout_he_real.h5") as f:
        stack = f[0]
        assert stack.plane_shape[:2] == (128, 128)
        assert stack.defocus_um.tolist() == pytest.approx([-2, -1, 0, 1, 2])
        assert f.optics.na == pytest.approx(0.30)
