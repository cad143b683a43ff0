"""Training the difference-image CNN on simulator data: data generation, the training run,
the model card, and held-out evaluation stacks.

Data. Every *scene* is one simulator (`SimConfig`) with randomised specimen, optics and
camera; a few fields of it are rendered as frame pairs at z and z + delta below focus, with
label y = z_focus - z. What a real scanner varies is randomised so the model does not learn one
simulator setting: NA within the objective's class, cover-glass (spherical) aberration, axial
chromatic shift, section thickness and depth structure, stain strength and colour balance,
exposure, read noise, vignetting, JPEG, z repeatability and XY jitter between the two shots.

Splits. Training specimens: procedural H&E and IHC (seeds < 10^6) and two real Ki67 images
(`ki67_nanozoomer`, `ki67_olympus-vs`). Validation (never trained on): the real H&E image, the
scikit-image IHC image and procedural tissue with seeds >= 10^6, all with optical settings
outside the training ranges (stronger aberration and chromatic shift). The same held-out
recipe makes the evaluation stacks (`write_holdout_stacks`).

The generated patches are cached once per (recipe, split, size, seed) in an HDF5 file, so
training runs and resumes read them instead of rendering again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from slidescan.focus.learned.preprocess import InputSpec, patch_pairs

#: Bump when the data recipe changes so stale caches are not reused.
DATA_VERSION = 4
REAL_TRAIN_IMAGES = ("ki67_nanozoomer_0.227um.png", "ki67_olympus-vs_0.346um.png")
REAL_HOLDOUT_IMAGES = ("he_nanozoomer_0.227um.png",)
#: Generic textures from scikit-image's bundled images, used as extra training specimens at
#: random scales: the physics that relates two defocused frames holds for any absorbing
#: texture, and variety keeps the network from keying on the look of a few tissues.
TEXTURE_IMAGES = ("gravel.png", "grass.png", "brick.png", "cell.png", "rocket.jpg", "coffee.png")
#: Assumed pixel size of scikit-image's IHC sample (nuclei ~20 px across, ~8 um).
SKIMAGE_IHC_PIXEL_UM = 0.4
HOLDOUT_SEED_BASE = 1_000_000


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


# -- scenes ----------------------------------------------------------------------------------------
@dataclass
class Scene:
    """One randomised simulator plus the acquisition noise of its pairs."""

    index: int
    split: str
    config: dict[str, Any]  # SimConfig as JSON-able dict
    na: float
    xy_jitter_um: float
    z_noise_um: float
    seed: int
    label: str = ""


def _image_specimen(path: Path, rng: np.random.Generator, pixel_um: float | None = None):
    spec: dict[str, Any] = {"kind": "image", "image_path": str(path), "tissue_shape": "fill"}
    if pixel_um is not None:
        spec["image_pixel_size_um"] = pixel_um
    spec.update(
        thickness_um=float(rng.uniform(2.0, 6.0)),
        layers=int(rng.integers(3, 6)),
        medium_n=float(rng.uniform(1.47, 1.56)),
    )
    return spec


def _procedural_specimen(stain: str, rng: np.random.Generator) -> dict[str, Any]:
    return {
        "kind": "procedural",
        "stain": stain,
        "tissue_shape": "fill",
        "hole_fraction": float(rng.uniform(0.0, 0.1)),
        "thickness_um": float(rng.uniform(2.0, 6.0)),
        "layers": int(rng.integers(3, 6)),
        "medium_n": float(rng.uniform(1.47, 1.56)),
        "nuclei_density_cellular": float(rng.uniform(6.0, 24.0)),
        "nuclei_density_stroma": float(rng.uniform(0.5, 5.0)),
        "lumen_density_per_mm2": float(rng.uniform(0.0, 60.0)),
        "stain_strength": float(rng.uniform(0.45, 1.6)),
        "dab_positive_fraction": float(rng.uniform(0.05, 0.7)),
    }


def _signed(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi) * rng.choice((-1.0, 1.0)))


def sample_scene(index: int, split: str, seed: int, recipe: Recipe, tissue_dir: Path) -> Scene:
    """Scene `index` of `split`, drawn from its own seed stream (worker-order independent)."""
    ss = np.random.SeedSequence([seed, {"train": 1, "val": 2}[split], index])
    rng = np.random.default_rng(ss)
    sim_seed = int(rng.integers(0, HOLDOUT_SEED_BASE))
    if split == "train":
        kind = rng.choice(["he", "ihc", "real", "texture"], p=[0.3, 0.25, 0.25, 0.2])
        if kind == "real":
            name = REAL_TRAIN_IMAGES[int(rng.integers(len(REAL_TRAIN_IMAGES)))]
            # the image's own scale jittered: other cell sizes, other intrinsic sharpness
            nominal = float(name.rsplit("_", 1)[1].removesuffix("um.png"))
            pixel = nominal * float(rng.uniform(0.8, 1.5))
            specimen, label = _image_specimen(tissue_dir / name, rng, pixel), name
        elif kind == "texture":
            name = TEXTURE_IMAGES[int(rng.integers(len(TEXTURE_IMAGES)))]
            path = skimage_data_path(name)
            pixel = float(rng.uniform(0.12, 0.35))
            specimen, label = _image_specimen(path, rng, pixel), f"texture {name}"
        else:
            specimen, label = _procedural_specimen(str(kind), rng), f"procedural {kind}"
        coverslip = float(rng.uniform(-15.0, 15.0))
        chroma = (float(rng.uniform(-0.3, 0.3)), 0.0, float(rng.uniform(-0.3, 0.3)))
        na = float(rng.uniform(*recipe.na_range))
    else:
        kind = rng.choice(["he_real", "ihc_skimage", "he", "ihc"], p=[0.35, 0.25, 0.2, 0.2])
        sim_seed += HOLDOUT_SEED_BASE
        if kind == "he_real":
            name = REAL_HOLDOUT_IMAGES[0]
            specimen, label = _image_specimen(tissue_dir / name, rng), name
        elif kind == "ihc_skimage":
            specimen = _image_specimen(skimage_ihc_path(), rng, SKIMAGE_IHC_PIXEL_UM)
            label = "skimage ihc"
        else:
            specimen, label = _procedural_specimen(str(kind), rng), f"procedural {kind}"
        coverslip = _signed(rng, 15.0, 22.0)
        chroma = (_signed(rng, 0.3, 0.4), 0.0, _signed(rng, 0.3, 0.4))
        na = recipe.na
    size = recipe.camera_px + 2 * recipe.jitter_px
    jpeg = int(rng.integers(80, 96)) if rng.random() < 0.15 else None
    config = {
        "objective": recipe.objective,
        "seed": sim_seed,
        "specimen": specimen,
        "optics": {
            "psf": "pupil",
            "na": na,
            "coverslip_error_um": coverslip,
            "chromatic_shift_um": chroma,
            "fft_workers": 1,
            "field_cache_size": 1,
        },
        "camera": {
            "width": size,
            "height": size,
            "exposure_ms": float(rng.uniform(3.0, 20.0)),
            "read_noise_e": float(rng.uniform(1.5, 5.0)),
            "vignetting": float(rng.uniform(0.0, 0.12)),
            "jpeg_quality": jpeg,
        },
    }
    return Scene(
        index=index,
        split=split,
        config=config,
        na=na,
        xy_jitter_um=float(rng.uniform(0.0, 0.4)),
        z_noise_um=float(rng.uniform(0.0, 0.04)),
        seed=int(rng.integers(0, 2**31)),
        label=label,
    )


def skimage_data_path(name: str) -> Path:
    """A sample image bundled in the scikit-image wheel (no download)."""
    try:
        import skimage
    except ImportError:
        raise RuntimeError(
            "training needs scikit-image for its sample images: pip install 'slidescan[train]'"
        ) from None

    path = Path(skimage.__file__).parent / "data" / name
    if not path.is_file():
        raise FileNotFoundError(f"scikit-image's sample {name} not found at {path}")
    return path


def skimage_ihc_path() -> Path:
    """The file behind `skimage.data.immunohistochemistry()`."""
    return skimage_data_path("ihc.png")


@dataclass
class SceneData:
    pairs: np.ndarray  # (N, 2, C, P, P) float16
    y_um: np.ndarray
    patch_std: np.ndarray
    tile: np.ndarray  # local pair index within the scene
    seconds: float = 0.0


def render_scene(scene: Scene, recipe: Recipe) -> SceneData:
    """Render the scene's pairs and cut them into patches (runs in a worker process)."""
    from slidescan.hardware.sim import SimConfig, build_simulator

    t0 = time.perf_counter()
    rng = np.random.default_rng(scene.seed)
    sim = build_simulator(SimConfig.model_validate(scene.config))
    x0, y0, x1, y1 = sim.slide_bounds_um
    fw, fh = sim.field_of_view_um
    j = recipe.jitter_px
    n = recipe.camera_px
    px = sim.optics.pixel_size_um
    out_pairs, out_y, out_std, out_tile = [], [], [], []
    local = 0
    for _ in range(recipe.fields_per_scene):
        x = float(rng.uniform(x0 + fw, x1 - fw))
        y = float(rng.uniform(y0 + fh, y1 - fh))
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


