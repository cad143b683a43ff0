"""What every offline training tool (train_diffcnn, train_tsva, train_deepfocus) does around the
kit's loop, once: pick up a saved training state, record how the model was made (the
provenance stored in its checkpoint and shown in its card), and write the weights with the
card beside them."""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slidescan.app.tools.simdata import REAL_HOLDOUT_IMAGES, REAL_TRAIN_IMAGES, TEXTURE_IMAGES

#: The specimens every simulator training set draws from, as the cards name them.
TRAIN_SPECIMENS = (
    "procedural H&E and IHC (seeds < 1e6), "
    + ", ".join(REAL_TRAIN_IMAGES)
    + " (pixel size jittered x0.8-1.5), scikit-image textures "
    + ", ".join(TEXTURE_IMAGES)
    + " (0.12-0.35 um/px)"
)
VAL_SPECIMENS = f"{REAL_HOLDOUT_IMAGES[0]}, skimage ihc, procedural (seeds >= 1e6)"


def generate_splits(
    generate: Callable[..., tuple[Any, Path]],
    req: Any,
    recipe: Any,
    train_count: int,
    val_count: int,
    log: Callable[[str], None],
) -> tuple[tuple[Any, Path], tuple[Any, Path]]:
    """((train data, cache path), (val data, cache path)) from a tool's `generate`, read from
    the cache or rendered with the request's seed, folders, workers and progress."""
    return tuple(  # type: ignore[return-value]
        generate(
            split,
            count,
            req.seed,
            recipe,
            req.tissue_dir,
            req.cache_dir,
            workers=req.workers,
            progress=req.progress,
            log=log,
        )
        for split, count in (("train", train_count), ("val", val_count))
    )


def resume_state(trainer: Any, state_path: Path, resume: bool, log: Callable[[str], None]) -> Any:
    """The numpy generator state to go on with when `resume` (None to start afresh); the
    trainer's model, optimiser and schedule are loaded from `state_path`."""
    if not resume:
        return None
    if not state_path.is_file():
        raise FileNotFoundError(f"--resume: no training state at {state_path}")
    rng = trainer.load_state(state_path)
    log(f"resumed at epoch {trainer.state.epoch} of {trainer.config.epochs}")
    return rng


def provenance(
    req: Any,
    loop: Any,
    task_cfg: Any,
    *,
    data: dict[str, Any],
    metrics: dict[str, float],
    history: list[dict[str, Any]],
    model: Any,
    device: Any,
    t_start: float,
    t_data: float,
    **more: Any,
) -> dict[str, Any]:
    """How the model was made: the command, seed, settings, data, validation, history, size,
    software and times; `more` adds the method's own entries (its recipe, its cost)."""
    import torch

    return {
        "command": req.command,
        "seed": req.seed,
        "epochs": loop.epochs,
        "train_config": {"loop": dataclasses.asdict(loop), "task": dataclasses.asdict(task_cfg)},
        **more,
        "data": data,
        "val_metrics": metrics,
        "history": history,
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "data_s": round(t_data, 1),
        "total_s": round(time.perf_counter() - t_start, 1),
        "resumed": bool(req.resume),
        **req.extra,
    }


def write_model(out: Path, stem: str, checkpoint: Any, card: str) -> dict[str, Any]:
    """`stem`.pt and its card `stem`.md in `out`; the summary's file entries."""
    from slidescan.focus.learned.checkpoint import save_checkpoint

    weights = out / f"{stem}.pt"
    save_checkpoint(weights, checkpoint)
    card_path = out / f"{stem}.md"
    card_path.write_text(card, encoding="utf-8")
    return {
        "weights": str(weights),
        "model_card": str(card_path),
        "weights_mb": weights.stat().st_size / 1e6,
    }
