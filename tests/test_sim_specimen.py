"""The simulated slide: determinism in world coordinates, tissue and glass, stains, real images,
focal surface."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from slidescan.hardware.sim import (
    SimCameraConfig,
    SimConfig,
    SpecimenConfig,
    SurfaceConfig,
    build_simulator,
)
from slidescan.hardware.sim.specimen import NUCLEUS_CHUNK_UM, ProceduralSpecimen
from slidescan.hardware.sim.stains import DAB, EOSIN, HEMATOXYLIN
from slidescan.hardware.sim.surface import FocalSurface

PX = 0.325


def _grid(x0: float, y0: float, w: int, h: int, px: float = PX):
    return x0 + np.arange(w) * px, y0 + np.arange(h) * px


@pytest.fixture(scope="module")
def he() -> ProceduralSpecimen:
    return ProceduralSpecimen(SpecimenConfig(), seed=4)


def test_overlapping_windows_agree_across_chunk_borders(he):
    """Content is a function of position: two windows that overlap (with a nucleus-chunk border
    inside the overlap) see identical OD there, whatever else they contain."""
    x0 = 20 * NUCLEUS_CHUNK_UM * 25 - 30.0  # a chunk border 30 um into the window
    y0 = 10000.0 - 20.0
    xs, ys = _grid(x0, y0, 300, 200)
    a = he.od_layers(xs, ys)
    xs2, ys2 = _grid(x0 + 40 * PX, y0 + 25 * PX, 300, 200)
    b = he.od_layers(xs2, ys2)
    np.testing.assert_allclose(a[:, :, 25:, 40:], b[:, :, :175, :260], atol=1e-5)
    assert a.max() > 0.3  # there is tissue with nuclei in the window


def test_specimen_depends_on_the_seed_only(he):
    xs, ys = _grid(25000.0, 10000.0, 128, 128)
    same = ProceduralSpecimen(SpecimenConfig(), seed=4).od_layers(xs, ys)
    np.testing.assert_array_equal(he.od_layers(xs, ys), same)
    other = ProceduralSpecimen(SpecimenConfig(), seed=5).od_layers(xs, ys)
    assert np.abs(other - same).mean() > 0.01


def test_layers_hold_different_content(he):
    xs, ys = _grid(25000.0, 10000.0, 256, 256)
    od = he.od_layers(xs, ys).sum(axis=1)
    c = np.corrcoef(od.reshape(len(od), -1))
    assert np.all(c[np.triu_indices(len(od), 1)] < 0.9)
    assert he.layer_heights_um == pytest.approx([-1.125, -0.375, 0.375, 1.125])  # 3 um


def test_tissue_mask_holes_and_glass(he):
    x0, y0, x1, y1 = he.bounds_um
    xs = np.linspace(x0 - 2000, x1 + 2000, 160)
    ys = np.linspace(y0 - 2000, y1 + 2000, 120)
    mask = he.tissue_mask(xs, ys)
    inside = (xs[None, :] > x0) & (xs[None, :] < x1) & (ys[:, None] > y0) & (ys[:, None] < y1)
    assert mask[~inside].max() == 0.0  # glass around the tissue area
    frac = mask[inside].mean()
    assert 0.3 < frac < 0.9
    assert he.tissue_mask(np.array([(x0 + x1) / 2]), np.array([(y0 + y1) / 2]))[0, 0] > 0.99
    # empty glass renders as clear: zero OD
    gx, gy = _grid(x0 - 1500.0, y0 - 1500.0, 64, 64)
    assert he.od_layers(gx, gy).max() == 0.0


def test_fill_shape_puts_tissue_everywhere_but_holes():
    spec = ProceduralSpecimen(SpecimenConfig(tissue_shape="fill", hole_fraction=0.05), seed=1)
    xs = np.linspace(-10000, 10000, 200)
    mask = spec.tissue_mask(xs, xs)
    assert 0.85 < mask.mean() < 0.99


def _mean_od_direction(od: np.ndarray, where: np.ndarray) -> np.ndarray:
    v = od.sum(axis=0)[:, where].mean(axis=1)
    return v / np.linalg.norm(v)


def test_stains_give_their_colours():
    xs, ys = _grid(25000.0, 10000.0, 256, 256)
    he = ProceduralSpecimen(SpecimenConfig(stain="he"), seed=1)
    ihc = ProceduralSpecimen(SpecimenConfig(stain="ihc", dab_positive_fraction=0.5), seed=1)
    amounts = ihc.stain_layers(xs, ys).sum(axis=0)
    od = ihc.od_layers(xs, ys)
    dab = amounts[1] > 0.4
    assert dab.any()
    # DAB-positive nuclei are brown: their OD points along the DAB vector (blue absorbed most)
    assert _mean_od_direction(od, dab) @ DAB > 0.98
    nuclei = (amounts[0] > 0.3) & ~dab
    assert _mean_od_direction(od, nuclei) @ HEMATOXYLIN > 0.98
    he_amounts = he.stain_layers(xs, ys).sum(axis=0)
    pink = he_amounts[1] > 3 * he_amounts[0]
    assert _mean_od_direction(he.od_layers(xs, ys), pink) @ EOSIN > 0.95


def test_focal_surface_tilt_bow_and_folds():
    bounds = (0.0, 0.0, 10000.0, 8000.0)
    flat = FocalSurface(
        SurfaceConfig(tilt_um_per_mm=(0, 0), bow_um=0, roughness_um=0, folds=0), bounds, 0
    )
    assert flat(1234.0, 567.0) == pytest.approx(0.0)
    tilt = FocalSurface(
        SurfaceConfig(tilt_um_per_mm=(0.5, -0.2), bow_um=0, roughness_um=0, folds=0), bounds, 0
    )
    assert tilt(6000.0, 4000.0) - tilt(5000.0, 4000.0) == pytest.approx(0.5)
    assert tilt(5000.0, 5000.0) - tilt(5000.0, 4000.0) == pytest.approx(-0.2)
    bow = FocalSurface(
        SurfaceConfig(tilt_um_per_mm=(0, 0), bow_um=2.0, roughness_um=0, folds=0), bounds, 0
    )
    assert bow(5000.0, 4000.0) - bow(0.0, 4000.0) == pytest.approx(2.0)
    folded = FocalSurface(SurfaceConfig(folds=3, fold_height_um=(3.0, 3.0)), bounds, 9)
    xs, ys = np.meshgrid(np.linspace(0, 10000, 300), np.linspace(0, 8000, 240))
    ridge = folded.fold_height(xs, ys)
    assert 2.5 < ridge.max() <= 3.0 * 3 and np.median(ridge) < 0.1
    rough = FocalSurface(
        SurfaceConfig(tilt_um_per_mm=(0, 0), bow_um=0, folds=0, roughness_um=0.4), bounds, 1
    )
    z = rough(xs, ys)
    assert z.std() == pytest.approx(0.4, rel=0.5)
    np.testing.assert_array_equal(z, rough(xs, ys))


@pytest.fixture(scope="module")
def he_image(tissue_dir):
    return tissue_dir / "he_nanozoomer_0.227um.png"


def test_real_image_specimen_renders_the_image_in_focus(he_image):
    cfg = SimConfig(
        seed=0,
        camera=SimCameraConfig(width=160, height=160, noise=False),
        specimen=SpecimenConfig(kind="image", image_path=he_image),
    )
    assert cfg.specimen.image_pixel_size_um == pytest.approx(0.227)
    sim = build_simulator(cfg)
    x0, y0 = sim.slide_bounds_um[:2]
    rgb = cv2.imread(str(he_image))[..., ::-1].astype(np.float32)
    src = 0.227
    # a field in the middle of the image (the repository's crop is 116 um across)
    centre = 0.5 * rgb.shape[0] * src
    cx, cy = x0 + centre, y0 + centre
    image = sim.render_intensity(cx, cy, sim.true_focus_um(cx, cy))
    # the same region straight from the PNG, resampled to the simulator's pixel (area mean)
    half = 80 * PX
    i0, i1 = round((centre - half) / src), round((centre + half) / src)
    crop = cv2.resize(rgb[i0:i1, i0:i1], (160, 160), interpolation=cv2.INTER_AREA)
    white = sim.specimen.white_level
    expected = np.clip(crop / white, 0, 1)
    for c in range(3):
        r = np.corrcoef(image[..., c].ravel(), expected[..., c].ravel())[0, 1]
        assert r > 0.9
    assert abs(image.mean() - expected.mean()) < 0.03
    # defocus blurs it
    blurred = sim.render_intensity(cx, cy, sim.true_focus_um(cx, cy) + 4.0)
    assert blurred.std() < 0.8 * image.std()


def test_real_image_is_tiled_by_mirroring(he_image):
    from slidescan.hardware.sim.image_specimen import ImageSpecimen

    spec = ImageSpecimen(
        SpecimenConfig(kind="image", image_path=he_image, layers=1, bounds_um=(0, 0, 100, 100)),
        seed=0,
        pixel_size_um=PX,
    )
    h, w = spec.image_shape
    xs = np.arange(w - 5, w + 5) * PX  # across the right edge
    ys = np.array([10 * PX])
    od = spec.total_od(xs, ys)[:, 0, :]
    np.testing.assert_allclose(od[:, :5], spec.od[10, w - 5 :].T, atol=1e-5)  # pixel-exact
    np.testing.assert_allclose(od[:, 5:], spec.od[10, w - 5 :][::-1].T, atol=1e-5)  # mirrored
    layered = ImageSpecimen(
        SpecimenConfig(kind="image", image_path=he_image, bounds_um=(0, 0, 100, 100)), 0, PX
    )
    xs, ys = np.arange(64) * PX + 3.1, np.arange(48) * PX
    np.testing.assert_allclose(
        layered.od_layers(xs, ys).sum(axis=0), spec.total_od(xs, ys), atol=1e-5
    )


def test_image_specimen_needs_a_readable_file(tmp_path):
    bad = tmp_path / "field_0.5um.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read"):
        build_simulator(SimConfig(specimen=SpecimenConfig(kind="image", image_path=bad)))
    with pytest.raises(FileNotFoundError):
        build_simulator(
            SimConfig(specimen=SpecimenConfig(kind="image", image_path=tmp_path / "none_1um.png"))
        )
