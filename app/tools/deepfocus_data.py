"""DeepFocus's training data from the simulator: blurred patches of many specimens through many
microscopes, each labelled with its blur score and whether it shows enough texture to judge.

One model for many microscopes is the paper's point, so a scene draws its objective from 10x/0.30
to 40x/0.95 (NA jittered +/-6 %) and its camera's pixel pitch from 3.45 to 7.4 um; the rest of
the randomisation is `simdata`'s (specimens: procedural H&E and IHC, the real Ki67 images,
scikit-image textures; cover-glass aberration, chromatic shift, section thickness, stain,
exposure, noise, vignetting, JPEG). Per field: the true focus F, `z_per_field` planes at
defoci drawn uniformly in *score* (so near-focus and far-out patches are equally common, out to
past saturation), each rendered with noise and cut into 128 px patches; the label is
`deepfocus_score.score_target` of the defocus with the scene's own NA and pixel size.

Validity: a patch is valid when its noise-free in-focus render has texture (luminance standard
deviation >= `MIN_TEXTURE`); blank glass patches (a flat level with camera-like noise and
shading) are added with label invalid and no score. Validation scenes (held-out specimens,
out-of-range aberrations, the nominal NA and a 6.5 um camera pixel) are never trained on.
Fields are cached in HDF5 per (recipe, split, scenes, seed) like TSVA's.
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
from slidescan.focus.learned.deepfocus_score import (
    MAX_SIGMA_PX,
    blur_sigma_px,
    luminance,
    score_target,
)

#: Bump when the data recipe changes so stale caches are not reused.
DATA_VERSION = 1
#: Least in-focus luminance spread (0-255 scale) of a patch worth judging.
MIN_TEXTURE = 2.0
OBJECTIVES = ("10x/0.30", "20x/0.50", "20x/0.75", "40x/0.95")


@dataclass(frozen=True)
class Recipe:
    """What the sharpness network is trained on."""

    objectives: tuple[str, ...] = OBJECTIVES
    na_jitter: float = 0.06
    sensor_pixel_um: tuple[float, float] = (3.45, 7.4)
    field_px: int = 256
    patch_px: int = 128
    fields_per_scene: int = 3
    z_per_field: int = 8
    #: fraction of the defoci drawn within half a depth of field (the rest: uniform in score)
    near_fraction: float = 0.15
    #: blank (glass) patches added per field, as a fraction of its patches
    blank_fraction: float = 0.05
    #: fraction of scenes seen by a one-chip (Bayer) colour camera, demosaiced
    bayer_fraction: float = 0.0


@dataclass
class PatchSet:
    """Rendered patches; arrays share their first axis. `patches` (N, P, P) uint8 luminance;
    `score` the label (NaN for blank patches); `valid` 1 where the patch can be judged."""

    patches: np.ndarray
    score: np.ndarray
    valid: np.ndarray
    defocus_um: np.ndarray
    objective: np.ndarray
    scene: np.ndarray

    FIELDS = ("patches", "score", "valid", "defocus_um", "objective", "scene")

    def __len__(self) -> int:
        return len(self.patches)

    def __post_init__(self) -> None:
        n = len(self.patches)
        for name in self.FIELDS[1:]:
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, patches has {n}")


@dataclass(frozen=True)
class _SceneRecipe:
    """What `simdata.sample_scene` reads, for one scene's objective."""

    objective: str
    na: float
    na_range: tuple[float, float]
    camera_px: int
    jitter_px: int = 0


def _nominal_na(objective: str) -> float:
    return float(objective.split("/", 1)[1])


def scene_objective(index: int, split: str, seed: int, recipe: Recipe) -> str:
    rng = np.random.default_rng([seed, {"train": 11, "val": 12}[split], index])
    return recipe.objectives[int(rng.integers(len(recipe.objectives)))]


def scenes_for(split: str, count: int, seed: int, recipe: Recipe, tissue_dir: Path) -> list[Scene]:
    """`count` scenes of `split`, each with its own objective and camera pixel."""
    scenes = []
    for i in range(count):
        objective = scene_objective(i, split, seed, recipe)
        na = _nominal_na(objective)
        lo, hi = na * (1 - recipe.na_jitter), min(na * (1 + recipe.na_jitter), 0.97)
        scene = sample_scene(
            i,
            split,
            seed,
            _SceneRecipe(objective, na, (lo, hi), recipe.field_px),
            tissue_dir,
            bayer_fraction=recipe.bayer_fraction,
        )
        rng = np.random.default_rng([seed, {"train": 21, "val": 22}[split], i])
        pitch = float(rng.uniform(*recipe.sensor_pixel_um)) if split == "train" else 6.5
        scene.config["optics"]["sensor_pixel_um"] = pitch
        scenes.append(scene)
    return scenes


def _defocus_for_score(t: float, na: float, pixel_um: float) -> float:
    """|dz| whose blur score is t (0 below the in-focus score)."""
    sigma_um = math.exp(t) * pixel_um
    diffraction = 0.21 * 0.55 / na
    if sigma_um <= diffraction:
        return 0.0
    return math.sqrt(sigma_um**2 - diffraction**2) * 2.0 / math.tan(math.asin(na))


