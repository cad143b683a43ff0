"""Physics of the simulator's defocus models: energy, geometric blur, depth of field, sign."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slidescan.hardware.optics import OBJECTIVES, depth_of_field_um
from slidescan.hardware.sim.psf import GaussianModel, OTFTable, PupilModel, lattice_weights

LAMBDA = 0.54


def _encircled_radius(psf: np.ndarray, pixel_um: float, fraction: float) -> float:
    c = psf.shape[0] // 2
    y, x = np.indices(psf.shape) - c
    r = np.hypot(x, y).ravel() * pixel_um
    order = np.argsort(r)
    cum = np.cumsum(psf.ravel()[order])
    return float(r[order][np.searchsorted(cum, fraction)])


@pytest.mark.parametrize(
    "model", [PupilModel(0.75), PupilModel(0.75, coverslip_error_um=12.0), GaussianModel(0.75)]
)
@pytest.mark.parametrize("dz", [0.0, 1.5, -4.0])
def test_psf_has_unit_energy_and_otf_one_at_zero(model, dz):
    psf = model.psf(dz, LAMBDA, 0.1, 255)
    assert psf.min() >= 0
    assert psf.sum() == pytest.approx(1.0, abs=1e-9)
    otf = np.fft.fft2(psf)
    assert otf[0, 0].real == pytest.approx(1.0, abs=1e-9)
    # Parseval: energy of the PSF equals the mean power of its transform
    assert np.sum(psf**2) == pytest.approx(np.mean(np.abs(otf) ** 2), rel=1e-9)
    rho, values = model.otf_profile(dz, LAMBDA)
    assert values[0] == pytest.approx(1.0, abs=1e-9)
    assert np.all(np.abs(values) <= 1.0 + 1e-9)


def test_otf_profile_matches_transform_of_psf():
    """The renderer's ring-averaged OTF equals the Fourier transform of the sampled PSF."""
    m = PupilModel(0.75)
    pixel, size = LAMBDA / (4.4 * 0.75), 512
    for dz in (0.0, 2.0):
        psf = m.psf(dz, LAMBDA, pixel, size, oversample=1)
        otf2d = np.fft.fft2(np.fft.ifftshift(psf)).real
        freqs = np.fft.fftfreq(size, pixel)
        rho, prof = m.otf_profile(dz, LAMBDA)
        for j in (5, 20, 60, 120, 200):
            assert np.interp(freqs[j], rho, prof) == pytest.approx(otf2d[0, j], abs=0.01)


@pytest.mark.parametrize("dz", [4.0, 8.0, 16.0])
def test_blur_radius_grows_as_dz_tan_theta(dz):
    """Far from focus the PSF is the geometric blur disc of radius |dz| tan(asin(NA/n))."""
    na = OBJECTIVES["20x/0.75"].na
    model = PupilModel(na)
    radius = abs(dz) * math.tan(math.asin(na))
    assert model.geometric_radius_um(dz, LAMBDA) == pytest.approx(radius, rel=1e-9)
    pixel = 0.12
    size = int(2.8 * radius / pixel) // 2 * 2 + 1
    r95 = _encircled_radius(model.psf(dz, LAMBDA, pixel, size, oversample=1), pixel, 0.95)
    assert r95 == pytest.approx(radius, rel=0.15)


@pytest.mark.parametrize("na", [0.5, 0.75, 0.95])
def test_encircled_energy_follows_ray_heights(na):
    """Rays through pupil radius rho land at h = dz lambda rho / sqrt(1 - (lambda rho)^2); the
    pupil is uniform, so the fraction q of the light lies within h(rho_max sqrt(q))."""
    model, dz = PupilModel(na), 16.0
    radius = model.geometric_radius_um(dz, LAMBDA)
    pixel = LAMBDA / (2 * na) / 1.5
    size = int(2.8 * radius / pixel) // 2 * 2 + 1
    psf = model.psf(dz, LAMBDA, pixel, size, oversample=1)
    for q in (0.5, 0.8):
        rho = math.sqrt(q) * na / LAMBDA
        h = dz * LAMBDA * rho / math.sqrt(1 - (LAMBDA * rho) ** 2)
        assert _encircled_radius(psf, pixel, q) == pytest.approx(h, rel=0.1)


def _on_axis_debye(model: PupilModel, dz: float) -> float:
    """Independent 1-D Debye integral |int_0^k exp(i W(rho)) rho drho|^2 / (k^2 / 2)^2."""
    k = model.na / LAMBDA
    rho = (np.arange(20000) + 0.5) / 20000 * k
    amp = np.sum(np.exp(1j * model.defocus_phase(rho, dz, LAMBDA)) * rho) * (k / 20000)
    return float(abs(amp) ** 2 / (k * k / 2) ** 2)


