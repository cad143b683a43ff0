"""TSVA's training task for the kit's loop (`focus.learned.training`): pure torch and numpy.

The data (made once by the offline tool `slidescan.app.tools.tsva_data` from the simulator):
per sample two shots (uint8, acquisition order) and the noise-free in-focus target (0-255).
Each step draws a batch of random `patch_px` crops (the same crop of the shots and the
target), a random flip / 90-degree rotation, and orders the two shots as inference does: the
sharper by the Brenner gradient first (`fusion.sharper_first`). The loss is MSE as Li et al.
(or L1 or SSIM, `TSVATrainConfig.loss`, to compare). `shots=1` trains the paper's ablation,
the single-input U-Net fed the sharper shot, the same way.

Validation: the full validation fields through the network in eval mode; PSNR (dB, 0-255
scale, every pixel and channel) and SSIM against the targets, overall and by prediction error.
After each epoch the batch-norm statistics are re-estimated on training crops.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from slidescan.focus.learned.fusion import sharper_first
from slidescan.focus.learned.image_losses import image_loss
from slidescan.focus.learned.training import TrainingTask, recalibrate_batchnorm


@dataclass
class TSVATrainConfig:
    """TSVA's own training settings (the loop's are in `LoopConfig`)."""

    batch_size: int = 12
    patch_px: int = 128
    steps_per_epoch: int = 400
    loss: str = "mse"
    shots: int = 2
    augment: bool = True
    #: training crops the batch-norm statistics are re-estimated on after each epoch
    bn_samples: int = 192
    #: validation fields scored each epoch (all of them: None)
    val_limit: int | None = None


def _crop_batch(
    shots: np.ndarray,
    target: np.ndarray,
    idx: np.ndarray,
    size: int,
    rng: np.random.Generator,
    augment: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(B, 2, C, P, P) float32 [0, 1] shots (sharper first) and (B, C, P, P) targets."""
    h, w = shots.shape[2:4]
    xs, ts = [], []
    for i in idx:
        y0 = int(rng.integers(0, h - size + 1))
        x0 = int(rng.integers(0, w - size + 1))
        a = shots[i, :, y0 : y0 + size, x0 : x0 + size]  # (2, P, P, C)
        t = target[i, y0 : y0 + size, x0 : x0 + size]  # (P, P, C)
        if augment:
            k = int(rng.integers(4))
            flip = bool(rng.random() < 0.5)
            a = np.rot90(a, k, axes=(1, 2))
            t = np.rot90(t, k, axes=(0, 1))
            if flip:
                a, t = a[:, :, ::-1], t[:, ::-1]
        first, second = sharper_first(a[0], a[1])
        xs.append(np.stack([first, second]).transpose(0, 3, 1, 2))
        ts.append(np.asarray(t).transpose(2, 0, 1))
    x = np.ascontiguousarray(np.stack(xs), dtype=np.float32) / np.float32(255.0)
    y = np.ascontiguousarray(np.stack(ts), dtype=np.float32) / np.float32(255.0)
    return x, y


def forward(model: torch.nn.Module, x: torch.Tensor, shots: int) -> torch.Tensor:
    """The network on a (B, 2, C, H, W) batch of shot pairs, sharper first."""
    return model(x[:, 0], x[:, 1]) if shots == 2 else model(x[:, 0])


def psnr_batch(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """PSNR per image (0-255 scale) of (N, ...) arrays on the 0-255 scale."""
    mse = np.mean(
        (pred.astype(np.float64) - target.astype(np.float64)) ** 2, axis=tuple(range(1, pred.ndim))
    )
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(255.0**2 / mse)


class TSVATask(TrainingTask):
    """TSVA (or the single-input U-Net) on rendered samples; see the module docstring."""

    def __init__(self, train: Any, val: Any, cfg: TSVATrainConfig, device: torch.device) -> None:
        if cfg.shots not in (1, 2):
            raise ValueError(f"shots must be 1 or 2, got {cfg.shots}")
        if min(train.shots.shape[2:4]) < cfg.patch_px:
            raise ValueError(
                f"fields of {train.shots.shape[2:4]} px are smaller than the "
                f"{cfg.patch_px} px crops"
            )
        self.train, self.val, self.cfg, self.device = train, val, cfg, device
        self.loss_fn = image_loss(cfg.loss)

    def describe(self) -> dict[str, Any]:
        return {**asdict(self.cfg), "train": len(self.train), "val": len(self.val)}

    def steps_per_epoch(self) -> int:
        return self.cfg.steps_per_epoch

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[Any]:
        n, b = len(self.train), self.cfg.batch_size
        for _ in range(self.cfg.steps_per_epoch):
            idx = rng.integers(0, n, b)
            yield _crop_batch(
                self.train.shots, self.train.target, idx, self.cfg.patch_px, rng, self.cfg.augment
            )

    def loss(self, model: torch.nn.Module, batch: Any, epoch: int) -> tuple[torch.Tensor, int]:
        x, y = (torch.from_numpy(a).to(self.device) for a in batch)
        return self.loss_fn(forward(model, x, self.cfg.shots), y), len(x)

    def after_epoch(self, model: torch.nn.Module, rng: np.random.Generator) -> None:
        b = self.cfg.batch_size
        k = max(1, math.ceil(self.cfg.bn_samples / b))
        batches = [
            _crop_batch(
                self.train.shots,
                self.train.target,
                rng.integers(0, len(self.train), b),
                self.cfg.patch_px,
                rng,
                self.cfg.augment,
            )[0]
            for _ in range(k)
        ]
        shots = self.cfg.shots
        inputs = (torch.from_numpy(x).to(self.device) for x in batches)

        class _Wrap(torch.nn.Module):
            def __init__(self, m: torch.nn.Module) -> None:
                super().__init__()
                self.m = m

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return forward(self.m, x, shots)

        recalibrate_batchnorm(_Wrap(model), inputs)

    @torch.no_grad()
    def predict(self, model: torch.nn.Module, shots: np.ndarray) -> np.ndarray:
        """Fused fields (N, H, W, C) on the 0-255 scale from (N, 2, H, W, C) uint8 shots."""
        model.eval()
        out = []
        for pair in shots:
            first, second = sharper_first(pair[0], pair[1])
            x = np.stack([first, second]).transpose(0, 3, 1, 2)[None].astype(np.float32) / 255.0
            y = forward(model, torch.from_numpy(x).to(self.device), self.cfg.shots)
            out.append(np.clip(y[0].cpu().numpy().transpose(1, 2, 0) * 255.0, 0.0, 255.0))
        return np.stack(out)

    def validate(self, model: torch.nn.Module) -> dict[str, float]:
        val = self.val
        n = len(val) if self.cfg.val_limit is None else min(len(val), self.cfg.val_limit)
        pred = self.predict(model, val.shots[:n])
        target = val.target[:n].astype(np.float32)
        p = psnr_batch(pred, target)
        err = np.abs(val.error_um[:n])
        out = {"psnr_db": float(np.mean(p)), "psnr_median_db": float(np.median(p))}
        for lo, hi in ((0.0, 1.0), (1.0, 2.0), (2.0, 4.0)):
            m = (err >= lo) & (err < hi)
            if m.any():
                out[f"psnr_db_e{lo:g}_{hi:g}"] = float(np.mean(p[m]))
        sharper = np.stack([sharper_first(s[0], s[1])[0] for s in val.shots[:n]])
        out["sharper_shot_psnr_db"] = float(np.mean(psnr_batch(sharper.astype(np.float32), target)))
        return out
