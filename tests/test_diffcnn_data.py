"""Simulator data (app/tools/simdata.py) and diffcnn's training data from it: splits held out,
randomisation, labels."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from slidescan.app.tools.simdata import (
    HOLDOUT_SEED_BASE,
    REAL_HOLDOUT_IMAGES,
    REAL_TRAIN_IMAGES,
    TEXTURE_IMAGES,
    THIN_SECTION_UM,
    sample_scene,
)
from slidescan.app.tools.train_diffcnn import Recipe, data_key, recipe_for, render_scene
from slidescan.focus.learned.preprocess import InputSpec

FAKE_TISSUE = Path("/tissue")


def _scenes(split: str, n: int = 60):
    return [sample_scene(i, split, 0, Recipe(), FAKE_TISSUE) for i in range(n)]


def test_training_and_validation_use_disjoint_specimens_and_optics():
    train, val = _scenes("train"), _scenes("val")
    train_images = {Path(s.config["specimen"].get("image_path", "")).name for s in train}
    val_images = {Path(s.config["specimen"].get("image_path", "")).name for s in val}
    assert train_images - {""} <= set(REAL_TRAIN_IMAGES) | set(TEXTURE_IMAGES)
    assert set(REAL_TRAIN_IMAGES) <= train_images
    assert not (val_images & set(REAL_TRAIN_IMAGES))
    assert REAL_HOLDOUT_IMAGES[0] in val_images and "ihc.png" in val_images
    assert all(s.config["seed"] < HOLDOUT_SEED_BASE for s in train)
    assert all(s.config["seed"] >= HOLDOUT_SEED_BASE for s in val)
    for s in train:
        assert abs(s.config["optics"]["coverslip_error_um"]) <= 15.0
        r, g, b = s.config["optics"]["chromatic_shift_um"]
        assert g == 0.0 and abs(r) <= 0.3 and abs(b) <= 0.3
        assert 0.70 <= s.na <= 0.80
    for s in val:
        assert abs(s.config["optics"]["coverslip_error_um"]) >= 15.0
        r, _, b = s.config["optics"]["chromatic_shift_um"]
        assert min(abs(r), abs(b)) >= 0.3
    # randomised, not one setting
    assert len({round(s.na, 3) for s in train}) > 30
    assert len({s.config["specimen"]["kind"] for s in train}) == 2
    assert any(s.label.startswith("texture") for s in train)


def test_scenes_are_reproducible_from_the_seed():
    a = sample_scene(5, "train", 3, Recipe(), FAKE_TISSUE)
    b = sample_scene(5, "train", 3, Recipe(), FAKE_TISSUE)
    c = sample_scene(5, "train", 4, Recipe(), FAKE_TISSUE)
    assert a == b and a != c


def test_thin_sections_replace_the_thickness_of_their_share_of_scenes_and_nothing_else():
    plain = _scenes("train", 80)
    some = [
        sample_scene(i, "train", 0, Recipe(), FAKE_TISSUE, thin_fraction=0.3) for i in range(80)
    ]
    thick = [s.config["specimen"]["thickness_um"] for s in plain]
    assert min(thick) >= 2.0
    thin = [s for s in some if s.config["specimen"]["thickness_um"] < 2.0]
    assert 10 <= len(thin) <= 40  # about 30 % of 80
    for s in thin:
        lo, hi = THIN_SECTION_UM
        assert lo <= s.config["specimen"]["thickness_um"] <= hi
        assert s.config["specimen"]["layers"] in (1, 2)
        assert s.label.endswith("thin section")
    # every other draw is the one the scene has without thin sections
    for a, b in zip(plain, some, strict=True):
        strip = ("thickness_um", "layers")
        assert {k: v for k, v in a.config["specimen"].items() if k not in strip} == {
            k: v for k, v in b.config["specimen"].items() if k not in strip
        }
        assert (a.seed, a.na, a.config["optics"]) == (b.seed, b.na, b.config["optics"])
    with pytest.raises(ValueError, match="thin_fraction"):
        sample_scene(0, "train", 0, Recipe(), FAKE_TISSUE, thin_fraction=1.5)


def test_a_bayer_camera_is_drawn_for_its_share_of_scenes_and_changes_nothing_else():
    plain = _scenes("train", 80)
    some = [
        sample_scene(i, "train", 0, Recipe(), FAKE_TISSUE, bayer_fraction=0.5) for i in range(80)
    ]
    cfa = [s for s in some if "bayer" in s.config["camera"]]
    assert 25 <= len(cfa) <= 55  # about half of 80
    assert {s.config["camera"]["bayer"] for s in cfa} <= {"RGGB", "GRBG", "GBRG", "BGGR"}
    assert all("Bayer" in s.label for s in cfa)
    for a, b in zip(plain, some, strict=True):
        cam = {k: v for k, v in b.config["camera"].items() if k != "bayer"}
        assert (a.seed, a.config["specimen"], a.config["optics"], a.config["camera"]) == (
            b.seed,
            b.config["specimen"],
            b.config["optics"],
            cam,
        )
    with pytest.raises(ValueError, match="bayer_fraction"):
        sample_scene(0, "train", 0, Recipe(), FAKE_TISSUE, bayer_fraction=-0.1)


def test_data_key_follows_the_recipe():
    r = Recipe()
    assert data_key(r, "train", 100, 0) == data_key(Recipe(), "train", 100, 0)
    assert data_key(r, "train", 100, 0) != data_key(
        dataclasses.replace(r, delta_um=3), "train", 100, 0
    )
    assert data_key(r, "train", 100, 0) != data_key(r, "val", 100, 0)


def test_recipe_scales_with_depth_of_field():
    base, low = recipe_for("20x/0.75"), recipe_for("20x/0.50")
    assert base == Recipe()
    # 20x/0.50 has a ~2.7x deeper field: the pair is further apart and further from focus
    assert 2.0 < low.delta_um / base.delta_um < 3.5
    assert low.y_max_um / low.delta_um == pytest.approx(base.y_max_um / base.delta_um)


def test_rendered_pairs_are_labelled_by_distance_to_focus():
    recipe = dataclasses.replace(
        Recipe(),
        camera_px=96,
        jitter_px=2,
        fields_per_scene=1,
        pairs_per_field=2,
        spec=InputSpec(patch_px=32, bin=1, max_patches=4),
    )
    scene = sample_scene(0, "train", 1, recipe, FAKE_TISSUE)
    scene.config["specimen"] = {"kind": "procedural", "stain": "he", "tissue_shape": "fill"}
    data = render_scene(scene, recipe)
    assert data.pairs.shape[1:] == (2, 3, 32, 32) and data.pairs.dtype == np.float16
    assert set(np.unique(data.tile)) <= {0, 1}
    assert np.all((data.y_um > recipe.y_min_um - 0.31) & (data.y_um < recipe.y_max_um + 0.51))
    # the second shot is closer to focus, so it is sharper: more high-frequency energy
    first, second = data.pairs[:, 0].astype(float), data.pairs[:, 1].astype(float)
    grad = lambda x: np.abs(np.diff(x, axis=-1)).mean()  # noqa: E731
    assert grad(second) > grad(first)


def test_numerical_aperture_can_be_varied_within_the_class():
    """The public `optics.na` override of SimConfig (what training randomises)."""
    from slidescan.hardware.sim import SimConfig, build_simulator

    def blurred_contrast(na: float) -> float:
        sim = build_simulator(
            SimConfig(
                seed=2,
                specimen={"tissue_shape": "fill"},
                camera={"width": 96, "height": 96, "noise": False},
                optics={"fft_workers": 1, "na": na},
            )
        )
        assert sim.optics.na == na  # what a focus method reads follows the override
        x, y = 25_000.0, 10_000.0
        img = sim.render(x, y, sim.true_focus_um(x, y) - 4.0, noise=False).astype(float)
        return float(np.abs(np.diff(img, axis=1)).mean())

    # a smaller aperture blurs less at the same defocus
    assert blurred_contrast(0.70) > blurred_contrast(0.80)


def test_holdout_stacks_can_use_an_aperture_never_trained_on(tmp_path, tissue_dir):
    from slidescan.app.tools.simdata import write_holdout_stacks
    from slidescan.hardware.stackfile import open_stacks

    out = write_holdout_stacks(
        tmp_path,
        "20x/0.75",
        tissue_dir,
        positions=1,
        size=32,
        z_min=-1.0,
        z_max=0.0,
        z_step=1.0,
        na=0.85,
        progress=False,
    )
    assert len(out) == 4
    with open_stacks(tmp_path / "holdout_he_procedural.h5") as f:
        assert f.optics.na == pytest.approx(0.85)
