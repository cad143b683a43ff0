"""Simulator data for learned methods, any method: randomised scenes, renders, held-out stacks.

A *scene* is one simulator (`SimConfig`) with randomised specimen, optics and camera; a method's
training tool renders what it needs from it: frame pairs (diffcnn), pairs around focus with the
noise-free in-focus target (`render_clean`; TSVA), stacks. What a real scanner varies is
randomised so a model does not learn one simulator setting: NA within the objective's class,
cover-glass (spherical) aberration, axial chromatic shift, section thickness and depth
structure, stain strength and colour balance, exposure, read noise, vignetting, JPEG, z
repeatability and XY jitter between shots.

Splits. Training specimens: procedural H&E and IHC (seeds < 10^6), two real Ki67 images
(`ki67_nanozoomer`, `ki67_olympus-vs`) and natural textures from scikit-image. Validation (never
trained on): the real H&E image, the scikit-image IHC image and procedural tissue with seeds
>= 10^6, all with optical settings outside the training ranges (stronger aberration and
chromatic shift). The same held-out recipe makes the evaluation stacks (`write_holdout_stacks`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from slidescan.hardware.sim.bayer import PATTERNS, demosaic_bilinear, mosaic

REAL_TRAIN_IMAGES = ("ki67_nanozoomer_0.227um.png", "ki67_olympus-vs_0.346um.png")
REAL_HOLDOUT_IMAGES = ("he_nanozoomer_0.227um.png",)
#: Generic textures from scikit-image's bundled images, used as extra training specimens at
#: random scales: the physics that relates two defocused frames holds for any absorbing
#: texture, and variety keeps the network from keying on the look of a few tissues.
TEXTURE_IMAGES = ("gravel.png", "grass.png", "brick.png", "cell.png", "rocket.jpg", "coffee.png")
#: Assumed pixel size of scikit-image's IHC sample (nuclei ~20 px across, ~8 um).
SKIMAGE_IHC_PIXEL_UM = 0.4
HOLDOUT_SEED_BASE = 1_000_000


class SceneRecipe(Protocol):
    """What scene sampling needs from a method's recipe."""

    objective: str
    na: float
    na_range: tuple[float, float]
    camera_px: int
    jitter_px: int


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


#: Thickness range (um) of a thin section, drawn for a `thin_fraction` of the scenes.
THIN_SECTION_UM = (0.2, 1.5)


def sample_scene(
    index: int,
    split: str,
    seed: int,
    recipe: SceneRecipe,
    tissue_dir: Path,
    *,
    thin_fraction: float = 0.0,
    bayer_fraction: float = 0.0,
) -> Scene:
    """Scene `index` of `split`, drawn from its own seed stream (worker-order independent).

    Sections are 2-6 um thick; with `thin_fraction` > 0 that fraction of the scenes gets a
    thin section instead (`THIN_SECTION_UM`, one or two slabs), drawn from a stream of its own
    so every other draw stays as it is without them. In a thick section a plane 1 um off focus
    looks much like the focal plane (the section blurs itself); in a thin one it does not, and
    a network that has only seen thick sections over-sharpens a thin section's in-focus shot.

    With `bayer_fraction` > 0 that fraction of the scenes is seen by a one-chip colour camera
    (a Bayer mosaic of random layout, demosaiced; `hardware/sim/bayer.py`), drawn the same way
    from a stream of its own: its noise is correlated between neighbouring pixels and its
    finest detail softened, as on most real colour cameras.
    """
    for name, share in (("thin_fraction", thin_fraction), ("bayer_fraction", bayer_fraction)):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {share:g}")
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
    if thin_fraction > 0.0:
        thin_rng = np.random.default_rng([seed, {"train": 1, "val": 2}[split], index, 3])
        if thin_rng.random() < thin_fraction:
            specimen["thickness_um"] = float(thin_rng.uniform(*THIN_SECTION_UM))
            specimen["layers"] = int(thin_rng.integers(1, 3))
            label = f"{label}, thin section"
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
    if bayer_fraction > 0.0:
        bayer_rng = np.random.default_rng([seed, {"train": 1, "val": 2}[split], index, 4])
        if bayer_rng.random() < bayer_fraction:
            pattern = PATTERNS[int(bayer_rng.integers(len(PATTERNS)))]
            config["camera"]["bayer"] = pattern
            label = f"{label}, Bayer {pattern}"
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


def bayer_card_text(share: float) -> str:
    """The model cards' words for a `bayer_fraction` (nothing when 0)."""
    return f", a one-chip Bayer colour camera, demosaiced ({share:.0%} of scenes)" if share else ""


