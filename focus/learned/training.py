"""Training the difference-image CNN from cached patch pairs (pure torch; no simulator here).

The data (made once by `slidescan.app.train_diffcnn` from the simulator) is a set of patch
pairs with labels: `pairs` (N, 2, C, P, P) intensities, `y_um` the distance from the first
shot to focus, `patch_std` and `tile` (which frame pair a patch came from). Training follows
Dastidar & Ethirajan: smooth-L1 weighted by patch std (phase 1), then also by the distance to
focus (phase 2). Validation reports the tile-level error the scanner will see: patches of one
pair combined by the std-weighted median, as at inference.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slidescan.focus.learned.losses import weighted_smooth_l1
from slidescan.focus.learned.mobilenet import MobileNetV2
from slidescan.focus.learned.preprocess import InputSpec, network_input


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

    def subset(self, index: np.ndarray) -> PatchDataset:
        return PatchDataset(
            self.pairs[index], self.y_um[index], self.patch_std[index], self.tile[index]
        )


@dataclass
class TrainConfig:
    epochs: int = 12
    #: fraction of the epochs trained in phase 1 (std weights only); the rest is phase 2
    phase1_fraction: float = 0.6
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    beta_um: float = 0.5
    distance_scale_um: float = 1.0
    seed: int = 0
    augment: bool = True

    def phase(self, epoch: int) -> int:
        return 1 if epoch < math.ceil(self.phase1_fraction * self.epochs) else 2


@dataclass
class EpochLog:
    epoch: int
    phase: int
    train_loss: float
    val_patch_mae_um: float
    val_tile_mae_um: float
    val_tile_p95_um: float
    seconds: float


@dataclass
class TrainState:
    """Everything `--resume` needs."""

    epoch: int = 0
    history: list[EpochLog] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no CUDA GPU")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


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
    from slidescan.focus.learned.diffcnn import weighted_median

    errs = []
    order = np.argsort(data.tile, kind="stable")
    tiles, starts = np.unique(data.tile[order], return_index=True)
    bounds = list(starts) + [len(order)]
    for i in range(len(tiles)):
        idx = order[bounds[i] : bounds[i + 1]]
        est = weighted_median(pred_um[idx], data.patch_std[idx])
        errs.append(abs(est - float(data.y_um[idx[0]])))
    return np.array(errs)


class Trainer:
    """Holds the model, optimiser and schedule; runs epochs and evaluates."""

    def __init__(
        self,
        model: MobileNetV2,
        spec: InputSpec,
        config: TrainConfig,
        y_mean_um: float,
        y_scale_um: float,
        device: torch.device,
        steps_per_epoch: int,
    ) -> None:
        self.model = model.to(device)
        self.spec = spec
        self.config = config
        self.y_mean_um = float(y_mean_um)
        self.y_scale_um = float(y_scale_um)
        self.device = device
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer,
            max_lr=config.lr,
            total_steps=max(1, config.epochs * steps_per_epoch),
            pct_start=0.15,
        )
        self.state = TrainState()

    def _batch_input(self, pairs: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(network_input(pairs.astype(np.float32), self.spec)).to(self.device)

    def train_epoch(
        self,
        data: PatchDataset,
        epoch: int,
        rng: np.random.Generator,
        on_step: Callable[[int, float], None] | None = None,
    ) -> float:
        """One pass in random order; returns the mean training loss."""
        cfg = self.config
        phase = cfg.phase(epoch)
        self.model.train()
        order = rng.permutation(len(data))
        total, count = 0.0, 0
        steps = len(order) // cfg.batch_size  # drop the ragged last batch (batch norm)
        for step in range(steps):
            idx = np.sort(order[step * cfg.batch_size : (step + 1) * cfg.batch_size])
            pairs = data.pairs[idx]
            if cfg.augment:
                pairs = augment_pairs(pairs, rng)
            x = self._batch_input(pairs)
            y = torch.from_numpy(data.y_um[idx].astype(np.float32)).to(self.device)
            s = torch.from_numpy(data.patch_std[idx].astype(np.float32)).to(self.device)
            pred = self.model(x).reshape(-1) * self.y_scale_um + self.y_mean_um
            loss = weighted_smooth_l1(
                pred,
                y,
                s,
                phase=phase,
                beta_um=cfg.beta_um,
                distance_scale_um=cfg.distance_scale_um,
            )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.scheduler.last_epoch < self.scheduler.total_steps:
                self.scheduler.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
            if on_step is not None:
                on_step(step, float(loss.detach()))
        return total / max(count, 1)

    @torch.no_grad()
    def recalibrate_batchnorm(
        self, data: PatchDataset, rng: np.random.Generator, samples: int = 4096
    ) -> None:
        """Re-estimate batch-norm statistics as a plain average over `samples` training
        patches with the current weights. The running averages kept during training lag the
        weights (momentum 0.1 while the learning rate is high), which costs accuracy in eval
        mode, badly so in short runs."""
        bns = [m for m in self.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        saved = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average
        self.model.train()
        idx = np.sort(rng.choice(len(data), size=min(samples, len(data)), replace=False))
        bs = self.config.batch_size
        for i in range(0, len(idx) - bs + 1, bs):
            self.model(self._batch_input(data.pairs[idx[i : i + bs]]))
        for m, mom in zip(bns, saved, strict=True):
            m.momentum = mom
        self.model.eval()

    @torch.inference_mode()
    def predict(self, data: PatchDataset, batch_size: int = 512) -> np.ndarray:
        self.model.eval()
        out = []
        for i in range(0, len(data), batch_size):
            x = self._batch_input(data.pairs[i : i + batch_size])
            out.append(self.model(x).reshape(-1).double().cpu().numpy())
        pred = np.concatenate(out) if out else np.zeros(0)
        return pred * self.y_scale_um + self.y_mean_um

    def evaluate(self, data: PatchDataset) -> dict[str, float]:
        pred = self.predict(data)
        patch_err = np.abs(pred - data.y_um)
        tile_err = tile_errors(pred, data)
        return {
            "patch_mae_um": float(patch_err.mean()),
            "tile_mae_um": float(tile_err.mean()),
            "tile_median_um": float(np.median(tile_err)),
            "tile_p95_um": float(np.percentile(tile_err, 95)),
            "tile_max_um": float(tile_err.max()),
            "tiles": int(tile_err.size),
        }

    # -- resumable state -----------------------------------------------------------------------
    def save_state(self, path: Path, rng: np.random.Generator) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "epoch": self.state.epoch,
                "history": [asdict(h) for h in self.state.history],
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "config": asdict(self.config),
            },
            tmp,
        )
        tmp.replace(path)

    def load_state(self, path: Path) -> np.random.Generator:
        blob = torch.load(path, map_location=self.device, weights_only=True)
        if blob.get("config") != asdict(self.config):
            raise ValueError(
                f"cannot resume from {path}: it was made with different training settings"
            )
        self.model.load_state_dict(blob["model"])
        self.optimizer.load_state_dict(blob["optimizer"])
        self.scheduler.load_state_dict(blob["scheduler"])
        self.state = TrainState(blob["epoch"], [EpochLog(**h) for h in blob["history"]])
        torch.set_rng_state(blob["torch_rng"])
        rng = np.random.default_rng()
        rng.bit_generator.state = blob["rng"]
        return rng


def fit(
    trainer: Trainer,
    train: PatchDataset,
    val: PatchDataset,
    *,
    state_path: Path | None = None,
    rng: np.random.Generator | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> list[EpochLog]:
    """Train from `trainer.state.epoch` to `config.epochs`, saving state after every epoch."""
    cfg = trainer.config
    rng = rng if rng is not None else np.random.default_rng(cfg.seed)
    for epoch in range(trainer.state.epoch, cfg.epochs):
        t0 = time.perf_counter()
        loss = trainer.train_epoch(train, epoch, rng, on_step)
        trainer.recalibrate_batchnorm(train, rng)
        metrics = trainer.evaluate(val)
        log = EpochLog(
            epoch=epoch + 1,
            phase=cfg.phase(epoch),
            train_loss=loss,
            val_patch_mae_um=metrics["patch_mae_um"],
            val_tile_mae_um=metrics["tile_mae_um"],
            val_tile_p95_um=metrics["tile_p95_um"],
            seconds=time.perf_counter() - t0,
        )
        trainer.state.epoch = epoch + 1
        trainer.state.history.append(log)
        if state_path is not None:
            trainer.save_state(state_path, rng)
        if on_epoch is not None:
            on_epoch(log)
    return trainer.state.history


def describe(config: TrainConfig) -> dict[str, Any]:
    return asdict(config)
