"""DeepFocus's training task for the kit's loop (`focus.learned.training`): pure torch and numpy.

The data (made once by the offline tool `slidescan.app.tools.deepfocus_data`): luminance patches
with their blur score and validity. Each step draws a random batch, applies a flip / 90-degree
rotation and an intensity gain (0.6-1.4, clipped at 255, so some patches saturate), and
standardises each patch as inference does (`deepfocus_score.standardise`).

Two outputs: the score (smooth-L1 on valid patches; blank and textureless ones carry no usable
label) and a validity logit (binary cross-entropy on every patch). Validation: the score's MAE
on valid patches, overall and per objective, and the validity accuracy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from slidescan.focus.learned.deepfocus_score import standardise
from slidescan.focus.learned.training import TrainingTask, recalibrate_batchnorm


@dataclass
class DeepFocusTrainConfig:
    batch_size: int = 64
    steps_per_epoch: int = 300
    augment: bool = True
    gain_range: tuple[float, float] = (0.6, 1.4)
    #: smooth-L1 transition, in score units (ln px)
    beta: float = 0.1
    #: weight of the validity loss beside the score loss
    validity_weight: float = 0.3
    bn_samples: int = 512


def make_batch(
    patches: np.ndarray,
    idx: np.ndarray,
    rng: np.random.Generator | None,
    gain_range: tuple[float, float] = (0.6, 1.4),
) -> np.ndarray:
    """(B, 1, P, P) standardised float32 inputs; augmented when `rng` is given."""
    x = patches[idx].astype(np.float32)
    if rng is not None:
        out = np.empty_like(x)
        for k in range(len(x)):
            a = np.rot90(x[k], int(rng.integers(4)))
            if rng.random() < 0.5:
                a = a[:, ::-1]
            out[k] = np.clip(a * rng.uniform(*gain_range), 0.0, 255.0)
        x = out
    return standardise(x)[:, None]


class DeepFocusTask(TrainingTask):
    def __init__(self, train: Any, val: Any, config: DeepFocusTrainConfig, device: torch.device):
        self.train = train
        self.val = val
        self.config = config
        self.device = device
        self.objective_names: list[str] = []

    def steps_per_epoch(self) -> int:
        return self.config.steps_per_epoch

    def describe(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "train": len(self.train), "val": len(self.val)}

    def _tensors(self, idx: np.ndarray, rng: np.random.Generator | None):
        c = self.config
        x = make_batch(self.train.patches, idx, rng, c.gain_range)
        score = np.nan_to_num(self.train.score[idx], nan=0.0)
        return (
            torch.from_numpy(x).to(self.device),
            torch.from_numpy(score.astype(np.float32)).to(self.device),
            torch.from_numpy(self.train.valid[idx].astype(np.float32)).to(self.device),
        )

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[Any]:
        n = len(self.train)
        for _ in range(self.steps_per_epoch()):
            idx = rng.integers(0, n, self.config.batch_size)
            yield self._tensors(idx, rng if self.config.augment else None)

    def loss(self, model: torch.nn.Module, batch: Any, epoch: int) -> tuple[torch.Tensor, int]:
        x, score, valid = batch
        out = model(x)
        mask = valid > 0.5
        if bool(mask.any()):
            reg = F.smooth_l1_loss(out[mask, 0], score[mask], beta=self.config.beta)
        else:
            reg = out[:, 0].sum() * 0.0
        cls = F.binary_cross_entropy_with_logits(out[:, 1], valid)
        return reg + self.config.validity_weight * cls, len(x)

    def after_epoch(self, model: torch.nn.Module, rng: np.random.Generator) -> None:
        n = len(self.train)
        c = self.config

        def inputs() -> Iterator[torch.Tensor]:
            for _ in range(max(1, c.bn_samples // c.batch_size)):
                idx = rng.integers(0, n, c.batch_size)
                yield self._tensors(idx, rng)[0]

        recalibrate_batchnorm(model, inputs())

    @torch.no_grad()
    def predict(self, model: torch.nn.Module, patches: np.ndarray) -> np.ndarray:
        """(N, 2) outputs for uint8 patches, in eval mode, in chunks."""
        model.eval()
        outs = []
        for i in range(0, len(patches), 256):
            x = torch.from_numpy(
                make_batch(patches, np.arange(i, min(i + 256, len(patches))), None)
            )
            outs.append(model(x.to(self.device)).float().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, 2), np.float32)

    def validate(self, model: torch.nn.Module) -> dict[str, float]:
        out = self.predict(model, self.val.patches)
        valid = self.val.valid.astype(bool)
        err = np.abs(out[valid, 0] - self.val.score[valid])
        metrics = {
            "score_mae": float(err.mean()) if err.size else float("nan"),
            "score_p90": float(np.percentile(err, 90)) if err.size else float("nan"),
            "validity_acc": float(((out[:, 1] > 0) == valid).mean()),
        }
        for i, name in enumerate(self.objective_names):
            sel = valid & (self.val.objective == i)
            if sel.any():
                metrics[f"score_mae_{name}"] = float(
                    np.abs(out[sel, 0] - self.val.score[sel]).mean()
                )
        return metrics
