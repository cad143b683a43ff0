"""Defocus point-spread functions: a scalar pupil model and a fast Gaussian model.

Pupil model (scalar Debye / Born & Wolf, uniform circular pupil of radius NA / lambda in
spatial frequency rho, cycles/um). A point out of focus by dz adds the exact (non-paraxial)
defocus phase

    W(rho) = 2 pi dz (n / lambda - sqrt(n^2 / lambda^2 - rho^2))
           = 2 pi / lambda * n * dz * (1 - sqrt(1 - (lambda rho / n)^2)),

n the immersion index. Sign convention: dz = z - z_focus > 0 means the objective is farther
from the specimen than in focus (the focal plane lies above it on an upright stand). The
amplitude PSF is the inverse Fourier transform of the pupil, the incoherent intensity PSF its
squared modulus normalised to unit sum, and the OTF the Fourier transform of that (so OTF(0)
= 1). Rays leave the pupil edge at sin(theta) = NA / n, so far from focus the PSF is a disc
of radius |dz| tan(theta) (`geometric_radius_um`).

Spherical aberration from a cover glass of index n_g that is `dt` thicker than the objective
is corrected for (dry objective): each plane-wave component crosses dt of glass instead of
the immersion medium (air), a pupil phase

    Phi(rho) = 2 pi dt (sqrt(n_g^2 / lambda^2 - rho^2) - sqrt(n^2 / lambda^2 - rho^2)),

applied with the opposite sign of W (a thicker glass is focused by moving the objective away,
dz > 0). Phi contains a large focus shift; its least-squares projection onto piston and the
defocus phase over the pupil is removed (Zernike-style balancing), so the wavefront's RMS is
smallest at dz = 0 and the recorded true focus stays the best focus. What remains is the
balanced spherical aberration, which makes the PSF differ above and below focus (the pupil
model is sign-aware; without aberration it is exactly symmetric in dz).

Numerics. `psf` samples the PSF on a pixel grid (oversampled and binned, i.e. integrated over
each pixel). `otf_profile` computes the OTF by FFT on a grid fine enough for the OTF support
(2 NA / lambda) and wide enough for the blur disc, then averages it over rings: the PSF is
radially symmetric, so the OTF is a real function of |rho| (negative where contrast reverses).
The renderer looks that profile up at its own frequencies; `OTFTable` caches profiles on a
lattice of defocus values in an LRU, interpolates between them and averages them over the
depth range of a slab of tissue.

Gaussian model: a Gaussian PSF whose per-axis variance is the in-focus Airy fit
(0.21 lambda / NA)^2 plus that of the geometric disc, (|dz| tan theta / 2)^2. It is cheap and
symmetric in dz, hence sign-blind; use it for speed, not for sign-sensitive methods.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.fft as sfft

#: Largest FFT grid (per side) used for one OTF profile; larger blur discs use the
#: geometric-optics limit (see `PupilModel.otf_profile`).
MAX_OTF_GRID = 2048


class DefocusModel(Protocol):
    """What the renderer needs of a PSF model."""

    na: float
    immersion_n: float

    def otf_profile(self, dz_um: float, wavelength_um: float) -> tuple[np.ndarray, np.ndarray]:
        """(rho cycles/um ascending from 0, real OTF values with OTF(0) = 1)."""
        ...

    def psf(self, dz_um: float, wavelength_um: float, pixel_um: float, size: int) -> np.ndarray: ...

    def geometric_radius_um(self, dz_um: float, wavelength_um: float) -> float: ...


def _bin_centred(fine: np.ndarray, s: int, size: int) -> np.ndarray:
    """Sum s x s blocks of a fine PSF whose origin is at index 0 (FFT layout), so that the
    origin lands in the centre of pixel size // 2."""
    shift = (size // 2) * s + (s - 1) // 2
    rolled = np.roll(fine, (shift, shift), axis=(0, 1))
    return rolled.reshape(size, s, size, s).sum(axis=(1, 3))


@dataclass(frozen=True)
class PupilModel:
    """Scalar pupil with exact defocus and optional balanced cover-glass spherical aberration."""

    na: float
    immersion_n: float = 1.0
    coverslip_error_um: float = 0.0
    coverslip_n: float = 1.523

    def __post_init__(self) -> None:
        if not 0 < self.na < self.immersion_n:
            raise ValueError(f"NA {self.na} must lie in (0, n={self.immersion_n})")

    @property
    def half_angle_rad(self) -> float:
        return math.asin(self.na / self.immersion_n)

    def cutoff(self, wavelength_um: float) -> float:
        """Pupil radius NA / lambda (cycles/um); the incoherent OTF reaches twice this."""
        return self.na / wavelength_um

    # -- pupil phase ---------------------------------------------------------------------------
    def _kz(self, rho: np.ndarray, n: float, wavelength_um: float) -> np.ndarray:
        return np.sqrt(np.maximum((n / wavelength_um) ** 2 - rho * rho, 0.0))

    def defocus_phase(self, rho: np.ndarray, dz_um: float, wavelength_um: float) -> np.ndarray:
        """Exact defocus phase W (radians) at spatial frequency rho (cycles/um)."""
        n = self.immersion_n
        return 2.0 * np.pi * dz_um * (n / wavelength_um - self._kz(rho, n, wavelength_um))

    def aberration_phase(self, rho: np.ndarray, wavelength_um: float) -> np.ndarray:
        """Balanced cover-glass spherical aberration (radians); zero without a thickness error."""
        if self.coverslip_error_um == 0.0:
            return np.zeros_like(np.asarray(rho, dtype=float))
        c0, c1 = self._balance(wavelength_um)
        rho = np.asarray(rho, dtype=float)
        return (
            self._raw_cover_phase(rho, wavelength_um)
            - c0
            - c1 * self.defocus_phase(rho, 1.0, wavelength_um)
        )

    def _raw_cover_phase(self, rho: np.ndarray, wavelength_um: float) -> np.ndarray:
        n, ng = self.immersion_n, self.coverslip_n
        return (
            2.0
            * np.pi
            * self.coverslip_error_um
            * (self._kz(rho, ng, wavelength_um) - self._kz(rho, n, wavelength_um))
        )

    @functools.lru_cache(maxsize=64)  # noqa: B019 - frozen dataclass, bounded
    def _balance(self, wavelength_um: float) -> tuple[float, float]:
        """Least-squares piston and defocus (per um) in the raw cover phase over the pupil
        area (weight rho d rho)."""
        k = self.cutoff(wavelength_um)
        rho = (np.arange(4096) + 0.5) / 4096 * k
        w = np.sqrt(rho)
        basis = np.stack([np.ones_like(rho), self.defocus_phase(rho, 1.0, wavelength_um)], 1)
        coef, *_ = np.linalg.lstsq(
            basis * w[:, None], self._raw_cover_phase(rho, wavelength_um) * w, rcond=None
        )
        return float(coef[0]), float(coef[1])

    def phase(self, rho: np.ndarray, dz_um: float, wavelength_um: float) -> np.ndarray:
        """Total pupil phase: defocus W minus the (balanced) cover-glass phase."""
        return self.defocus_phase(rho, dz_um, wavelength_um) - self.aberration_phase(
            rho, wavelength_um
        )

    def geometric_radius_um(self, dz_um: float, wavelength_um: float) -> float:
        """Radius of the geometric blur disc: the largest transverse ray aberration
        |dPhase/drho| / 2 pi over the pupil. Pure defocus: |dz| tan(asin(NA / n))."""
        k = self.cutoff(wavelength_um)
        if self.coverslip_error_um == 0.0:
            return abs(dz_um) * math.tan(self.half_angle_rad)
        rho = np.linspace(0.0, k, 513)
        slope = np.gradient(self.phase(rho, dz_um, wavelength_um), rho)
        return float(np.max(np.abs(slope)) / (2.0 * np.pi))

    # -- PSF and OTF ---------------------------------------------------------------------------
    def _fine_psf(self, dz_um: float, wavelength_um: float, pitch_um: float, m: int):
        """Intensity PSF (unit sum, origin at [0, 0]) on an m x m grid of pitch `pitch_um`."""
        rho = _freq_radius(m, pitch_um)
        k = self.cutoff(wavelength_um)
        df = 1.0 / (m * pitch_um)
        amp = np.clip((k - rho) / df + 0.5, 0.0, 1.0)  # anti-aliased pupil edge
        inside = amp > 0
        pupil = np.zeros((m, m), np.complex64)
        pupil[inside] = amp[inside] * np.exp(1j * self.phase(rho[inside], dz_um, wavelength_um))
        field = sfft.ifft2(pupil, workers=_workers(m))
        intensity = (field.real**2 + field.imag**2).astype(np.float64)
        return intensity / intensity.sum()

    def psf(
        self,
        dz_um: float,
        wavelength_um: float,
        pixel_um: float,
        size: int,
        oversample: int | None = None,
    ) -> np.ndarray:
        """PSF integrated over square pixels of `pixel_um` -> (size, size) float64, unit sum,
        centred on pixel (size // 2, size // 2). The window must hold the blur disc."""
        if oversample is None:
            need = pixel_um * 2.0 * self.cutoff(wavelength_um) * 1.15
            oversample = max(1, math.ceil(need))
            oversample += 1 - oversample % 2  # odd, so pixels are centred on the origin
        pitch = pixel_um / oversample
        if self.cutoff(wavelength_um) > 1.0 / (2.0 * pitch):
            raise ValueError(
                f"pixel {pixel_um} um / oversample {oversample} undersamples the pupil"
            )
        fine = self._fine_psf(dz_um, wavelength_um, pitch, size * oversample)
        return _bin_centred(fine, oversample, size)

    def otf_grid(self, dz_um: float, wavelength_um: float) -> tuple[int, float]:
        """FFT grid (size, pitch um) used by `otf_profile`: Nyquist above the OTF support,
        window 2.5 x the blur radius plus diffraction tails."""
        k = self.cutoff(wavelength_um)
        pitch = 1.0 / (4.4 * k)
        radius = self.geometric_radius_um(dz_um, wavelength_um) + 6.0 * wavelength_um / self.na
        m = sfft.next_fast_len(max(128, math.ceil(2.5 * radius / pitch)), real=True)
        m += m % 2
        return m, pitch

    def otf_profile(self, dz_um: float, wavelength_um: float) -> tuple[np.ndarray, np.ndarray]:
        """Radial OTF (rho, value) up to 2 NA / lambda, value 1 at rho = 0.

        Blur discs beyond `MAX_OTF_GRID` (|dz| > ~100 um at 20x/0.75) use geometric optics:
        the OTF of a uniform disc of the geometric radius, 2 J1(x) / x with x = 2 pi R rho,
        times the in-focus OTF; a rough stand-in (a high-NA pupil puts less light at the
        disc's rim) for images that are featureless blur anyway.
        """
        m, pitch = self.otf_grid(dz_um, wavelength_um)
        if m > MAX_OTF_GRID:
            from scipy.special import j1

            rho, focus = self.otf_profile(0.0, wavelength_um)
            x = 2.0 * np.pi * self.geometric_radius_um(dz_um, wavelength_um) * rho
            disc = np.ones_like(x)
            nz = x > 1e-9
            disc[nz] = 2.0 * j1(x[nz]) / x[nz]
            return rho, disc * focus
        psf = self._fine_psf(dz_um, wavelength_um, pitch, m)
        otf = sfft.rfft2(psf, workers=_workers(m)).real
        return _radial_mean(otf, m, pitch, 2.0 * self.cutoff(wavelength_um))


def focal_shift_factor(na: float, immersion_n: float, medium_n: float) -> float:
    """Depth in the medium per um of focus-drive travel, for a point at depth d below the
    cover glass in a medium of index `medium_n`, seen through an objective for `immersion_n`.

    The point's pupil phase is d * D_m(rho) with D_m = 2 pi (n_m / lambda - sqrt(n_m^2 /
    lambda^2 - rho^2)); moving the drive by dz adds -dz * D_i(rho). The dz that minimises the
    RMS of the sum over the pupil (piston removed, area weighted) is d * <D_i D_m> / <D_i^2>,
    the same balancing as for the cover glass. The factor returned, <D_i^2> / <D_i D_m>, is
    n_m / n_i for small NA (the paraxial focal shift) and grows with NA: 1.70 for a dry
    0.75 into n = 1.52 (the marginal-ray ratio would say 2.0). It does not depend on lambda.
    """
    if not 0 < na < min(immersion_n, medium_n):
        raise ValueError(f"NA {na} must be below both indices ({immersion_n}, {medium_n})")
    s = (np.arange(4096) + 0.5) / 4096 * na  # lambda * rho
    d_i = immersion_n - np.sqrt(immersion_n**2 - s * s)
    d_m = medium_n - np.sqrt(medium_n**2 - s * s)
    w = s  # area weight

    def centred(a: np.ndarray) -> np.ndarray:
        return a - np.sum(a * w) / np.sum(w)

    ci, cm = centred(d_i), centred(d_m)
    return float(np.sum(ci * ci * w) / np.sum(ci * cm * w))


@dataclass(frozen=True)
class GaussianModel:
    """Gaussian PSF: in-focus Airy fit plus the geometric blur disc. Symmetric in dz."""

    na: float
    immersion_n: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.na < self.immersion_n:
            raise ValueError(f"NA {self.na} must lie in (0, n={self.immersion_n})")

    def geometric_radius_um(self, dz_um: float, wavelength_um: float) -> float:
        return abs(dz_um) * math.tan(math.asin(self.na / self.immersion_n))

    def sigma_um(self, dz_um: float, wavelength_um: float) -> float:
        s0 = 0.21 * wavelength_um / self.na
        return math.hypot(s0, self.geometric_radius_um(dz_um, wavelength_um) / 2.0)

    def otf_profile(self, dz_um: float, wavelength_um: float) -> tuple[np.ndarray, np.ndarray]:
        cut = 2.0 * self.na / wavelength_um
        rho = np.linspace(0.0, cut, 2049)
        s = self.sigma_um(dz_um, wavelength_um)
        return rho, np.exp(-2.0 * (np.pi * s * rho) ** 2)

    def psf(
        self, dz_um: float, wavelength_um: float, pixel_um: float, size: int, oversample: int = 5
    ) -> np.ndarray:
        s = self.sigma_um(dz_um, wavelength_um)
        m = size * oversample
        x = np.fft.fftfreq(m, 1.0 / m) * (pixel_um / oversample)
        g = np.exp(-0.5 * (x / s) ** 2)
        fine = np.outer(g, g)
        out = _bin_centred(fine, oversample, size)
        return out / out.sum()


def _workers(m: int) -> int:
    """Threads for an m x m FFT: one for small grids, where thread start-up dominates."""
    return 1 if m <= 384 else -1


@functools.lru_cache(maxsize=16)
def _freq_radius(m: int, pitch_um: float) -> np.ndarray:
    f = np.fft.fftfreq(m, pitch_um)
    out = np.hypot(f[:, None], f[None, :])
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=16)
def _ring_bins(m: int, pitch_um: float, rho_max: float) -> tuple[np.ndarray, np.ndarray, int]:
    fy = np.fft.fftfreq(m, pitch_um)
    fx = np.fft.rfftfreq(m, pitch_um)
    rho = np.hypot(fy[:, None], fx[None, :])
    df = 1.0 / (m * pitch_um)
    n_bins = int(math.ceil(rho_max / df)) + 2
    bins = np.minimum(np.rint(rho / df).astype(np.intp), n_bins)
    counts = np.bincount(bins.ravel(), minlength=n_bins + 1)[:n_bins]
    rho_mean = np.bincount(bins.ravel(), weights=rho.ravel(), minlength=n_bins + 1)[:n_bins]
    rho_mean = rho_mean / np.maximum(counts, 1)
    return bins.ravel(), rho_mean, n_bins


