"""Training the difference-image CNN: its data recipe, the training run through the kit's loop,
and the model card. The offline tool behind `slidescan train diffcnn`.

Data. Scenes come from `app.tools.simdata` (randomised specimen, optics and camera; training
and held-out splits). A few fields of each are rendered as frame pairs at z and z + delta below
focus, labelled y = z_focus - z, and cut into patches (`focus.learned.preprocess`) once per
(recipe, split, size, seed) into an HDF5 cache, so training runs and resumes read them instead
of rendering again.

Training: `focus.learned.diffcnn_training.DiffCNNTask` in the kit's loop
(`focus.learned.training.Trainer`); the weights are a kit checkpoint with the model card inside
(`focus.learned.checkpoint`), also written beside them as Markdown.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slidescan.app.tools.simdata import (
    Scene,
    build_scene,
    cache_key,
    parallel_map,
    random_field,
    sample_scene,
)
from slidescan.app.tools.train_progress import fit_with_progress
from slidescan.app.tools.training_run import (
    TRAIN_SPECIMENS,
    VAL_SPECIMENS,
    generate_splits,
    provenance,
    resume_state,
    write_model,
)
from slidescan.focus.learned.preprocess import InputSpec, patch_pairs

#: Bump when the data recipe changes so stale caches are not reused.
DATA_VERSION = 4


@dataclass(frozen=True)
class Recipe:
    """Acquisition geometry and data settings the model is trained for (one objective).

    The pair is taken with the first shot y = z_focus - z below focus, y in [y_min, y_max],
    and the second `delta_um` above it, so the upper shot is at least y_min - delta below
    focus. Distances scale with the depth of field for other objectives.
    """

    objective: str = "20x/0.75"
    na: float = 0.75
    na_range: tuple[float, float] = (0.70, 0.80)
    delta_um: float = 2.0
    y_min_um: float = 2.5
    y_max_um: float = 14.0
    #: fraction of pairs drawn close to focus (y in [y_min, near_max]); the rest span the range
    near_fraction: float = 0.6
    near_max_um: float = 6.5
    spec: InputSpec = InputSpec(patch_px=64, bin=1, max_patches=12)
    camera_px: int = 512
    jitter_px: int = 4  # crop margin for XY jitter between the two shots
    fields_per_scene: int = 4
    pairs_per_field: int = 4
    width_mult: float = 0.35
    last_channels: int = 256

    @property
    def offset_um(self) -> float:
        """Default distance of the first shot below the hint for hints within +/-5 um."""
        return self.y_min_um + 0.5 + 5.0


def recipe_for(objective: str) -> Recipe:
    """The recipe for an objective: 20x/0.75 as tuned; others scaled by depth of field and
    pixel size (so a patch still covers ~40 um and distances are in DOF units)."""
    from slidescan.hardware.optics import OpticalPath, get_objective

    obj = get_objective(objective)
    base = Recipe()
    if objective == base.objective:
        return base
    ref = OpticalPath(get_objective(base.objective))
    path = OpticalPath(obj)
    k = path.depth_of_field_um / ref.depth_of_field_um
    px = path.pixel_size_um
    binning = max(1, round(base.spec.bin * base.spec.pixel_size_um / px))
    spread = 0.05 * obj.na / 0.75
    return dataclasses.replace(
        base,
        objective=objective,
        na=obj.na,
        na_range=(obj.na - spread, min(obj.na + spread, 0.99 * obj.immersion_n)),
        delta_um=base.delta_um * k,
        y_min_um=base.y_min_um * k,
        y_max_um=base.y_max_um * k,
        near_max_um=base.near_max_um * k,
        spec=dataclasses.replace(base.spec, pixel_size_um=px, bin=binning),
    )


@dataclass
class SceneData:
    pairs: np.ndarray  # (N, 2, C, P, P) float16
    y_um: np.ndarray
    patch_std: np.ndarray
    tile: np.ndarray  # local pair index within the scene
    seconds: float = 0.0


def render_scene(scene: Scene, recipe: Recipe) -> SceneData:
    """Render the scene's pairs and cut them into patches (runs in a worker process)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(scene.seed)
    sim = build_scene(scene)
    j = recipe.jitter_px
    n = recipe.camera_px
    px = sim.optics.pixel_size_um
    out_pairs, out_y, out_std, out_tile = [], [], [], []
    local = 0
    for _ in range(recipe.fields_per_scene):
        x, y = random_field(sim, rng)
        z_focus = sim.true_focus_um(x, y)
        for _ in range(recipe.pairs_per_field):
            far = recipe.y_max_um + 0.5 if rng.random() >= recipe.near_fraction else None
            dist = float(rng.uniform(recipe.y_min_um - 0.3, far or recipe.near_max_um))
            z1 = z_focus - dist + rng.normal(0.0, scene.z_noise_um)
            z2 = z_focus - dist + recipe.delta_um + rng.normal(0.0, scene.z_noise_um)
            f1 = sim.render(x, y, z1, rng=rng)
            f2 = sim.render(x, y, z2, rng=rng)
            # XY jitter between the shots: the second frame's crop is shifted.
            dy, dx = np.clip(np.rint(rng.normal(0.0, scene.xy_jitter_um / px, 2)), -j, j)
            a = f1[j : j + n, j : j + n]
            b = f2[j + int(dy) : j + int(dy) + n, j + int(dx) : j + int(dx) + n]
            pp = patch_pairs(a, b, recipe.spec, px)
            if len(pp) == 0:
                continue
            out_pairs.append(pp.pairs.astype(np.float16))
            out_y.append(np.full(len(pp), dist))
            out_std.append(pp.patch_std)
            out_tile.append(np.full(len(pp), local))
            local += 1
    if not out_pairs:
        p = recipe.spec.patch_px
        empty = np.zeros((0, 2, recipe.spec.colour_channels, p, p), np.float16)
        return SceneData(empty, np.zeros(0), np.zeros(0, np.float32), np.zeros(0, int))
    return SceneData(
        np.concatenate(out_pairs),
        np.concatenate(out_y),
        np.concatenate(out_std).astype(np.float32),
        np.concatenate(out_tile),
        time.perf_counter() - t0,
    )