def skimage_data_path(name: str) -> Path:
    """A sample image bundled in the scikit-image wheel (no download)."""
    import skimage

    path = Path(skimage.__file__).parent / "data" / name
    if not path.is_file():
        raise FileNotFoundError(f"scikit-image's sample {name} not found at {path}")
    return path


def skimage_ihc_path() -> Path:
    """The file behind `skimage.data.immunohistochemistry()`."""
    return skimage_data_path("ihc.png")


def build_scene(scene: Scene) -> Any:
    """The scene's simulator."""
    from slidescan.hardware.sim import SimConfig, build_simulator

    return build_simulator(SimConfig.model_validate(scene.config))


def random_field(sim: Any, rng: np.random.Generator) -> tuple[float, float]:
    """A field centre inside the slide's tissue area, one field of view from its edges."""
    x0, y0, x1, y1 = sim.truth.slide_bounds_um
    fw, fh = sim.field_of_view_um
    return float(rng.uniform(x0 + fw, x1 - fw)), float(rng.uniform(y0 + fh, y1 - fh))


def render_clean(sim: Any, x_um: float, y_um: float, z_um: float) -> np.ndarray:
    """The camera's expected image of a field at z, without noise, rounding or JPEG (through
    its colour filter array and demosaicing, if it has one): float32 on the 0-255 scale
    (whatever the camera's bit depth). The in-focus target a simulator can give and a real
    scanner cannot."""
    sensor, camera = sim.sensor, sim.camera
    c = sensor.config
    e = sensor.expected_electrons(sim.render_intensity(x_um, y_um, z_um), camera.exposure_ms)
    e = np.clip(e, 0.0, c.full_well_e) * (sensor.max_adu / c.full_well_e * camera.gain)
    e = np.clip(e + c.black_level_adu, 0.0, sensor.max_adu)
    if c.bayer is not None:  # the camera's own interpolation is part of its image
        e = demosaic_bilinear(mosaic(e, c.bayer), c.bayer)
    return (e * (255.0 / sensor.max_adu)).astype(np.float32)


T = TypeVar("T")
R = TypeVar("R")


def cache_key(version: int, recipe: Any, **fields: Any) -> str:
    """12 hex digits naming a rendered data set: the data version, the recipe (a dataclass)
    and whatever else made it (split, size, seed); another of any of them, another file."""
    blob = json.dumps(
        {"v": version, "recipe": dataclasses.asdict(recipe), **fields},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def parallel_map(
    fn: Callable[[T], R], jobs: Sequence[T], workers: int, desc: str, progress: bool = True
) -> list[R]:
    """`fn` over `jobs` in `workers` spawned processes (in order), with a progress bar."""
    from tqdm import tqdm

    results: list[R] = []
    bar = tqdm(total=len(jobs), desc=desc, unit="scene", disable=not progress, file=sys.stderr)
    try:
        if workers > 1:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                for r in pool.map(fn, jobs):
                    results.append(r)
                    bar.update(1)
        else:
            for job in jobs:
                results.append(fn(job))
                bar.update(1)
    finally:
        bar.close()
    return results


def cached_render(
    path: Path,
    fields: Sequence[str],
    render: Callable[[], tuple[dict[str, np.ndarray], list[Scene]]],
    *,
    chunk_rows: dict[str, int],
    attrs: dict[str, Any],
    what: str,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, np.ndarray]:
    """A rendered data set's arrays: read from the HDF5 cache at `path`, or made by
    `render()` (arrays by field, the scenes they came from) and written there atomically, the
    fields in `chunk_rows` chunked that many rows at a time, with `attrs`, the scenes and the
    render time. `what` names the set in the log ("train data")."""
    import time

    import h5py

    if path.is_file():
        log(f"using cached {what} {path}")
        with h5py.File(path, "r") as f:
            return {k: f[k][()] for k in fields}
    t0 = time.perf_counter()
    arrays, scenes = render()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        for k in fields:
            a = arrays[k]
            rows = chunk_rows.get(k)
            f.create_dataset(k, data=a, chunks=(rows, *a.shape[1:]) if rows else None)
        for key, value in attrs.items():
            f.attrs[key] = value
        f.attrs["scenes"] = json.dumps([dataclasses.asdict(s) for s in scenes], default=str)
        f.attrs["render_s"] = time.perf_counter() - t0
    tmp.replace(path)
    log(f"wrote {what} {path} ({len(arrays[fields[0]])} rows from {len(scenes)} scenes)")
    return arrays


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
    from slidescan.app.tools.stacks import synthesise
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