def _radial_mean(otf: np.ndarray, m: int, pitch_um: float, rho_max: float):
    bins, rho, n_bins = _ring_bins(m, pitch_um, rho_max)
    sums = np.bincount(bins, weights=otf.ravel(), minlength=n_bins + 1)[:n_bins]
    counts = np.bincount(bins, minlength=n_bins + 1)[:n_bins]
    values = sums / np.maximum(counts, 1)
    values[0] = otf[0, 0]
    return rho, values


def _hat_integral(u: np.ndarray) -> np.ndarray:
    """Antiderivative of the unit hat function max(0, 1 - |u|), 0 at u = -inf."""
    u = np.clip(u, -1.0, 1.0)
    return np.where(u <= 0.0, 0.5 * (u + 1.0) ** 2, 1.0 - 0.5 * (1.0 - u) ** 2)


def lattice_weights(dz_um: float, width_um: float, step_um: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices i and weights w such that sum_i w_i f(i * step) is the mean over
    [dz - width/2, dz + width/2] of the piecewise-linear interpolant of f on the lattice
    (plain linear interpolation for width 0). The weights sum to 1."""
    u = dz_um / step_um
    if width_um <= 1e-9 * step_um:
        i0 = math.floor(u)
        t = u - i0
        return np.array([i0, i0 + 1]), np.array([1.0 - t, t])
    a, b = u - 0.5 * width_um / step_um, u + 0.5 * width_um / step_um
    idx = np.arange(math.floor(a), math.ceil(b) + 1)
    w = (_hat_integral(b - idx) - _hat_integral(a - idx)) / (b - a)
    keep = w > 0
    return idx[keep], w[keep]


class OTFTable:
    """Radial OTF profiles on a fixed frequency grid, for any defocus and slab thickness.

    Profiles are computed on a lattice of defocus values and cached per (lattice point,
    wavelength) in an LRU; a request interpolates linearly between lattice profiles, and a
    slab of thickness `width` gets the mean OTF over its depth range (the exact mean of that
    interpolant). The lattice is `dz_step_um` apart within +-`fine_limit_um` of focus and
    `coarse_factor` times coarser beyond, where the OTF is small and slowly varying in dz
    (and each profile costs more: the blur disc needs a larger FFT). The lattice is global,
    so sweeps, neighbouring slabs and fields share entries. Returned arrays are float32.
    """

    def __init__(
        self,
        model: DefocusModel,
        rho_step: float,
        n_rho: int,
        dz_step_um: float = 0.05,
        maxsize: int = 4096,
        fine_limit_um: float = 2.0,
        coarse_factor: int = 5,
    ) -> None:
        self.model = model
        self.rho = np.arange(n_rho) * rho_step
        self.dz_step_um = float(dz_step_um)
        self.coarse_factor = int(coarse_factor)
        coarse = self.dz_step_um * self.coarse_factor
        #: |dz| up to which the fine lattice is used (a whole number of coarse steps)
        self.fine_limit_um = max(1, round(fine_limit_um / coarse)) * coarse
        self._lookup = functools.lru_cache(maxsize=maxsize)(self._compute)

    def weights(self, dz_um: float, width_um: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Fine-lattice indices and weights for a point (width 0) or slab request."""
        lim, fine = self.fine_limit_um, self.dz_step_um
        coarse = fine * self.coarse_factor
        if width_um <= 1e-9:
            step = fine if abs(dz_um) <= lim else coarse
            idx, w = lattice_weights(dz_um, 0.0, step)
            return idx * round(step / fine), w
        a, b = dz_um - width_um / 2, dz_um + width_um / 2
        cuts = [a] + [c for c in (-lim, lim) if a < c < b] + [b]
        all_idx, all_w = [], []
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
            mid = 0.5 * (lo + hi)
            step = fine if abs(mid) <= lim else coarse
            idx, w = lattice_weights(mid, hi - lo, step)
            all_idx.append(idx * round(step / fine))
            all_w.append(w * ((hi - lo) / (b - a)))
        return np.concatenate(all_idx), np.concatenate(all_w)

    def profile(self, dz_um: float, wavelength_um: float, width_um: float = 0.0) -> np.ndarray:
        """OTF at the table's frequencies for defocus dz, averaged over a slab of
        `width_um` (drive um) centred there -> (n_rho,) float32."""
        idx, w = self.weights(dz_um, width_um)
        lam = float(wavelength_um)
        out = self._lookup(int(idx[0]), lam) * np.float32(w[0])
        for i, wi in zip(idx[1:], w[1:], strict=True):
            out += self._lookup(int(i), lam) * np.float32(wi)
        return out

    def _compute(self, i: int, wavelength_um: float) -> np.ndarray:
        rho, values = self.model.otf_profile(i * self.dz_step_um, wavelength_um)
        out = np.interp(self.rho, rho, values, right=0.0).astype(np.float32)
        out.setflags(write=False)
        return out

    def cache_info(self) -> dict[str, int]:
        info = self._lookup.cache_info()
        return {
            "hits": info.hits,
            "misses": info.misses,
            "size": info.currsize,
            "maxsize": info.maxsize or 0,
        }

    def cache_clear(self) -> None:
        self._lookup.cache_clear()