def _render_job(job: tuple[Scene, Recipe]) -> SceneData:
    return render_scene(*job)


def data_key(recipe: Recipe, split: str, pairs: int, seed: int) -> str:
    return cache_key(DATA_VERSION, recipe, split=split, pairs=pairs, seed=seed)


def generate(
    split: str,
    pairs: int,
    seed: int,
    recipe: Recipe,
    tissue_dir: Path,
    cache_dir: Path,
    *,
    workers: int = 1,
    progress: bool = True,
    log: Callable[[str], None] = lambda s: None,
) -> tuple[Any, Path]:
    """The patch data set of `split` with about `pairs` frame pairs: read from the cache, or
    rendered (in `workers` processes) and cached. Returns (PatchDataset, cache path)."""
    import h5py

    from slidescan.focus.learned.diffcnn_training import PatchDataset

    per_scene = recipe.fields_per_scene * recipe.pairs_per_field
    scenes = max(1, math.ceil(pairs / per_scene))
    path = cache_dir / f"diffcnn_{split}_{data_key(recipe, split, pairs, seed)}.h5"
    if path.is_file():
        log(f"using cached {split} data {path}")
        with h5py.File(path, "r") as f:
            return (
                PatchDataset(f["pairs"][()], f["y_um"][()], f["patch_std"][()], f["tile"][()]),
                path,
            )
    if not tissue_dir.is_dir():
        raise FileNotFoundError(f"real tissue images not found at {tissue_dir} (see --tissue)")
    jobs = [(sample_scene(i, split, seed, recipe, tissue_dir), recipe) for i in range(scenes)]
    results: list[SceneData] = parallel_map(_render_job, jobs, workers, f"render {split}", progress)
    tile_offset, tiles, scene_ids = 0, [], []
    for i, r in enumerate(results):
        tiles.append(r.tile + tile_offset)
        scene_ids.append(np.full(len(r.tile), i))
        tile_offset += int(r.tile.max()) + 1 if len(r.tile) else 0
    data = PatchDataset(
        np.concatenate([r.pairs for r in results]),
        np.concatenate([r.y_um for r in results]),
        np.concatenate([r.patch_std for r in results]),
        np.concatenate(tiles),
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("pairs", data=data.pairs, chunks=(64, *data.pairs.shape[1:]))
        f.create_dataset("y_um", data=data.y_um)
        f.create_dataset("patch_std", data=data.patch_std)
        f.create_dataset("tile", data=data.tile)
        f.create_dataset("scene", data=np.concatenate(scene_ids))
        f.attrs["recipe"] = json.dumps(dataclasses.asdict(recipe), default=str)
        f.attrs["split"] = split
        f.attrs["seed"] = seed
        f.attrs["scenes"] = json.dumps([dataclasses.asdict(j[0]) for j in jobs], default=str)
        f.attrs["render_s"] = float(sum(r.seconds for r in results))
    tmp.replace(path)
    log(f"wrote {split} data {path} ({len(data)} patches, {tile_offset} pairs)")
    return data, path


@dataclass
class TrainRequest:
    objective: str = "20x/0.75"
    epochs: int = 14
    device: str = "auto"
    out: Path = Path(".")
    resume: bool = False
    samples: int = 4000
    val_samples: int = 400
    seed: int = 0
    threads: int | None = None
    workers: int = 2
    cache_dir: Path = Path(".")
    tissue_dir: Path = Path(".")
    batch_size: int = 128
    lr: float = 3e-3
    progress: bool = True
    command: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def weights_name(objective: str) -> str:
    from slidescan.focus.learned.checkpoint import objective_slug

    return f"diffcnn_{objective_slug(objective)}"


def train(req: TrainRequest, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Generate (or read) the data, train, and write weights + model card. Returns a summary."""
    import torch

    from slidescan.focus.learned.diffcnn_model import DiffCNNMeta
    from slidescan.focus.learned.diffcnn_training import DiffCNNTask, DiffCNNTrainConfig
    from slidescan.focus.learned.mobilenet import MobileNetV2
    from slidescan.focus.learned.training import LoopConfig, Trainer, resolve_device

    t_start = time.perf_counter()
    recipe = recipe_for(req.objective)
    device = resolve_device(req.device)
    if req.threads:
        torch.set_num_threads(req.threads)
    (train_data, train_path), (val_data, val_path) = generate_splits(
        generate, req, recipe, req.samples, req.val_samples, log
    )
    if len(train_data) < 2 * req.batch_size:
        raise ValueError(f"only {len(train_data)} training patches; ask for more --samples")
    t_data = time.perf_counter() - t_start

    torch.manual_seed(req.seed)
    spec = recipe.spec
    arch = architecture_config(recipe)
    model = MobileNetV2(**arch)
    y_mean = float(np.mean(train_data.y_um))
    y_scale = float(np.std(train_data.y_um))
    loop = LoopConfig(epochs=req.epochs, lr=req.lr, seed=req.seed)
    task_cfg = DiffCNNTrainConfig(batch_size=req.batch_size)
    task = DiffCNNTask(train_data, val_data, spec, task_cfg, req.epochs, y_mean, y_scale, device)
    trainer = Trainer(model, task, loop, device)
    name = weights_name(req.objective)
    req.out.mkdir(parents=True, exist_ok=True)
    state_path = req.out / f"{name}.state.pt"
    rng = resume_state(trainer, state_path, req.resume, log)

    def epoch_line(h: Any) -> str:
        m = h.metrics
        return (
            f"epoch {h.epoch}/{loop.epochs} phase {task_cfg.phase(h.epoch - 1, loop.epochs)}: "
            f"loss {h.train_loss:.4f}, val patch MAE {m['patch_mae_um']:.3f} um, tile MAE "
            f"{m['tile_mae_um']:.3f} um (p95 {m['tile_p95_um']:.3f}), {h.seconds:.0f} s"
        )

    history = fit_with_progress(
        trainer, task.steps_per_epoch(), state_path, rng, epoch_line, log, req.progress, ".3f"
    )
    metrics = trainer.validate()
    model_cpu = trainer.model.to("cpu").eval()
    trained = provenance(
        req,
        loop,
        task_cfg,
        data={
            "version": DATA_VERSION,
            "train_pairs": int(len(np.unique(train_data.tile))),
            "train_patches": len(train_data),
            "val_pairs": int(len(np.unique(val_data.tile))),
            "val_patches": len(val_data),
            "train_specimens": TRAIN_SPECIMENS,
            "val_specimens": VAL_SPECIMENS,
            "train_cache": str(train_path.name),
            "val_cache": str(val_path.name),
        },
        metrics=metrics,
        history=[
            {**dataclasses.asdict(h), "phase": task_cfg.phase(h.epoch - 1, loop.epochs)}
            for h in history
        ],
        model=model_cpu,
        device=device,
        t_start=t_start,
        t_data=t_data,
    )
    meta = DiffCNNMeta(
        input_spec=spec.to_dict(),
        objective=recipe.objective,
        na=recipe.na,
        na_range=recipe.na_range,
        delta_um=recipe.delta_um,
        offset_um=recipe.offset_um,
        y_mean_um=y_mean,
        y_scale_um=y_scale,
        y_min_um=recipe.y_min_um,
        y_max_um=recipe.y_max_um,
        trained=trained,
    )
    card = model_card(meta, arch, recipe, f"{name}.pt")
    return {
        **write_model(req.out, name, meta.checkpoint(model_cpu, arch, card), card),
        "val": metrics,
        "epochs": loop.epochs,
        "parameters": trained["parameters"],
        "train_patches": len(train_data),
        "val_patches": len(val_data),
        "data_s": trained["data_s"],
        "total_s": trained["total_s"],
    }


def architecture_config(recipe: Recipe) -> dict[str, Any]:
    """The `mobilenetv2` keyword arguments for a recipe."""
    return {
        "in_channels": recipe.spec.in_channels,
        "num_outputs": 1,
        "width_mult": recipe.width_mult,
        "last_channels": recipe.last_channels,
    }


def model_card(meta: Any, arch: dict[str, Any], recipe: Recipe, weights_name: str) -> str:
    """A short Markdown model card: what the model is, how it was made, how good it is."""
    t = meta.trained
    m = t.get("val_metrics", {})
    spec = meta.spec
    hist = "\n".join(
        f"| {h['epoch']} | {h['phase']} | {h['train_loss']:.4f} | "
        f"{h['metrics']['patch_mae_um']:.3f} | {h['metrics']['tile_mae_um']:.3f} | "
        f"{h['metrics']['tile_p95_um']:.3f} |"
        for h in t.get("history", [])
    )
    loop = t.get("train_config", {}).get("loop", {})
    task = t.get("train_config", {}).get("task", {})
    extra = t.get("eval", "")
    resumed = " (this invocation resumed an interrupted run)" if t.get("resumed") else ""
    return f"""# diffcnn model card: {meta.objective}

Difference-image CNN autofocus after Dastidar & Ethirajan, "Whole slide imaging system using
deep learning-based automated focusing", Biomed. Opt. Express 11(1):480-491 (2020).
Weights file: `{weights_name}` (a slidescan model checkpoint that holds this card too), focus
method `diffcnn` (`slidescan.focus.learned.diffcnn.DiffCNNFocus`).

## What it does

Two frames are taken below the expected focus, the first at z and the second at
z + {meta.delta_um:g} um. The network reads, per {spec.patch_px}x{spec.patch_px} patch
({spec.bin}x binned, {spec.patch_um:.1f} um of specimen, {spec.colour}), the first frame and the
floating-point difference of the two, both standardised per channel with the pair's patch
statistics, and regresses y = z_focus - z. Up to {spec.max_patches} patches with the most
tissue are combined by a std-weighted median; their spread is the confidence. Trained range:
y in [{meta.y_min_um:g}, {meta.y_max_um:g}] um (the upper shot at least
{meta.y_min_um - meta.delta_um:g} um below focus). The first shot goes
y_min + 0.5 um + range below the hint: {meta.offset_um:g} um for hints within +/-5 um (`focus
eval`), {meta.y_min_um + 1.5:g} um for the method's default 1 um range in scans.

## Model

MobileNetV2 (plain torch), width {arch["width_mult"]:g}, last layer {arch["last_channels"]}
channels, {arch["in_channels"]} input channels, {t.get("parameters", "?")} parameters, one regression output
(normalised by mean {meta.y_mean_um:.3f} um, scale {meta.y_scale_um:.3f} um).

## Training

- Command: `{t.get("command", "")}`
- Seed {t.get("seed")}, {t.get("epochs")} epochs, device {t.get("device")}, torch {t.get("torch")};
  wall time: data generation {t.get("data_s")} s, total {t.get("total_s")} s{resumed}.
- Loss: smooth L1 (beta {task.get("beta_um")} um) weighted by patch std (phase 1, first
  {task.get("phase1_fraction")} of the epochs), then also by 1 / (1 + ln(1 + |y| / 1 um))
  (phase 2). AdamW, one-cycle learning rate {loop.get("lr")}, batch {task.get("batch_size")},
  flips and 90-degree rotations; batch-norm statistics re-estimated after every epoch.
- Data (optical simulator, data version {t.get("data", {}).get("version")}):
  {t.get("data", {}).get("train_pairs")} training pairs ({t.get("data", {}).get("train_patches")} patches) from
  {t.get("data", {}).get("train_specimens")}; randomised NA {recipe.na_range[0]:.2f}-{recipe.na_range[1]:.2f},
  cover-glass error +/-15 um, axial chromatic shift R/B +/-0.3 um, section thickness 2-6 um in
  3-5 slabs, mounting index 1.47-1.56, stain strength 0.45-1.6, exposure 3-20 ms, read noise
  1.5-5 e, vignetting 0-12 %, JPEG (15 % of scenes), z repeatability up to 0.04 um, XY jitter
  up to 0.4 um between the shots.
- Validation (held out: specimens never trained on, optical settings outside the training
  ranges: cover-glass error 15-22 um, chromatic shift 0.3-0.4 um, NA {recipe.na:g}):
  {t.get("data", {}).get("val_pairs")} pairs ({t.get("data", {}).get("val_patches")} patches) from
  {t.get("data", {}).get("val_specimens")}.

| epoch | phase | train loss | val patch MAE um | val tile MAE um | val tile p95 um |
|---|---|---|---|---|---|
{hist}

Final validation (tile = std-weighted median of a pair's patches): MAE
{m.get("tile_mae_um", float("nan")):.3f} um, median {m.get("tile_median_um", float("nan")):.3f} um,
p95 {m.get("tile_p95_um", float("nan")):.3f} um, max {m.get("tile_max_um", float("nan")):.3f} um over {m.get("tiles")} pairs.
{extra}
## Limits

Trained on simulated brightfield images of thin stained sections with a dry
{meta.objective} objective; real optics (partial coherence, other aberrations, dust, tissue
folds thicker than the training sections) may need fine-tuning on recorded stacks. Outside the
trained range, or when the patches disagree, the method takes a second pair and then falls
back to a short z-sweep.
"""


def describe_command(argv: Sequence[str] | None = None) -> str:
    """The command line that ran, for the model card (program name normalised)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return "slidescan " + " ".join(shlex.quote(a) for a in args)
