"""diffcnn's training task for the kit's loop (`focus.learned.training`): pure torch.

The data (made once by the offline tool `slidescan.app.tools.train_diffcnn` from the
simulator) is a set of patch pairs with labels: `pairs` (N, 2, C, P, P) intensities, `y_um` the
distance from the first shot to focus, `patch_std` and `tile` (which frame pair a patch came
from). Training follows Dastidar & Ethirajan: smooth-L1 weighted by patch std (phase 1), then
also by the distance to focus (phase 2). After each epoch the batch-norm statistics are
re-estimated on training patches. Validation reports the tile-level error the scanner will
see: patches of one pair combined by the std-weighted median, as at inference.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from slidescan.focus.learned.losses import weighted_smooth_l1
from slidescan.focus.learned.preprocess import InputSpec, network_input
from slidescan.focus.learned.training import TrainingTask, recalibrate_batchnorm


@dataclass
class PatchDataset:
    """Patch pairs with labels; arrays share their first axis."""

    pairs: np.ndarray  # (N, 2, C, P, P) float16/float32 intensities in [0, 1]
    y_um: np.ndarray  # (N,) z_focus - z_first
    patch_std: np.ndarray  # (N,)
    tile: np.ndarray  # (N,) int: the frame pair each patch came from

    def __post_init__(self) -> None:
        n = len(self.pairs)
        for name in ("y_um", "patch_std", "tile"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, pairs has {n}")

    def __len__(self) -> int:
        return len(self.pairs)


@dataclass
class DiffCNNTrainConfig:
    """diffcnn's own training settings (the loop's are in `LoopConfig`)."""

    batch_size: int = 128
    #: fraction of the epochs trained in phase 1 (std weights only); the rest is phase 2
    phase1_fraction: float = 0.6
    beta_um: float = 0.5
    distance_scale_um: float = 1.0
    augment: bool = True
    #: training patches the batch-norm statistics are re-estimated on after each epoch
    bn_samples: int = 4096

    def phase(self, epoch: int, epochs: int) -> int:
        return 1 if epoch < math.ceil(self.phase1_fraction * epochs) else 2


def augment_pairs(pairs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same random flip / 90-degree rotation for both frames of every pair (the optics
    are rotationally symmetric up to aberrations; the label does not change)."""
    out = pairs
    if rng.random() < 0.5:
        out = out[..., ::-1]
    if rng.random() < 0.5:
        out = out[..., ::-1, :]
    k = int(rng.integers(4))
    if k:
        out = np.rot90(out, k, axes=(-2, -1))
    return np.ascontiguousarray(out)


def tile_errors(pred_um: np.ndarray, data: PatchDataset) -> np.ndarray:
    """|error| per tile of the std-weighted median of its patches' predictions."""
    from slidescan.focus.learned.diffcnn_model import weighted_median

    errs = []
    order = np.argsort(data.tile, kind="stable")
    tiles, starts = np.unique(data.tile[order], return_index=True)
    bounds = list(starts) + [len(order)]
    for i in range(len(tiles)):
        idx = order[bounds[i] : bounds[i + 1]]
        est = weighted_median(pred_um[idx], data.patch_std[idx])
        errs.append(abs(est - float(data.y_um[idx[0]])))
    return np.array(errs)


class DiffCNNTask(TrainingTask):
    """Regress the distance to focus from patch pairs (see the module docstring). The network
    outputs (y - y_mean) / y_scale."""

    def __init__(
        self,
        train: PatchDataset,
        val: PatchDataset,
        spec: InputSpec,
        config: DiffCNNTrainConfig,
        epochs: int,
        y_mean_um: float,
        y_scale_um: float,
        device: torch.device,
    ) -> None:
        self.train = train
        self.val = val
        self.spec = spec
        self.config = config
        self.epochs = int(epochs)
        self.y_mean_um = float(y_mean_um)
        self.y_scale_um = float(y_scale_um)
        self.device = device

    def steps_per_epoch(self) -> int:
        return len(self.train) // self.config.batch_size

    def _input(self, pairs: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(network_input(pairs.astype(np.float32), self.spec)).to(self.device)

    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, ...]]:
        """Random order; the ragged last batch is dropped (batch norm)."""
        cfg = self.config
        data = self.train
        order = rng.permutation(len(data))
        for step in range(self.steps_per_epoch()):
            idx = np.sort(order[step * cfg.batch_size : (step + 1) * cfg.batch_size])
            pairs = data.pairs[idx]
            if cfg.augment:
                pairs = augment_pairs(pairs, rng)
            yield pairs, data.y_um[idx], data.patch_std[idx]

    def loss(self, model: torch.nn.Module, batch: Any, epoch: int) -> tuple[torch.Tensor, int]:
        pairs, y_um, std = batch
        x = self._input(pairs)
        y = torch.from_numpy(y_um.astype(np.float32)).to(self.device)
        s = torch.from_numpy(std.astype(np.float32)).to(self.device)
        pred = model(x).reshape(-1) * self.y_scale_um + self.y_mean_um
        loss = weighted_smooth_l1(
            pred,
            y,
            s,
            phase=self.config.phase(epoch, self.epochs),
            beta_um=self.config.beta_um,
            distance_scale_um=self.config.distance_scale_um,
        )
        return loss, len(y_um)

    def after_epoch(self, model: torch.nn.Module, rng: np.random.Generator) -> None:
        data, bs = self.train, self.config.batch_size
        samples = min(self.config.bn_samples, len(data))
        idx = np.sort(rng.choice(len(data), size=samples, replace=False))
        recalibrate_batchnorm(
            model,
            (self._input(data.pairs[idx[i : i + bs]]) for i in range(0, len(idx) - bs + 1, bs)),
        )

    @torch.inference_mode()
    def predict(self, model: torch.nn.Module, data: PatchDataset, batch: int = 512) -> np.ndarray:
        """Distances in um for every patch pair of `data`."""
        model.eval()
        out = []
        for i in range(0, len(data), batch):
            out.append(model(self._input(data.pairs[i : i + batch])).reshape(-1).double().cpu())
        pred = torch.cat(out).numpy() if out else np.zeros(0)
        return pred * self.y_scale_um + self.y_mean_um

    def validate(self, model: torch.nn.Module) -> dict[str, float]:
        pred = self.predict(model, self.val)
        patch_err = np.abs(pred - self.val.y_um)
        tile_err = tile_errors(pred, self.val)
        return {
            "patch_mae_um": float(patch_err.mean()),
            "tile_mae_um": float(tile_err.mean()),
            "tile_median_um": float(np.median(tile_err)),
            "tile_p95_um": float(np.percentile(tile_err, 95)),
            "tile_max_um": float(tile_err.max()),
            "tiles": int(tile_err.size),
        }

    def describe(self) -> dict[str, Any]:
        return {
            **asdict(self.config),
            "epochs": self.epochs,
            "y_mean_um": self.y_mean_um,
            "y_scale_um": self.y_scale_um,
            "spec": self.spec.to_dict(),
        }
