"""The one training loop every learned method uses (pure torch; no simulator here).

A method brings a `TrainingTask`: its batches, its loss, what it does after each epoch (batch-
norm re-estimation, say) and how it validates. The loop brings the rest, the same for all:
AdamW with a one-cycle learning-rate schedule, seeds, the device (`resolve_device`: auto, cpu
or cuda), progress callbacks per step and per epoch, and a state file written after every
epoch so `--resume` continues exactly where a run stopped (model, optimiser, schedule, numpy
and torch random states, history). A state made with other settings is refused.

The random stream is one numpy Generator per run (seeded by `LoopConfig.seed`), handed to the
task in a fixed order each epoch: batches, then `after_epoch`, then validation.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass
class LoopConfig:
    epochs: int = 12
    lr: float = 3e-3
    weight_decay: float = 1e-4
    #: fraction of the steps over which the one-cycle schedule warms up
    warmup_fraction: float = 0.15
    seed: int = 0


@dataclass
class EpochLog:
    """One epoch: the mean training loss and the task's validation metrics."""

    epoch: int
    train_loss: float
    metrics: dict[str, float]
    seconds: float


@dataclass
class TrainState:
    """Everything `--resume` needs besides the tensors."""

    epoch: int = 0
    history: list[EpochLog] = field(default_factory=list)


class TrainingTask(abc.ABC):
    """What one learned method brings to the loop."""

    @abc.abstractmethod
    def steps_per_epoch(self) -> int:
        """Optimiser steps in one epoch (the schedule's length is epochs x this)."""

    @abc.abstractmethod
    def batches(self, epoch: int, rng: np.random.Generator) -> Iterator[Any]:
        """This epoch's training batches, `steps_per_epoch()` of them."""

    @abc.abstractmethod
    def loss(self, model: torch.nn.Module, batch: Any, epoch: int) -> tuple[torch.Tensor, int]:
        """The batch's loss (to minimise) and its number of samples."""

    def after_epoch(self, model: torch.nn.Module, rng: np.random.Generator) -> None:  # noqa: B027
        """Hook after each epoch's last step, before validation."""

    @abc.abstractmethod
    def validate(self, model: torch.nn.Module) -> dict[str, float]:
        """Validation metrics of the model as it is (eval mode)."""

    def describe(self) -> dict[str, Any]:
        """The task's settings: a resumed run must have the same."""
        return {}


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no CUDA GPU")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, inputs: Iterator[torch.Tensor]) -> None:
    """Re-estimate every batch norm's statistics as a plain average over `inputs` with the
    current weights. The running averages kept during training lag the weights (momentum 0.1
    while the learning rate is high), which costs accuracy in eval mode, badly so in short
    runs."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    for x in inputs:
        model(x)
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    model.eval()


class Trainer:
    """Holds the model, the optimiser and the schedule; runs a task's epochs."""

    def __init__(
        self,
        model: torch.nn.Module,
        task: TrainingTask,
        config: LoopConfig,
        device: torch.device,
    ) -> None:
        self.model = model.to(device)
        self.task = task
        self.config = config
        self.device = device
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer,
            max_lr=config.lr,
            total_steps=max(1, config.epochs * task.steps_per_epoch()),
            pct_start=config.warmup_fraction,
        )
        self.state = TrainState()

    def train_epoch(
        self,
        epoch: int,
        rng: np.random.Generator,
        on_step: Callable[[int, float], None] | None = None,
    ) -> float:
        """One pass; returns the mean training loss per sample."""
        self.model.train()
        total, count = 0.0, 0
        for step, batch in enumerate(self.task.batches(epoch, rng)):
            loss, n = self.task.loss(self.model, batch, epoch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.scheduler.last_epoch < self.scheduler.total_steps:
                self.scheduler.step()
            value = float(loss.detach())
            total += value * n
            count += n
            if on_step is not None:
                on_step(step, value)
        return total / max(count, 1)

    def validate(self) -> dict[str, float]:
        self.model.eval()
        return self.task.validate(self.model)

    def fit(
        self,
        *,
        state_path: Path | None = None,
        rng: np.random.Generator | None = None,
        on_epoch: Callable[[EpochLog], None] | None = None,
        on_step: Callable[[int, float], None] | None = None,
    ) -> list[EpochLog]:
        """Train from `state.epoch` to `config.epochs`, saving state after every epoch."""
        cfg = self.config
        rng = rng if rng is not None else np.random.default_rng(cfg.seed)
        for epoch in range(self.state.epoch, cfg.epochs):
            t0 = time.perf_counter()
            loss = self.train_epoch(epoch, rng, on_step)
            self.task.after_epoch(self.model, rng)
            metrics = self.validate()
            log = EpochLog(epoch + 1, loss, metrics, time.perf_counter() - t0)
            self.state.epoch = epoch + 1
            self.state.history.append(log)
            if state_path is not None:
                self.save_state(state_path, rng)
            if on_epoch is not None:
                on_epoch(log)
        return self.state.history

    # -- resumable state -----------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        return {"loop": asdict(self.config), "task": self.task.describe()}

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
                "settings": self.settings(),
            },
            tmp,
        )
        tmp.replace(path)

    def load_state(self, path: Path) -> np.random.Generator:
        blob = torch.load(path, map_location=self.device, weights_only=True)
        if blob.get("settings") != self.settings():
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
