"""Training DeepFocus's sharpness network (Shajkofci & Liebling): the offline tool behind
`slidescan train deepfocus`.

Data: `app.tools.deepfocus_data` (simulator patches through many objectives and cameras, their
blur score and validity; cached). Training: `focus.learned.deepfocus_training.DeepFocusTask` in
the kit's loop. The network is the kit's MobileNetV2 with one (luminance) input channel and two
outputs (score, validity logit). The weights are a kit checkpoint (method "deepfocus") with the
model card inside, also written beside them as Markdown. One model serves every objective: the
instrument's own curve comes from `slidescan focus calibrate --mode deepfocus`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slidescan.app.tools.deepfocus_data import DATA_VERSION, Recipe, describe, generate
from slidescan.app.tools.simdata import bayer_card_text
from slidescan.app.tools.train_progress import fit_with_progress
from slidescan.app.tools.training_run import (
    TRAIN_SPECIMENS,
    VAL_SPECIMENS,
    generate_splits,
    provenance,
    resume_state,
    write_model,
)

ARCHITECTURE = "mobilenetv2"
WEIGHTS_NAME = "deepfocus_any"


@dataclass
class TrainRequest:
    epochs: int = 12
    steps_per_epoch: int = 300
    batch_size: int = 64
    width: float = 0.35
    device: str = "auto"
    out: Path = Path(".")
    name: str = WEIGHTS_NAME
    resume: bool = False
    scenes: int = 400
    val_scenes: int = 48
    seed: int = 0
    threads: int | None = None
    workers: int = 2
    cache_dir: Path = Path(".")
    tissue_dir: Path = Path(".")
    lr: float = 3e-3
    bayer_fraction: float = 0.0
    progress: bool = True
    command: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def train(req: TrainRequest, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Generate (or read) the data, train, and write weights + model card. Returns a summary."""
    import torch

    from slidescan.focus.learned.checkpoint import Checkpoint
    from slidescan.focus.learned.deepfocus_score import MAX_SIGMA_PX, MIN_SIGMA_PX, PATCH_PX
    from slidescan.focus.learned.deepfocus_training import DeepFocusTask, DeepFocusTrainConfig
    from slidescan.focus.learned.mobilenet import MobileNetV2
    from slidescan.focus.learned.training import LoopConfig, Trainer, resolve_device

    t_start = time.perf_counter()
    recipe = Recipe(bayer_fraction=req.bayer_fraction)
    device = resolve_device(req.device)
    if req.threads:
        torch.set_num_threads(req.threads)
    (train_data, train_path), (val_data, val_path) = generate_splits(
        generate, req, recipe, req.scenes, req.val_scenes, log
    )
    t_data = time.perf_counter() - t_start

    torch.manual_seed(req.seed)
    arch = {"in_channels": 1, "num_outputs": 2, "width_mult": req.width, "last_channels": 256}
    model = MobileNetV2(**arch)
    loop = LoopConfig(epochs=req.epochs, lr=req.lr, seed=req.seed)
    task_cfg = DeepFocusTrainConfig(batch_size=req.batch_size, steps_per_epoch=req.steps_per_epoch)
    task = DeepFocusTask(train_data, val_data, task_cfg, device)
    task.objective_names = list(recipe.objectives)
    trainer = Trainer(model, task, loop, device)
    req.out.mkdir(parents=True, exist_ok=True)
    state_path = req.out / f"{req.name}.state.pt"
    rng = resume_state(trainer, state_path, req.resume, log)

    def epoch_line(h: Any) -> str:
        m = h.metrics
        per = ", ".join(
            f"{o} {m[f'score_mae_{o}']:.3f}" for o in recipe.objectives if f"score_mae_{o}" in m
        )
        return (
            f"epoch {h.epoch}/{loop.epochs}: loss {h.train_loss:.4f}, val score MAE "
            f"{m['score_mae']:.3f} (p90 {m['score_p90']:.3f}; {per}), validity "
            f"{100 * m['validity_acc']:.1f} %, {h.seconds:.0f} s"
        )

    history = fit_with_progress(
        trainer, task.steps_per_epoch(), state_path, rng, epoch_line, log, req.progress, ".4f"
    )
    metrics = trainer.validate()
    model_cpu = trainer.model.to("cpu").eval()
    trained = provenance(
        req,
        loop,
        task_cfg,
        recipe=dataclasses.asdict(recipe),
        data={
            "version": DATA_VERSION,
            "train": describe(train_data, recipe),
            "val": describe(val_data, recipe),
            "train_specimens": TRAIN_SPECIMENS,
            "val_specimens": VAL_SPECIMENS,
            "train_cache": train_path.name,
            "val_cache": val_path.name,
        },
        metrics=metrics,
        history=[dataclasses.asdict(h) for h in history],
        model=model_cpu,
        device=device,
        t_start=t_start,
        t_data=t_data,
    )
    meta = {
        "score": "ln blur width in camera pixels (deepfocus_score)",
        "patch_px": PATCH_PX,
        "min_sigma_px": MIN_SIGMA_PX,
        "max_sigma_px": MAX_SIGMA_PX,
        "objectives": list(recipe.objectives),
        "input": "luminance, standardised per patch",
    }
    card = model_card(meta, arch, trained, f"{req.name}.pt")
    ckpt = Checkpoint.of(
        "deepfocus", ARCHITECTURE, arch, model_cpu, meta=meta, trained=trained, card=card
    )
    return {
        **write_model(req.out, req.name, ckpt, card),
        "val": metrics,
        "epochs": loop.epochs,
        "parameters": trained["parameters"],
        "train_patches": len(train_data),
        "val_patches": len(val_data),
        "data_s": trained["data_s"],
        "total_s": trained["total_s"],
    }


