"""Regenerate `training_reference.json`: the loss and validation history of a tiny diffcnn
training run (synthetic blurred-texture patches, 4 epochs, CPU, one thread).

Recorded with the training code *before* diffcnn moved onto the learned-model kit's generic
training loop (commit 4b08c54), so `tests/test_learned_kit.py` can check that the move left
training unchanged, step for step:

    python tests/data/make_training_reference.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

HERE = Path(__file__).resolve().parent
OUT = HERE / "training_reference.json"


def synthetic_patches(n: int, seed: int) -> dict[str, np.ndarray]:
    """Pairs of a random texture blurred by a distance-dependent Gaussian (a toy defocus):
    pairs (n, 2, 1, 32, 32), y_um, patch_std, tile."""
    rng = np.random.default_rng(seed)
    pairs = np.empty((n, 2, 1, 32, 32), np.float32)
    y = rng.uniform(2.5, 8.0, n)
    for i in range(n):
        t = rng.random((48, 48))
        for k, d in enumerate((y[i], y[i] - 2.0)):
            pairs[i, k, 0] = gaussian_filter(t, 0.4 * d)[8:40, 8:40]
    std = pairs.mean(axis=1).reshape(n, -1).std(axis=1)
    return {"pairs": pairs, "y_um": y, "patch_std": std, "tile": np.arange(n) // 2}


#: The run: MobileNetV2(2 channels, width 0.35, 64 last channels), this config, seed 0.
CONFIG = {"epochs": 4, "batch_size": 32, "lr": 1e-2, "seed": 0, "phase1_fraction": 0.5}
SPEC = {"patch_px": 32, "bin": 1, "pixel_size_um": 0.5, "colour": "grey", "max_patches": 8}


def main() -> None:
    import torch

    from slidescan.focus.learned.mobilenet import MobileNetV2
    from slidescan.focus.learned.preprocess import InputSpec
    from slidescan.focus.learned.training import PatchDataset, TrainConfig, Trainer, fit

    torch.set_num_threads(1)
    torch.manual_seed(0)
    train = PatchDataset(**synthetic_patches(192, 1))
    val = PatchDataset(**synthetic_patches(48, 2))
    model = MobileNetV2(2, 1, 0.35, last_channels=64)
    cfg = TrainConfig(**CONFIG)
    trainer = Trainer(model, InputSpec(**SPEC), cfg, 5.25, 1.6, torch.device("cpu"), 6)
    history = fit(trainer, train, val)
    rows = [
        {
            k: getattr(h, k)
            for k in (
                "epoch",
                "phase",
                "train_loss",
                "val_patch_mae_um",
                "val_tile_mae_um",
                "val_tile_p95_um",
            )
        }
        for h in history
    ]
    OUT.write_text(json.dumps({"config": CONFIG, "history": rows}, indent=1) + "\n")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
