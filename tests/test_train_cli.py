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
