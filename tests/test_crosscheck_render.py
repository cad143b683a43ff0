"""The independent cross-check renderer (app/tools/crosscheck_render.py, `stack crosscheck`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slidescan.app.cli import main
from slidescan.app.tools.crosscheck_render import Camera, TissueImage, defocus_psf, render_plane
from slidescan.focus.metrics import brenner
from slidescan.hardware.stackfile import StackFile

TISSUE = Path(__file__).parent / "data" / "tissue" / "he_nanozoomer_0.227um.png"


def _r80(k: np.ndarray) -> float:
    """Radius (px) holding 80 % of the PSF's energy."""
    n = k.shape[0] // 2
    y, x = np.mgrid[-n : n + 1, -n : n + 1]
    r = np.hypot(x, y).ravel()
    order = np.argsort(r)
    return float(r[order][np.searchsorted(np.cumsum(k.ravel()[order]), 0.8)])


def test_the_psf_has_unit_sum_is_symmetric_in_defocus_and_widens_with_it():
    k0 = defocus_psf(0.0, 0.55, 0.75, 0.1625)
    k2 = defocus_psf(2.0, 0.55, 0.75, 0.1625)
    k2m = defocus_psf(-2.0, 0.55, 0.75, 0.1625)
    assert k0.sum() == pytest.approx(1.0) and k2.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(k2, k2m, atol=1e-12)  # no aberration: blind to the sign
    # in focus: the Airy core, 0.61 lambda / NA = 0.45 um = 2.8 px; at 2 um the blur disc's
    # radius is |dz| NA (paraxial) = 1.5 um = 9.2 px
    assert _r80(k0) < 3.5
    assert 6.5 < _r80(k2) < 10.0
    # spherical aberration makes above and below focus differ
    a, b = (defocus_psf(dz, 0.55, 0.75, 0.1625, spherical_waves=0.3) for dz in (1.0, -1.0))
    assert a.shape == b.shape and np.abs(a - b).max() > 1e-4


def test_frames_are_sharpest_at_focus_and_the_reference_is_noise_free():
    rng = np.random.default_rng(0)
    t = np.clip(rng.uniform(0.3, 1.0, (64, 64, 3)), 0.02, 1.0)
    cam = Camera(gain_e=20.0, white_dn=220.0, read_noise_e=3.0)
    frames = [render_plane(t, dz, 0.75, 0.1625, cam, rng) for dz in (-2.0, 0.0, 2.0)]
    assert all(f.dtype == np.uint8 and f.shape == (32, 32, 3) for f in frames)
    sharp = [brenner(f.mean(axis=2)) for f in frames]
    assert sharp[1] > 2 * max(sharp[0], sharp[2])
    ref = render_plane(t, 0.0, 0.75, 0.1625, cam, None)
    assert ref.dtype == np.float32
    np.testing.assert_array_equal(ref, render_plane(t, 0.0, 0.75, 0.1625, cam, None))
    # the noisy in-focus frame scatters about the reference by the shot noise
    resid = frames[1].astype(float) - ref
    assert abs(resid.mean()) < 1.0 and 0.5 < resid.std() < 6.0


def test_the_three_chip_camera_has_no_mosaic():
    """Without the Bayer mosaic each pixel's noise is its own (the demosaiced frame's is shared
    with its neighbours), and the reference is the optical image itself."""
    t = np.full((128, 128, 3), 0.6)
    cam = Camera(gain_e=20.0, white_dn=220.0, read_noise_e=3.0)

    def neighbour_corr(frame: np.ndarray) -> float:
        d = frame[2:-2, 2:-2, 0].astype(float) - frame[2:-2, 2:-2, 0].mean()
        return float((d[:, :-1] * d[:, 1:]).mean() / d.var())

    rng = np.random.default_rng(1)
    plain = render_plane(t, 0.0, 0.75, 0.1625, cam, rng, bayer=False)
    mosaic = render_plane(t, 0.0, 0.75, 0.1625, cam, rng)
    assert abs(neighbour_corr(plain)) < 0.1 < 0.3 < neighbour_corr(mosaic)
    ref = render_plane(t, 0.0, 0.75, 0.1625, cam, None, bayer=False)
    np.testing.assert_allclose(ref[4:-4, 4:-4], 0.6 * 220.0, rtol=1e-5)


def test_stack_crosscheck_writes_stacks_the_evaluation_reads(tmp_path, capsys):
    out = tmp_path / "cc.h5"
    args = ["stack", "crosscheck", "--out", str(out), "--tissue", f"{TISSUE}:0.227"]
    args += ["--fields", "1", "--size", "32", "--z-min", "-1", "--z-max", "1", "--z-step", "1"]
    assert main(args) == 0
    f = StackFile(out)
    assert f.ids == ["he_nanozoomer_0.227um_0"]
    stack = f[0]
    assert stack.images.shape == (3, 32, 32, 3) and stack.images.dtype == np.uint8
    np.testing.assert_allclose(stack.defocus_um, [-1.0, 0.0, 1.0])
    assert f.reference(0).shape == (32, 32, 3)
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    "tissue, message",
    [
        ("he.png", "write it as PATH:PIXEL_UM"),
        (f"{TISSUE}:zero", "write it as PATH:PIXEL_UM"),
        ("/no/such.png:0.25", "not found"),
    ],
)
def test_bad_tissue_arguments_are_one_line(tmp_path, capsys, tissue, message):
    out = tmp_path / "cc.h5"
    assert main(["stack", "crosscheck", "--out", str(out), "--tissue", tissue]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_tissue_spec_parses_a_path_with_colons(tmp_path):
    odd = tmp_path / "a:b.png"
    odd.write_bytes(TISSUE.read_bytes())
    spec = TissueImage.parse(f"{odd}:0.5")
    assert spec.path == odd and spec.pixel_um == 0.5