def model_card(meta: dict[str, Any], arch: dict[str, Any], t: dict[str, Any], weights: str) -> str:
    """A Markdown model card: what the model is, how it was made, how good it is."""
    m = t.get("val_metrics", {})
    loop = t["train_config"]["loop"]
    task = t["train_config"]["task"]
    data = t["data"]
    objectives = meta["objectives"]
    hist = "\n".join(
        f"| {h['epoch']} | {h['train_loss']:.4f} | {h['metrics']['score_mae']:.3f} | "
        + " | ".join(f"{h['metrics'].get(f'score_mae_{o}', float('nan')):.3f}" for o in objectives)
        + f" | {100 * h['metrics']['validity_acc']:.1f} | {h['seconds']:.0f} |"
        for h in t.get("history", [])
    )
    head = " | ".join(objectives)
    resumed = " (this invocation resumed an interrupted run)" if t.get("resumed") else ""
    bayer = bayer_card_text(t.get("recipe", {}).get("bayer_fraction", 0.0))
    per_obj = ", ".join(f"{k} {v}" for k, v in data["train"]["per_objective"].items())
    return f"""# DeepFocus sharpness network model card (any objective)

Sample-invariant CNN sharpness function after Shajkofci & Liebling, "DeepFocus: a few-shot
microscope slide auto-focus using a sample invariant CNN-based sharpness function" (2020).
Weights file: `{weights}` (a slidescan model checkpoint holding this card too), focus method
`deepfocus` (`slidescan.focus.learned.deepfocus`).

## What it does

Reads a {meta["patch_px"]} x {meta["patch_px"]} px luminance patch, standardised by its own mean
and spread, and returns (1) its blur score: ln of the PSF's equivalent width in camera pixels
(diffraction and defocus in quadrature, clipped to {meta["min_sigma_px"]}-{meta["max_sigma_px"]}
px; the paper regresses the defocus Zernike coefficient, we regress the blur a patch shows on
any camera), and (2) a validity logit: whether the patch has texture to judge (glass and
textureless patches: no). One model for every objective from 10x/0.30 to 40x/0.95; the
instrument's own score-against-z curve comes from one calibration stack.

## Model

MobileNetV2 (plain torch, the kit's `mobilenetv2`), width {arch["width_mult"]}, last layer
{arch["last_channels"]} channels, 1 input channel, 2 outputs; {t.get("parameters")} parameters.

## Training

- Command: `{t.get("command", "")}`
- Seed {t.get("seed")}, {t.get("epochs")} epochs of {task["steps_per_epoch"]} steps, batch
  {task["batch_size"]}, flips, 90-degree rotations and gains {task["gain_range"][0]}-
  {task["gain_range"][1]} (clipped at 255); loss smooth-L1 (beta {task["beta"]}) on the score
  of valid patches + {task["validity_weight"]} x BCE on validity; AdamW, one-cycle learning
  rate {loop["lr"]}; batch-norm statistics re-estimated after every epoch; device
  {t.get("device")}, torch {t.get("torch")}. Wall time: data {t.get("data_s")} s, total
  {t.get("total_s")} s{resumed}.
- Data (optical simulator, data version {data["version"]}): {data["train"]["patches"]}
  training patches ({data["train"]["valid"]} valid, {data["train"]["blank"]} blank glass) from
  {data["train"]["scenes"]} scenes ({per_obj}) of {data["train_specimens"]}; per scene the
  objective's NA jittered +/-6 %, camera pixel pitch 3.45-7.4 um, cover-glass error +/-15 um,
  axial chromatic shift R/B +/-0.3 um, section thickness 2-6 um in 3-5 slabs, stain strength
  0.45-1.6, exposure 3-20 ms, read noise 1.5-5 e, vignetting 0-12 %, JPEG (15 % of scenes){bayer};
  defoci uniform in score out to 25 % past saturation, 15 % within half a depth of field.
- Validation (held out: specimens never trained on, cover-glass error 15-22 um, chromatic
  shift 0.3-0.4 um, nominal NA, 6.5 um pixels): {data["val"]["patches"]} patches of
  {data["val_specimens"]}.

| epoch | train loss | val score MAE | {head} | validity % | s |
|---|---|---|{"---|" * len(objectives)}---|---|
{hist}

Final validation: score MAE {m.get("score_mae", float("nan")):.3f} (ln px; 0.1 is a 10 %
error in blur width), p90 {m.get("score_p90", float("nan")):.3f}, validity accuracy
{100 * m.get("validity_acc", float("nan")):.1f} %.
{t.get("eval", "")}
## Limits

Trained on simulated brightfield images of thin stained sections with dry objectives. The
score is a blur width, so it cannot tell above from below focus: the search takes images on
both sides. Beyond the saturation width ({meta["max_sigma_px"]} px) it says only "far".
"""