def test_on_axis_intensity_matches_debye_integral():
    model = PupilModel(0.75)
    pixel, size = 0.1, 255
    centre0 = model.psf(0.0, LAMBDA, pixel, size, oversample=1)[size // 2, size // 2]
    for dz in (0.3, 0.6, 1.0):
        centre = model.psf(dz, LAMBDA, pixel, size, oversample=1)[size // 2, size // 2]
        assert centre / centre0 == pytest.approx(_on_axis_debye(model, dz), abs=0.02)


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_depth_of_field_matches_formula(name):
    """Axial FWHM of the on-axis intensity, from the PSF, is ~1.8 x the quarter-wave DOF
    lambda / (2 n (1 - cos theta)) for every objective (uniform-pupil sinc^2: 1.77)."""
    obj = OBJECTIVES[name]
    model = PupilModel(obj.na, obj.immersion_n)
    dof = depth_of_field_um(obj.na, obj.immersion_n, LAMBDA)
    pixel = LAMBDA / (2.4 * obj.na)
    size = 129
    centre0 = model.psf(0.0, LAMBDA, pixel, size, oversample=1)[size // 2, size // 2]
    dzs = np.linspace(0.0, 1.5 * dof, 61)
    axial = np.array(
        [model.psf(d, LAMBDA, pixel, size, oversample=1)[size // 2, size // 2] for d in dzs]
    )
    half = float(np.interp(0.5, (axial / centre0)[::-1], dzs[::-1]))
    assert 2 * half / dof == pytest.approx(1.8, abs=0.15)


def test_pupil_model_is_symmetric_in_defocus_without_aberration():
    model = PupilModel(0.75)
    for dz in (0.4, 1.3, 5.0):
        _, up = model.otf_profile(dz, LAMBDA)
        _, down = model.otf_profile(-dz, LAMBDA)
        np.testing.assert_allclose(up, down, atol=1e-6)


def test_spherical_aberration_makes_the_pupil_model_sign_sensitive():
    model = PupilModel(0.75, coverslip_error_um=15.0)
    diffs = []
    for dz in (0.5, 1.0, 2.0):
        _, up = model.otf_profile(dz, LAMBDA)
        _, down = model.otf_profile(-dz, LAMBDA)
        diffs.append(np.max(np.abs(up - down)))
    assert min(diffs) > 0.05
    # the gaussian model cannot tell the sign
    g = GaussianModel(0.75)
    np.testing.assert_allclose(g.otf_profile(1.0, LAMBDA)[1], g.otf_profile(-1.0, LAMBDA)[1])


def test_balanced_spherical_aberration_keeps_best_focus_at_zero():
    """The cover-glass phase's defocus part is balanced out: the PSF peak (Strehl) is highest
    at dz = 0 although the raw phase shifts focus by about dt (1 - 1/n_g)."""
    model = PupilModel(0.75, coverslip_error_um=15.0)
    pixel, size = 0.1, 129
    dzs = np.linspace(-1.5, 1.5, 31)
    peaks = [model.psf(d, LAMBDA, pixel, size, oversample=1).max() for d in dzs]
    j = int(np.argmax(peaks))
    a, b, _ = np.polyfit(dzs[j - 2 : j + 3], peaks[j - 2 : j + 3], 2)
    assert abs(-b / (2 * a)) < 0.1
    # and the aberration is real: the peak is lower than the perfect lens's
    assert max(peaks) < 0.97 * PupilModel(0.75).psf(0.0, LAMBDA, pixel, size, oversample=1).max()


def test_lattice_weights_interpolate_and_average():
    idx, w = lattice_weights(0.123, 0.0, 0.05)
    assert list(idx) == [2, 3] and w.sum() == pytest.approx(1.0)
    assert np.dot(idx * 0.05, w) == pytest.approx(0.123)
    idx, w = lattice_weights(0.4, 0.66, 0.05)
    assert w.sum() == pytest.approx(1.0)
    assert np.dot(idx * 0.05, w) == pytest.approx(0.4)  # centred box keeps the mean


def test_otf_table_slab_average_equals_mean_over_depth():
    model = PupilModel(0.75)
    table = OTFTable(model, rho_step=0.01, n_rho=300, dz_step_um=0.05)
    dz, width = 0.37, 0.6
    slab = table.profile(dz, LAMBDA, width)
    exact = np.mean(
        [
            np.interp(table.rho, *model.otf_profile(d, LAMBDA), right=0.0)
            for d in np.linspace(dz - width / 2, dz + width / 2, 121)
        ],
        axis=0,
    )
    np.testing.assert_allclose(slab, exact, atol=2e-3)
    point = table.profile(0.37, LAMBDA)
    exact_point = np.interp(table.rho, *model.otf_profile(0.37, LAMBDA), right=0.0)
    np.testing.assert_allclose(point, exact_point, atol=2e-3)
    info = table.cache_info()
    assert info["misses"] > 0 and info["size"] == info["misses"]
    table.profile(0.37, LAMBDA)
    assert table.cache_info()["hits"] > info["hits"]


def test_otf_table_uses_a_coarser_lattice_far_from_focus():
    model = GaussianModel(0.75)
    table = OTFTable(model, rho_step=0.01, n_rho=300, dz_step_um=0.05, fine_limit_um=2.0)
    idx, w = table.weights(5.03)
    assert np.all(idx % table.coarse_factor == 0) and w.sum() == pytest.approx(1.0)
    # a slab across the boundary keeps its mean depth and unit weight
    idx, w = table.weights(2.0, 1.0)
    assert w.sum() == pytest.approx(1.0)
    assert np.dot(idx * 0.05, w) == pytest.approx(2.0, abs=0.01)
    far = table.profile(6.1, LAMBDA)
    exact = np.interp(table.rho, *model.otf_profile(6.1, LAMBDA), right=0.0)
    np.testing.assert_allclose(far, exact, atol=5e-3)
