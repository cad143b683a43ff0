"""The training loop's progress for the offline training tools: a tqdm bar over the steps left
(stderr, off for --json), the running loss every 20 steps, and a log line per epoch."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def fit_with_progress(
    trainer: Any,
    steps_per_epoch: int,
    state_path: Path,
    rng: Any,
    epoch_line: Callable[[Any], str],
    log: Callable[[str], None],
    progress: bool,
    loss_format: str = ".5f",
) -> list[Any]:
    """`trainer.fit` with a progress bar; returns its history."""
    from tqdm import tqdm

    epochs = trainer.config.epochs
    bar = tqdm(
        total=(epochs - trainer.state.epoch) * steps_per_epoch,
        desc="train",
        unit="batch",
        disable=not progress,
        file=sys.stderr,
    )

    def on_step(step: int, loss: float) -> None:
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(loss=format(loss, loss_format))

    try:
        return trainer.fit(
            state_path=state_path,
            rng=rng,
            on_epoch=lambda h: log(epoch_line(h)),
            on_step=on_step,
        )
    finally:
        bar.close()
