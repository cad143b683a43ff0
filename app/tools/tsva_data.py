"""TSVA's training data from the simulator: two shots around a mispredicted focus, and the
noise-free in-focus image they should be fused into.

Per sample (Li et al.'s recipe, on simulated scenes): a field's true focus F; a focus
prediction error e ~ N(0, `error_sd_um`) (clipped to +/- `error_max_um`), so the pair is rarely
centred on focus; a shot spacing dD drawn from `spacing_um` (one network serves any spacing a
user picks in that range); shot Y1 at F + e - dD and Y2 at F + e + dD, each with the scene's z
repeatability, the second shot shifted by the scene's XY jitter; the target is
`simdata.render_clean` at F: the camera's expected image without noise, rounding or JPEG. A
real scanner can only give a noisy in-focus capture as target, so a network trained this way
also denoises; it is scored against the same noise-free reference (`/stacks/<id>/reference`).

Scenes (specimen, optics, camera) come from `simdata` with its train / validation splits:
validation specimens and optical settings are never trained on. Fields are rendered
`camera_px` square and cached in HDF5 per (recipe, split, samples, seed), so training runs and
resumes read them instead of rendering again.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slidescan.app.tools.simdata import (
    Scene,
    build_scene,
    cache_key,
    cached_render,
    parallel_map,
    random_field,
    render_clean,
    sample_scene,
)

#: Bump when the data recipe changes so stale caches are not reused.
DATA_VERSION = 1


@dataclass(frozen=True)
class Recipe:
    """What TSVA is trained for: one objective, its spacing range and its prediction error."""

    objective: str = "20x/0.75"
    na: float = 0.75
    na_range: tuple[float, float] = (0.70, 0.80)
    spacing_um: tuple[float, float] = (0.75, 2.5)
    error_sd_um: float = 1.0
    error_max_um: float = 3.5
    camera_px: int = 192
    jitter_px: int = 4  # render margin for the XY jitter between the two shots
    fields_per_scene: int = 8
    #: fraction of scenes with a thin section (0.2-1.5 um) instead of 2-6 um
    thin_fraction: float = 0.3
    #: fraction of scenes seen by a one-chip (Bayer) colour camera, demosaiced
    bayer_fraction: float = 0.0


@dataclass
class SampleSet:
    """Rendered samples; arrays share their first axis. `shots` (N, 2, H, W, C) uint8 in
    acquisition order (z ascending); `target` (N, H, W, C) float16 on the 0-255 scale."""

    shots: np.ndarray
    target: np.ndarray
    error_um: np.ndarray
    spacing_um: np.ndarray
    scene: np.ndarray

    def __len__(self) -> int:
        return len(self.shots)

    def __post_init__(self) -> None:
        n = len(self.shots)
        for name in ("target", "error_um", "spacing_um", "scene"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, shots has {n}")


def render_scene(scene: Scene, recipe: Recipe) -> SampleSet:
    """The scene's samples (runs in a worker process)."""
    rng = np.random.default_rng(scene.seed)
    sim = build_scene(scene)
    j, n = recipe.jitter_px, recipe.camera_px
    px = sim.optics.pixel_size_um
    shots, targets, errors, spacings = [], [], [], []
    for _ in range(recipe.fields_per_scene):
        x, y = random_field(sim, rng)
        focus = float(sim.true_focus_um(x, y))
        e = float(
            np.clip(rng.normal(0.0, recipe.error_sd_um), -recipe.error_max_um, recipe.error_max_um)
        )
        dd = float(rng.uniform(*recipe.spacing_um))
        z1 = focus + e - dd + rng.normal(0.0, scene.z_noise_um)
        z2 = focus + e + dd + rng.normal(0.0, scene.z_noise_um)
        f1 = sim.render(x, y, z1, rng=rng)
        f2 = sim.render(x, y, z2, rng=rng)
        clean = render_clean(sim, x, y, focus)
        dy, dx = (
            int(v) for v in np.clip(np.rint(rng.normal(0.0, scene.xy_jitter_um / px, 2)), -j, j)
        )
        a = f1[j : j + n, j : j + n]
        b = f2[j + dy : j + dy + n, j + dx : j + dx + n]
        shots.append(np.stack([a, b]))
        targets.append(clean[j : j + n, j : j + n].astype(np.float16))
        errors.append(e)
        spacings.append(dd)
    return SampleSet(
        np.stack(shots),
        np.stack(targets),
        np.asarray(errors),
        np.asarray(spacings),
        np.full(len(shots), scene.index),
    )