def draw_defoci(
    rng: np.random.Generator, count: int, na: float, pixel_um: float, near_fraction: float
) -> np.ndarray:
    """Signed defoci: uniform in score from in-focus to 25 % past saturation, some near focus."""
    t0 = float(np.log(blur_sigma_px(0.0, na, pixel_um)))
    t1 = math.log(MAX_SIGMA_PX * 1.25)
    dof = 0.55 / (2 * (1 - math.sqrt(1 - na * na)))
    out = np.empty(count)
    for k in range(count):
        if rng.random() < near_fraction:
            dz = float(rng.uniform(0.0, 0.5 * dof))
        else:
            dz = _defocus_for_score(float(rng.uniform(t0, t1)), na, pixel_um)
        out[k] = dz * rng.choice((-1.0, 1.0))
    return out


def blank_patch(rng: np.random.Generator, size: int) -> np.ndarray:
    """Glass: a bright level with camera-like noise and a faint shading gradient."""
    level = rng.uniform(170.0, 250.0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    shade = 1.0 + rng.uniform(-0.03, 0.03) * (xx - 0.5) + rng.uniform(-0.03, 0.03) * (yy - 0.5)
    noise = rng.normal(0.0, rng.uniform(0.4, 3.0), (size, size))
    return np.clip(np.rint(level * shade + noise), 0, 255).astype(np.uint8)


def render_scene(scene: Scene, recipe: Recipe) -> PatchSet:
    """The scene's patches (runs in a worker process)."""
    rng = np.random.default_rng(scene.seed)
    sim = build_scene(scene)
    px = float(sim.optics.pixel_size_um)
    na = float(scene.na)
    objective = recipe.objectives.index(scene.config["objective"])
    p, n = recipe.patch_px, recipe.field_px
    corners = [(y, x) for y in range(0, n - p + 1, p) for x in range(0, n - p + 1, p)]
    patches, scores, valid, defoci = [], [], [], []
    for _ in range(recipe.fields_per_scene):
        x, y = random_field(sim, rng)
        focus = float(sim.true_focus_um(x, y))
        clean = luminance(render_clean(sim, x, y, focus))
        texture = [float(clean[a : a + p, b : b + p].std()) for a, b in corners]
        for dz in draw_defoci(rng, recipe.z_per_field, na, px, recipe.near_fraction):
            dz_seen = dz + rng.normal(0.0, scene.z_noise_um)
            grey = luminance(sim.render(x, y, focus + dz_seen, rng=rng))
            t = float(score_target(dz, na, px))
            for (a, b), tex in zip(corners, texture, strict=True):
                patches.append(np.clip(np.rint(grey[a : a + p, b : b + p]), 0, 255))
                scores.append(t)
                valid.append(tex >= MIN_TEXTURE)
                defoci.append(dz)
        blanks = rng.binomial(recipe.z_per_field * len(corners), recipe.blank_fraction)
        for _ in range(blanks):
            patches.append(blank_patch(rng, p))
            scores.append(np.nan)
            valid.append(False)
            defoci.append(np.nan)
    count = len(patches)
    return PatchSet(
        np.stack(patches).astype(np.uint8),
        np.asarray(scores, np.float32),
        np.asarray(valid, np.uint8),
        np.asarray(defoci, np.float32),
        np.full(count, objective, np.int8),
        np.full(count, scene.index, np.int32),
    )


def _render_job(job: tuple[Scene, Recipe]) -> PatchSet:
    return render_scene(*job)


def data_key(recipe: Recipe, split: str, scenes: int, seed: int) -> str:
    return cache_key(DATA_VERSION, recipe, split=split, scenes=scenes, seed=seed)


def generate(
    split: str,
    scenes: int,
    seed: int,
    recipe: Recipe,
    tissue_dir: Path,
    cache_dir: Path,
    *,
    workers: int = 1,
    progress: bool = True,
    log: Callable[[str], None] = lambda s: None,
) -> tuple[PatchSet, Path]:
    """The patches of `split` from `scenes` scenes: read from the cache, or rendered (in
    `workers` processes) and cached. Returns (patches, cache path)."""
    path = cache_dir / f"deepfocus_{split}_{data_key(recipe, split, scenes, seed)}.h5"

    def render() -> tuple[dict[str, np.ndarray], list[Scene]]:
        if not tissue_dir.is_dir():
            raise FileNotFoundError(f"real tissue images not found at {tissue_dir} (see --tissue)")
        made = scenes_for(split, scenes, seed, recipe, tissue_dir)
        parts: list[PatchSet] = parallel_map(
            _render_job, [(s, recipe) for s in made], workers, f"render {split}", progress
        )
        return {k: np.concatenate([getattr(q, k) for q in parts]) for k in PatchSet.FIELDS}, made

    arrays = cached_render(
        path,
        PatchSet.FIELDS,
        render,
        chunk_rows={"patches": 64},
        attrs={
            "recipe": json.dumps(dataclasses.asdict(recipe), default=str),
            "split": split,
            "seed": seed,
        },
        what=f"{split} data",
        log=log,
    )
    return PatchSet(*(arrays[k] for k in PatchSet.FIELDS)), path


def describe(data: PatchSet, recipe: Recipe) -> dict[str, Any]:
    """Numbers for the model card."""
    per_objective = {
        name: int((data.objective == i).sum()) for i, name in enumerate(recipe.objectives)
    }
    return {
        "patches": len(data),
        "scenes": int(len(np.unique(data.scene))),
        "valid": int(data.valid.sum()),
        "blank": int(np.isnan(data.score).sum()),
        "per_objective": per_objective,
    }