# -- the cached data set ---------------------------------------------------------------------------
def data_key(recipe: Recipe, split: str, pairs: int, seed: int) -> str:
    blob = json.dumps(
        {
            "v": DATA_VERSION,
            "recipe": dataclasses.asdict(recipe),
            "split": split,
            "pairs": pairs,
            "seed": seed,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


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

    from slidescan.focus.learned.training import PatchDataset

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
    from tqdm import tqdm

    jobs = [(sample_scene(i, split, seed, recipe, tissue_dir), recipe) for i in range(scenes)]
    results: list[SceneData] = []
    bar = tqdm(
        total=scenes, desc=f"render {split}", unit="scene", disable=not progress, file=sys.stderr
    )
    try:
        if workers > 1:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                for r in pool.map(_render_job, jobs):
                    results.append(r)
                    bar.update(1)
        else:
            for job in jobs:
                results.append(_render_job(job))
                bar.update(1)
    finally:
        bar.close()
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


# -- training ----------------------------------------------------------------------------------------
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
    from slidescan.focus.learned.weights import objective_slug

    return f"diffcnn_{objective_slug(objective)}"


def train(req: TrainRequest, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Generate (or read) the data, train, and write weights + model card. Returns a summary."""
    import torch

    from slidescan.focus.learned.mobilenet import MobileNetV2, count_parameters
    from slidescan.focus.learned.training import (
        TrainConfig,
        Trainer,
        fit,
        resolve_device,
    )
    from slidescan.focus.learned.weights import DiffCNNMeta, save_checkpoint

    t_start = time.perf_counter()
    recipe = recipe_for(req.objective)
    device = resolve_device(req.device)
    if req.threads:
        torch.set_num_threads(req.threads)
    train_data, train_path = generate(
        "train",
        req.samples,
        req.seed,
        recipe,
        req.tissue_dir,
        req.cache_dir,
        workers=req.workers,
        progress=req.progress,
        log=log,
    )
    val_data, val_path = generate(
        "val",
        req.val_samples,
        req.seed,
        recipe,
        req.tissue_dir,
        req.cache_dir,
        workers=req.workers,
        progress=req.progress,
        log=log,
    )
    if len(train_data) < 2 * req.batch_size:
        raise ValueError(f"only {len(train_data)} training patches; ask for more --samples")
    t_data = time.perf_counter() - t_start

    torch.manual_seed(req.seed)
    spec = recipe.spec
    model = MobileNetV2(spec.in_channels, 1, recipe.width_mult, recipe.last_channels)
    y_mean = float(np.mean(train_data.y_um))
    y_scale = float(np.std(train_data.y_um))
    cfg = TrainConfig(epochs=req.epochs, batch_size=req.batch_size, lr=req.lr, seed=req.seed)
    trainer = Trainer(
        model, spec, cfg, y_mean, y_scale, device, steps_per_epoch=len(train_data) // req.batch_size
    )
    name = weights_name(req.objective)
    req.out.mkdir(parents=True, exist_ok=True)
    state_path = req.out / f"{name}.state.pt"
    rng = None
    if req.resume:
        if not state_path.is_file():
            raise FileNotFoundError(f"--resume: no training state at {state_path}")
        rng = trainer.load_state(state_path)
        log(f"resumed at epoch {trainer.state.epoch} of {cfg.epochs}")

    from tqdm import tqdm

    steps = len(train_data) // req.batch_size
    bar = tqdm(
        total=(cfg.epochs - trainer.state.epoch) * steps,
        desc="train",
        unit="batch",
        disable=not req.progress,
        file=sys.stderr,
    )

    def on_step(step: int, loss: float) -> None:
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss:.3f}")

    def on_epoch(h: Any) -> None:
        log(
            f"epoch {h.epoch}/{cfg.epochs} phase {h.phase}: loss {h.train_loss:.4f}, "
            f"val patch MAE {h.val_patch_mae_um:.3f} um, tile MAE {h.val_tile_mae_um:.3f} um "
            f"(p95 {h.val_tile_p95_um:.3f}), {h.seconds:.0f} s"
        )

    try:
        history = fit(
            trainer,
            train_data,
            val_data,
            state_path=state_path,
            rng=rng,
            on_epoch=on_epoch,
            on_step=on_step,
        )
    finally:
        bar.close()
    metrics = trainer.evaluate(val_data)
    t_total = time.perf_counter() - t_start
    model_cpu = trainer.model.to("cpu").eval()
    trained = {
        "command": req.command,
        "seed": req.seed,
        "epochs": cfg.epochs,
        "train_config": dataclasses.asdict(cfg),
        "data": {
            "version": DATA_VERSION,
            "train_pairs": int(len(np.unique(train_data.tile))),
            "train_patches": len(train_data),
            "val_pairs": int(len(np.unique(val_data.tile))),
            "val_patches": len(val_data),
            "train_specimens": "procedural H&E and IHC (seeds < 1e6), "
            + ", ".join(REAL_TRAIN_IMAGES)
            + " (pixel size jittered x0.8-1.5), scikit-image textures "
            + ", ".join(TEXTURE_IMAGES)
            + " (0.12-0.35 um/px)",
            "val_specimens": f"{REAL_HOLDOUT_IMAGES[0]}, skimage ihc, procedural (seeds >= 1e6)",
            "train_cache": str(train_path.name),
            "val_cache": str(val_path.name),
        },
        "val_metrics": metrics,
        "history": [dataclasses.asdict(h) for h in history],
        "parameters": count_parameters(model_cpu),
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "data_s": round(t_data, 1),
        "total_s": round(t_total, 1),
        "resumed": bool(req.resume),
        **req.extra,
    }
    meta = DiffCNNMeta(
        in_channels=spec.in_channels,
        width_mult=recipe.width_mult,
        last_channels=recipe.last_channels,
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
    weights = save_checkpoint(req.out / f"{name}.pt", model_cpu, meta)
    card = req.out / f"{name}.md"
    card.write_text(model_card(meta, recipe, weights), encoding="utf-8")
    return {
        "weights": str(weights),
        "model_card": str(card),
        "weights_mb": weights.stat().st_size / 1e6,
        "val": metrics,
        "epochs": cfg.epochs,
        "parameters": trained["parameters"],
        "train_patches": len(train_data),
        "val_patches": len(val_data),
        "data_s": round(t_data, 1),
        "total_s": round(t_total, 1),
    }


def model_card(meta: Any, recipe: Recipe, weights: Path) -> str:
    """A short Markdown model card: what the model is, how it was made, how good it is."""
    t = meta.trained
    m = t.get("val_metrics", {})
    spec = meta.spec
    hist = "\n".join(
        f"| {h['epoch']} | {h['phase']} | {h['train_loss']:.4f} | {h['val_patch_mae_um']:.3f} "
        f"| {h['val_tile_mae_um']:.3f} | {h['val_tile_p95_um']:.3f} |"
        for h in t.get("history", [])
    )
    extra = t.get("eval", "")
    resumed = " (this invocation resumed an interrupted run)" if t.get("resumed") else ""
    return f"""# diffcnn model card: {meta.objective}

Difference-image CNN autofocus after Dastidar & Ethirajan, "Whole slide imaging system using
deep learning-based automated focusing", Biomed. Opt. Express 11(1):480-491 (2020).
Weights file: `{weights.name}` ({weights.stat().st_size / 1e6:.2f} MB), focus method
`diffcnn` (`slidescan.focus.learned.diffcnn.DiffCNNFocus`).

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

MobileNetV2 (plain torch), width {meta.width_mult:g}, last layer {meta.last_channels} channels,
{meta.in_channels} input channels, {t.get("parameters", "?")} parameters, one regression output
(normalised by mean {meta.y_mean_um:.3f} um, scale {meta.y_scale_um:.3f} um).

## Training

- Command: `{t.get("command", "")}`
- Seed {t.get("seed")}, {t.get("epochs")} epochs, device {t.get("device")}, torch {t.get("torch")};
  wall time: data generation {t.get("data_s")} s, total {t.get("total_s")} s{resumed}.
- Loss: smooth L1 (beta {t.get("train_config", {}).get("beta_um")} um) weighted by patch std
  (phase 1, first {t.get("train_config", {}).get("phase1_fraction")} of the epochs), then also by
  1 / (1 + ln(1 + |y| / 1 um)) (phase 2). AdamW, one-cycle learning rate
  {t.get("train_config", {}).get("lr")}, batch {t.get("train_config", {}).get("batch_size")}, flips and
  90-degree rotations.
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


def write_holdout_stacks(
    out_dir: Path,
    objective: str,
    tissue_dir: Path,
    *,
    positions: int = 4,
    seed: int = 7,
    size: int = 512,
    z_min: float = -16.0,
    z_max: float = 8.0,
    z_step: float = 0.25,
    stage: str | None = None,
    na: float | None = None,
    coverslip_error_um: float = 18.0,
    chromatic_shift_um: tuple[float, float, float] = (0.35, 0.0, -0.35),
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Focus-stack files of held-out specimens with held-out optics, for `slidescan focus eval`.

    One file per specimen: the real H&E image, scikit-image's IHC image, and procedural H&E
    and IHC with a seed above the training range. `na` overrides the objective's NA (the
    simulator's `optics.na`), for a robustness set with an aperture never trained on.
    """
    from slidescan.app.commands.stack import synthesise
    from slidescan.hardware.sim import SimConfig

    offsets = np.round(np.arange(z_min, z_max + z_step / 2, z_step), 6)
    specimens: list[tuple[str, dict[str, Any]]] = [
        ("he_real", {"kind": "image", "image_path": str(tissue_dir / REAL_HOLDOUT_IMAGES[0])}),
        (
            "ihc_skimage",
            {
                "kind": "image",
                "image_path": str(skimage_ihc_path()),
                "image_pixel_size_um": SKIMAGE_IHC_PIXEL_UM,
            },
        ),
        ("he_procedural", {"kind": "procedural", "stain": "he"}),
        ("ihc_procedural", {"kind": "procedural", "stain": "ihc"}),
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    summaries = []
    for name, specimen in specimens:
        fields: dict[str, Any] = {
            "objective": objective,
            "seed": HOLDOUT_SEED_BASE + seed,
            "specimen": specimen,
            "optics": {
                "na": na,
                "coverslip_error_um": coverslip_error_um,
                "chromatic_shift_um": chromatic_shift_um,
            },
            "camera": {"width": size, "height": size},
        }
        if stage is not None:
            fields["stage"] = stage
        config = SimConfig.model_validate(fields)
        path = out_dir / f"holdout_{name}.h5"
        summaries.append(
            synthesise(path, config, positions, offsets, progress=progress) | {"name": name}
        )
    return summaries


def describe_command(argv: Sequence[str] | None = None) -> str:
    """The command line that ran, for the model card (program name normalised)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return "slidescan " + " ".join(shlex.quote(a) for a in args)


def default_threads() -> int:
    return max(1, min(2, os.cpu_count() or 1))
