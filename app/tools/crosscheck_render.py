"""A second, independent focus-stack renderer: does a method made on our simulator carry over?

Every learned focus method here is trained on `slidescan.hardware.sim`, and the stacks other
people judge it on come from renderers of their own. This one is written apart from the
simulator and differs from it where renderers commonly differ:

- PSF: the paraxial Born & Wolf defocus integral, |int_0^1 J0(v rho) exp(i u rho^2 / 2) rho
  drho|^2 with u = 2 pi NA^2 dz / lambda, by quadrature in real space (the simulator uses the
  exact non-paraxial pupil phase by FFT, so the same dz blurs less here at high NA), two
  wavelengths per colour channel, optional Zernike spherical aberration (symmetric otherwise).
- Specimen: one thin layer: a real image's transmission, blurred as intensity (the simulator
  shares absorption between slabs of a 2-6 um section). Focus is the layer itself.
- Camera: rendered at half the camera pitch and binned 2 x 2, a Bayer RGGB mosaic with Poisson
  and read noise at a random gain, bilinear demosaicing (OpenCV), 8 bits. With `bayer=False`
  (`--no-bayer`) a three-chip camera instead: every pixel's R, G and B with noise of their
  own, to tell what the mosaic costs a method from what the optics cost it.

Stacks are written in the focus-stack format with their noise-free in-focus reference (the
demosaiced noise-free mosaic), so `slidescan focus eval` scores them like any other.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Two wavelengths (um) per colour channel R, G, B.
CHANNEL_WAVELENGTHS_UM = ((0.60, 0.64), (0.52, 0.56), (0.44, 0.48))


@dataclass(frozen=True)
class TissueImage:
    """A real in-focus image and its pixel size (`PATH:PIXEL_UM` on the command line)."""

    path: Path
    pixel_um: float

    @classmethod
    def parse(cls, text: str) -> TissueImage:
        path, sep, pixel = text.rpartition(":")
        try:
            value = float(pixel) if sep else float("nan")
        except ValueError:
            value = float("nan")
        if not sep or not math.isfinite(value) or value <= 0:
            raise ValueError(f"tissue image {text!r}: write it as PATH:PIXEL_UM, e.g. he.png:0.25")
        if not Path(path).is_file():
            raise ValueError(f"tissue image {path} not found")
        return cls(Path(path), value)


@functools.lru_cache(maxsize=1024)
def defocus_psf(
    dz_um: float, wavelength_um: float, na: float, pitch_um: float, spherical_waves: float = 0.0
) -> np.ndarray:
    """The paraxial defocus PSF on a square grid of `pitch_um`, integrated over each pixel
    (4 x 4 samples), normalised to unit sum. Cached: do not modify the array."""
    from scipy.special import j0

    u = 2.0 * math.pi * na**2 * dz_um / wavelength_um
    radius = abs(dz_um) * na + 3.0 * wavelength_um / na
    half = int(math.ceil(radius / pitch_um)) + 2
    r = np.arange(0.0, (half + 1) * pitch_um * math.sqrt(2.0) + pitch_um, pitch_um / 4.0)
    n_rho = int(max(400, 8 * abs(u) + 50 * abs(spherical_waves)))
    rho = (np.arange(n_rho) + 0.5) / n_rho
    phase = 0.5 * u * rho**2 + 2.0 * math.pi * spherical_waves * (6 * rho**4 - 6 * rho**2 + 1)
    v = 2.0 * math.pi * na * r / wavelength_um
    amplitude = (j0(np.outer(v, rho)) * (np.exp(1j * phase) * rho)[None, :]).sum(axis=1)
    profile = np.abs(amplitude) ** 2
    sub = (np.arange(4) + 0.5) / 4.0 - 0.5
    g = (np.arange(-half, half + 1)[:, None] + sub[None, :]).ravel() * pitch_um
    kernel = np.interp(np.hypot(g[:, None], g[None, :]), r, profile)
    n = 2 * half + 1
    kernel = kernel.reshape(n, 4, n, 4).mean(axis=(1, 3))
    return kernel / kernel.sum()


def _convolve_same(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    import scipy.fft as sfft

    h = kernel.shape[0] // 2
    padded = np.pad(image, h, mode="reflect")
    shape = [sfft.next_fast_len(s + kernel.shape[0] - 1) for s in padded.shape]
    out = sfft.irfft2(sfft.rfft2(padded, shape) * sfft.rfft2(kernel, shape), shape)
    return out[2 * h : 2 * h + image.shape[0], 2 * h : 2 * h + image.shape[1]]


@dataclass(frozen=True)
class Camera:
    """Gain (electrons per grey level), white level (grey levels of clear glass), read noise."""

    gain_e: float
    white_dn: float
    read_noise_e: float


def render_plane(
    transmission: np.ndarray,
    dz_um: float,
    na: float,
    pitch_um: float,
    camera: Camera,
    rng: np.random.Generator | None,
    spherical_waves: float = 0.0,
    bayer: bool = True,
) -> np.ndarray:
    """One camera frame of a thin specimen (transmission on a grid of `pitch_um`, half the
    camera pixel) at defocus `dz_um`: uint8 RGB with noise, or with `rng` None the noise-free
    frame as float32 on the 0-255 scale."""
    import cv2

    optical = np.empty_like(transmission)
    for c, waves in enumerate(CHANNEL_WAVELENGTHS_UM):
        optical[..., c] = sum(
            _convolve_same(
                transmission[..., c], defocus_psf(dz_um, w, na, pitch_um, spherical_waves)
            )
            for w in waves
        ) / len(waves)
    h, w = optical.shape[0] // 2, optical.shape[1] // 2
    expected = optical[: 2 * h, : 2 * w].reshape(h, 2, w, 2, 3).mean(axis=(1, 3)) * camera.white_dn
    if not bayer:
        if rng is None:
            return expected.astype(np.float32)
        e = rng.poisson(np.clip(expected * camera.gain_e, 0, None)) + rng.normal(
            0.0, camera.read_noise_e, expected.shape
        )
        return np.clip(np.rint(e / camera.gain_e), 0, 255).astype(np.uint8)
    mosaic = np.empty((h, w))
    mosaic[0::2, 0::2] = expected[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = expected[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = expected[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = expected[1::2, 1::2, 2]
    # OpenCV names Bayer patterns by the second row: an RGGB sensor is its "BG" pattern.
    if rng is None:
        m16 = np.clip(np.rint(mosaic * 256.0), 0, 65535).astype(np.uint16)
        return cv2.cvtColor(m16, cv2.COLOR_BayerBG2RGB).astype(np.float32) / 256.0
    electrons = rng.poisson(np.clip(mosaic * camera.gain_e, 0, None)) + rng.normal(
        0.0, camera.read_noise_e, mosaic.shape
    )
    m8 = np.clip(np.rint(electrons / camera.gain_e), 0, 255).astype(np.uint8)
    return cv2.cvtColor(m8, cv2.COLOR_BayerBG2RGB)


def _transmission(tissue: TissueImage, pitch_um: float) -> np.ndarray:
    """The image as transmission (clear glass = its 99.5th percentile per channel) resampled
    to `pitch_um`."""
    import cv2

    bgr = cv2.imread(str(tissue.path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"tissue image {tissue.path} cannot be read as an image")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float64)
    white = np.maximum(np.percentile(rgb.reshape(-1, 3), 99.5, axis=0), 1.0)
    t = np.clip(rgb / white, 0.02, 1.0)
    scale = tissue.pixel_um / pitch_um
    t = cv2.resize(
        t, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
    )
    return np.clip(t, 0.02, 1.0)


def _field(t: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random n x n window of `t`, mirrored out when the image is smaller."""
    if t.shape[0] < n or t.shape[1] < n:
        ry, rx = -(-n // t.shape[0]) + 1, -(-n // t.shape[1]) + 1
        t = np.pad(t, ((0, (ry - 1) * t.shape[0]), (0, (rx - 1) * t.shape[1]), (0, 0)), "symmetric")
    y = int(rng.integers(0, t.shape[0] - n + 1))
    x = int(rng.integers(0, t.shape[1] - n + 1))
    return t[y : y + n, x : x + n]


def write_crosscheck_stacks(
    out: Path,
    objective: str,
    tissues: Sequence[TissueImage],
    offsets_um: np.ndarray,
    *,
    fields: int = 2,
    size: int = 256,
    spherical_waves: float = 0.0,
    bayer: bool = True,
    seed: int = 0,
    progress: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """`fields` stacks per tissue image at `offsets_um` around a random focus; returns a
    summary. The file appears only when complete (`StackWriter`)."""
    from slidescan.hardware.optics import OpticalPath, get_objective
    from slidescan.hardware.stackfile import StackWriter

    if size < 16 or size % 2:
        raise ValueError(f"--size must be an even number of at least 16 px, got {size}")
    if fields < 1:
        raise ValueError("--fields must be at least 1")
    optics = OpticalPath(get_objective(objective))
    pitch = optics.pixel_size_um / 2.0
    rng = np.random.default_rng(seed)
    config = {
        "renderer": "crosscheck (paraxial Born & Wolf, thin layer, "
        + ("Bayer camera)" if bayer else "three-chip camera)"),
        "objective": objective,
        "tissue": [f"{t.path.name}:{t.pixel_um:g}" for t in tissues],
        "fields": fields,
        "size": size,
        "spherical_waves": spherical_waves,
        "seed": seed,
    }
    ids = []
    with StackWriter(out, optics, source="crosscheck_render", source_config=config) as writer:
        for tissue in tissues:
            t = _transmission(tissue, pitch)
            for k in range(fields):
                field = _field(t, 2 * size, rng)
                camera = Camera(
                    gain_e=float(rng.uniform(15, 40)),
                    white_dn=float(rng.uniform(200, 240)),
                    read_noise_e=float(rng.uniform(2, 6)),
                )
                focus = 1000.0 + float(rng.uniform(-50, 50))
                planes = [
                    render_plane(field, dz, optics.na, pitch, camera, rng, spherical_waves, bayer)
                    for dz in offsets_um
                ]
                reference = render_plane(
                    field, 0.0, optics.na, pitch, camera, None, spherical_waves, bayer
                )
                sid = writer.append(
                    np.stack(planes),
                    focus + np.asarray(offsets_um),
                    true_focus_um=focus,
                    reference=reference,
                    stack_id=f"{tissue.path.stem}_{k}",
                    x_um=0.0,
                    y_um=0.0,
                    gain_e=camera.gain_e,
                    white_dn=camera.white_dn,
                    read_noise_e=camera.read_noise_e,
                )
                ids.append(sid)
                progress(f"stack {sid}: {len(offsets_um)} planes")
    return {"file": str(out), "stacks": ids, "planes": len(offsets_um), "size": size, **config}
