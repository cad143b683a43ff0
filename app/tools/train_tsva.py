"""Training TSVA (Li et al.'s two-shot virtual autofocus) and its single-input ablation: the
offline tool behind `slidescan train tsva`.

Data: `app.tools.tsva_data` (simulator scenes, two shots around a mispredicted focus, the
noise-free in-focus target; cached). Training: `focus.learned.tsva_training.TSVATask` in the
kit's loop; the weights are a kit checkpoint (method "tsva") with the model card inside, also
written beside them as Markdown. `--shots 1` trains the single-input U-Net of the same width
(the paper's ablation, a baseline of `slidescan focus eval --mode tsva`), `--loss` another loss.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from slidescan.app.tools.tsva_data import DATA_VERSION, Recipe, describe, generate

ARCHITECTURE = "two_shot_unet"


@dataclass
class TrainRequest:
    objective: str = "20x/0.75"
    epochs: int = 12
    steps_per_epoch: int = 400
    batch_size: int = 12
    patch_px: int = 128
    base: int = 8
    depth: int = 4
    shots: int = 2
    loss: str = "mse"
    device: str = "auto"
    out: Path = Path(".")
    name: str | None = None
    resume: bool = False
    samples: int = 4000
    val_samples: int = 320
    seed: int = 0
    threads: int | None = None
    workers: int = 2
    cache_dir: Path = Path(".")
    tissue_dir: Path = Path(".")
    lr: float = 2e-3
    thin_fraction: float = 0.3
    bayer_fraction: float = 0.0
    #: start from these weights (a TSVA or single-input checkpoint of the same width) instead
    #: of from scratch; single-input weights start TSVA as `unet.two_shot_from_single`
    init_from: Path | None = None
    progress: bool = True
    command: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def weights_name(objective: str, shots: int = 2, loss: str = "mse") -> str:
    from slidescan.focus.learned.checkpoint import objective_slug

    stem = "tsva" if shots == 2 else "unet_single"
    suffix = "" if loss == "mse" else f"_{loss}"
    return f"{stem}_{objective_slug(objective)}{suffix}"


def train(req: TrainRequest, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Generate (or read) the data, train, and write weights + model card. Returns a summary."""
    import torch

    from slidescan.focus.learned.checkpoint import Checkpoint
    from slidescan.focus.learned.training import LoopConfig, Trainer, resolve_device
    from slidescan.focus.learned.tsva_training import TSVATask, TSVATrainConfig
    from slidescan.focus.learned.unet import TwoShotUNet, macs_per_pixel

    t_start = time.perf_counter()
    recipe = Recipe(
        objective=req.objective,
        thin_fraction=req.thin_fraction,
        bayer_fraction=req.bayer_fraction,
    )
    if req.objective != Recipe().objective:
        raise ValueError(f"TSVA is trained for {Recipe().objective} only so far")
    device = resolve_device(req.device)
    if req.threads:
        torch.set_num_threads(req.threads)
    arch = {"channels": 3, "base": req.base, "depth": req.depth, "shots": req.shots}
    # read before the data are rendered (minutes), so a wrong or corrupt file fails at once
    start = initial_weights(req.init_from, arch) if req.init_from is not None else None
    (train_data, train_path), (val_data, val_path) = generate_splits(
        generate, req, recipe, req.samples, req.val_samples, log
    )
    t_data = time.perf_counter() - t_start

    torch.manual_seed(req.seed)
    model, initial = start if start is not None else (TwoShotUNet(**arch), None)
    loop = LoopConfig(epochs=req.epochs, lr=req.lr, seed=req.seed)
    task_cfg = TSVATrainConfig(
        batch_size=req.batch_size,
        patch_px=req.patch_px,
        steps_per_epoch=req.steps_per_epoch,
        loss=req.loss,
        shots=req.shots,
    )
    task = TSVATask(train_data, val_data, task_cfg, device)
    trainer = Trainer(model, task, loop, device)
    name = req.name or weights_name(req.objective, req.shots, req.loss)
    req.out.mkdir(parents=True, exist_ok=True)
    state_path = req.out / f"{name}.state.pt"
    rng = resume_state(trainer, state_path, req.resume, log)

    def epoch_line(h: Any) -> str:
        m = h.metrics
        return (
            f"epoch {h.epoch}/{loop.epochs}: loss {h.train_loss:.6f}, val PSNR "
            f"{m['psnr_db']:.2f} dB (sharper shot {m['sharper_shot_psnr_db']:.2f}), "
            f"|e|<1 {m.get('psnr_db_e0_1', float('nan')):.2f}, 2-4 "
            f"{m.get('psnr_db_e2_4', float('nan')):.2f}, {h.seconds:.0f} s"
        )

    history = fit_with_progress(
        trainer, task.steps_per_epoch(), state_path, rng, epoch_line, log, req.progress
    )
    metrics = trainer.validate()
    model_cpu = trainer.model.to("cpu").eval()
    trained = provenance(
        req,
        loop,
        task_cfg,
        recipe=dataclasses.asdict(recipe),
        gflops_per_megapixel=2 * macs_per_pixel(model_cpu) * 1e6 / 1e9,
        initialised_from=initial,
        data={
            "version": DATA_VERSION,
            "train": describe(train_data),
            "val": describe(val_data),
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
        "objective": recipe.objective,
        "na": recipe.na,
        "na_range": list(recipe.na_range),
        "spacing_um": list(recipe.spacing_um),
        "error_sd_um": recipe.error_sd_um,
        "thin_fraction": recipe.thin_fraction,
        "bayer_fraction": recipe.bayer_fraction,
        "loss": req.loss,
    }
    card = model_card(meta, arch, trained, f"{name}.pt")
    ckpt = Checkpoint.of(
        "tsva",
        ARCHITECTURE,
        arch,
        model_cpu,
        normalisation={"input_scale": 255.0},
        meta=meta,
        trained=trained,
        card=card,
    )
    return {
        **write_model(req.out, name, ckpt, card),
        "val": metrics,
        "epochs": loop.epochs,
        "parameters": trained["parameters"],
        "train_samples": len(train_data),
        "val_samples": len(val_data),
        "data_s": trained["data_s"],
        "total_s": trained["total_s"],
    }


def initial_weights(path: Path, arch: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The network to start from, built from the checkpoint at `path` for the architecture
    `arch`, and what to record of it. A TSVA checkpoint starts TSVA, a single-input one starts
    either network; anything else is a ValueError."""
    from slidescan.focus.learned.checkpoint import load_checkpoint
    from slidescan.focus.learned.unet import two_shot_from_single

    ckpt = load_checkpoint(path, "tsva")  # a missing or corrupt file: one-line FocusError
    have = {k: ckpt.config.get(k) for k in ("channels", "base", "depth")}
    want = {k: arch[k] for k in ("channels", "base", "depth")}
    if have != want:
        raise ValueError(f"--init-from {path}: weights for {have}, this run trains {want}")
    shots = ckpt.config.get("shots")
    if shots == arch["shots"]:
        model = ckpt.build()
    elif shots == 1:
        model = two_shot_from_single(ckpt.build())
    else:
        raise ValueError(f"--init-from {path}: two-shot weights cannot start a single-input net")
    record = {"file": Path(path).name, "checksum": ckpt.checksum[:8], "shots": shots}
    return model.train(), record


def model_card(meta: dict[str, Any], arch: dict[str, Any], t: dict[str, Any], weights: str) -> str:
    """A Markdown model card: what the model is, how it was made, how good it is."""
    m = t.get("val_metrics", {})
    loop = t["train_config"]["loop"]
    task = t["train_config"]["task"]
    data = t["data"]
    what = "TSVA (two shots)" if arch["shots"] == 2 else "single-input U-Net (the ablation)"
    hist = "\n".join(
        f"| {h['epoch']} | {h['train_loss']:.6f} | {h['metrics']['psnr_db']:.2f} | "
        f"{h['metrics'].get('psnr_db_e0_1', float('nan')):.2f} | "
        f"{h['metrics'].get('psnr_db_e2_4', float('nan')):.2f} | {h['seconds']:.0f} |"
        for h in t.get("history", [])
    )
    resumed = " (this invocation resumed an interrupted run)" if t.get("resumed") else ""
    init = t.get("initialised_from")
    start = (
        f"\n- Started from `{init['file']}` (checksum {init['checksum']}, "
        f"{'single-input' if init['shots'] == 1 else 'two-shot'} weights"
        + (", the second path's weights at zero" if init["shots"] != arch["shots"] else "")
        + "), not from scratch."
        if init
        else ""
    )
    share = meta.get("thin_fraction", 0.0)
    thin = f" ({share:.0%} of scenes: a thin section of 0.2-1.5 um in 1-2 slabs)" if share else ""
    bayer = bayer_card_text(meta.get("bayer_fraction", 0.0))
    return f"""# {what} model card: {meta["objective"]}

Two-shot virtual autofocus after Li et al., "Rapid Whole Slide Imaging via Learning-based
Two-shot Virtual Autofocusing" (2020). Weights file: `{weights}` (a slidescan model checkpoint
holding this card too), focus method `tsva` (`slidescan.focus.learned.tsva`).

## What it does

Two shots of a tile, at F - dD and F + dD around the predicted focus F, are fused into the
in-focus image. The sharper shot (Brenner gradient) is Y1: the network's output is added to it.
Trained for dD from {meta["spacing_um"][0]:g} to {meta["spacing_um"][1]:g} um and a focus
prediction error e ~ N(0, {meta["error_sd_um"]:g} um) (clipped at +/-3.5 um).

## Model

`two_shot_unet` in plain torch: {arch["shots"]} contracting path(s) with shared weights,
{arch["depth"]} levels from {arch["base"]} channels (doubling), two 3x3 conv + batch norm + ReLU
per level, 2x2 max pooling; the deepest maps concatenated; an expanding path whose every level
concatenates the skip features of every contracting path; a 1x1 convolution gives the residual
added to Y1. {t.get("parameters")} parameters, {t.get("gflops_per_megapixel", 0):.1f} GFLOPs
per megapixel (a 1024 x 1024 RGB tile: {t.get("gflops_per_megapixel", 0) * 1.048576:.1f}).

## Training

- Command: `{t.get("command", "")}`
- Seed {t.get("seed")}, {t.get("epochs")} epochs of {task["steps_per_epoch"]} steps, batch
  {task["batch_size"]} random {task["patch_px"]} px crops with flips and 90-degree rotations,
  loss {task["loss"]}, AdamW with a one-cycle learning rate of peak {loop["lr"]}; batch-norm
  statistics re-estimated after every epoch; device {t.get("device")}, torch {t.get("torch")}.
  Wall time: data {t.get("data_s")} s, total {t.get("total_s")} s{resumed}.{start}
- Data (optical simulator, data version {data["version"]}): {data["train"]["samples"]} training
  samples from {data["train"]["scenes"]} scenes of {data["train_specimens"]}; per scene NA
  {meta["na_range"][0]:.2f}-{meta["na_range"][1]:.2f}, cover-glass error +/-15 um, axial
  chromatic shift R/B +/-0.3 um, section thickness 2-6 um in 3-5 slabs{thin}, stain strength
  0.45-1.6, exposure 3-20 ms, read noise 1.5-5 e, vignetting 0-12 %, JPEG (15 % of scenes){bayer}, z
  repeatability up to 0.04 um and XY jitter up to 0.4 um between the shots.
- Target: the simulator's noise-free render at the true focus (a real scanner could only give
  a noisy in-focus capture): the network learns to denoise as well as to refocus.
- Validation (held out: specimens never trained on, cover-glass error 15-22 um, chromatic
  shift 0.3-0.4 um): {data["val"]["samples"]} samples of {data["val_specimens"]}.

| epoch | train loss | val PSNR dB | \\|e\\| < 1 um | 2 <= \\|e\\| < 4 um | s |
|---|---|---|---|---|---|
{hist}

Final validation: PSNR {m.get("psnr_db", float("nan")):.2f} dB (the sharper shot alone
{m.get("sharper_shot_psnr_db", float("nan")):.2f} dB), |e| < 1 um
{m.get("psnr_db_e0_1", float("nan")):.2f} dB, 1-2 um {m.get("psnr_db_e1_2", float("nan")):.2f}
dB, 2-4 um {m.get("psnr_db_e2_4", float("nan")):.2f} dB.
{t.get("eval", "")}
## Limits

Trained on simulated brightfield images of thin stained sections with a dry
{meta["objective"]} objective; real optics may need fine-tuning on recorded stacks with a
(noisy) in-focus plane as target. Far from the trained error range (|e| > 3.5 um) the fused
image degrades towards the sharper shot.
"""