def _render_job(job: tuple[Scene, Recipe]) -> SampleSet:
    return render_scene(*job)


def data_key(recipe: Recipe, split: str, samples: int, seed: int) -> str:
    return cache_key(DATA_VERSION, recipe, split=split, samples=samples, seed=seed)


def scenes_for(
    split: str, samples: int, seed: int, recipe: Recipe, tissue_dir: Path
) -> list[Scene]:
    """The scenes that give about `samples` samples of `split`."""
    count = max(1, math.ceil(samples / recipe.fields_per_scene))
    return [
        sample_scene(
            i,
            split,
            seed,
            _SceneRecipe(recipe),
            tissue_dir,
            thin_fraction=recipe.thin_fraction,
            bayer_fraction=recipe.bayer_fraction,
        )
        for i in range(count)
    ]


@dataclass(frozen=True)
class _SceneRecipe:
    """What `simdata.sample_scene` reads from a recipe."""

    recipe: Recipe

    @property
    def objective(self) -> str:
        return self.recipe.objective

    @property
    def na(self) -> float:
        return self.recipe.na

    @property
    def na_range(self) -> tuple[float, float]:
        return self.recipe.na_range

    @property
    def camera_px(self) -> int:
        return self.recipe.camera_px

    @property
    def jitter_px(self) -> int:
        return self.recipe.jitter_px


def generate(
    split: str,
    samples: int,
    seed: int,
    recipe: Recipe,
    tissue_dir: Path,
    cache_dir: Path,
    *,
    workers: int = 1,
    progress: bool = True,
    log: Callable[[str], None] = lambda s: None,
) -> tuple[SampleSet, Path]:
    """The samples of `split`: read from the cache, or rendered (in `workers` processes) and
    cached. Returns (samples, cache path)."""
    path = cache_dir / f"tsva_{split}_{data_key(recipe, split, samples, seed)}.h5"
    fields = ("shots", "target", "error_um", "spacing_um", "scene")

    def render() -> tuple[dict[str, np.ndarray], list[Scene]]:
        if not tissue_dir.is_dir():
            raise FileNotFoundError(f"real tissue images not found at {tissue_dir} (see --tissue)")
        scenes = scenes_for(split, samples, seed, recipe, tissue_dir)
        jobs = [(s, recipe) for s in scenes]
        parts: list[SampleSet] = parallel_map(
            _render_job, jobs, workers, f"render {split}", progress
        )
        return {k: np.concatenate([getattr(p, k) for p in parts]) for k in fields}, scenes

    arrays = cached_render(
        path,
        fields,
        render,
        chunk_rows={"shots": 1, "target": 1},
        attrs={
            "recipe": json.dumps(dataclasses.asdict(recipe), default=str),
            "split": split,
            "seed": seed,
        },
        what=f"{split} data",
        log=log,
    )
    return SampleSet(*(arrays[k] for k in fields)), path


def describe(data: SampleSet, scenes: list[Scene] | None = None) -> dict[str, Any]:
    """Numbers for the model card."""
    return {
        "samples": len(data),
        "scenes": int(len(np.unique(data.scene))),
        "error_sd_um": float(np.std(data.error_um)),
        "spacing_um": [float(data.spacing_um.min()), float(data.spacing_um.max())],
    }
