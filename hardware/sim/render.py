"""Image formation of one camera field: the layered absorbing specimen through a defocused
objective, noise-free, as transmission relative to clear glass.

Scheme (absorption shared by optical density). Along a ray the slabs transmit
prod_k T_k = 10^(-OD), OD = sum_k OD_k per colour channel, whatever their order. The light
removed, 1 - 10^(-OD), is shared between the slabs in proportion to their OD,
A_k = OD_k / OD * (1 - 10^(-OD)), so sum_k A_k = 1 - prod_k T_k exactly, and for weak
absorbers A_k -> ln(10) OD_k, the linear (first-order) imaging model. Each slab's absorption
is blurred by the PSF of its own defocus dz_k:

    I / I0 = 1 - sum_k PSF(dz_k) (*) A_k.

(The incremental split A_k = T_<k - T_<=k, light absorbed by slab k after the slabs below it,
also sums exactly but gives the lower slabs more weight the more the tissue absorbs: with
H&E at typical OD it put the contrast peak 0.6 um below the OD-weighted centre at 20x/0.75.
Absorption commutes along a ray, so the order-free share is the better model.)

With every slab in focus and a perfect lens this is Beer-Lambert, I = I0 10^(-sum OD); with
the real in-focus PSF it is that image blurred by the in-focus PSF (the PSF has unit sum, so
the mean brightness is kept at every defocus). The sum is formed in the Fourier domain, one
OTF multiply per slab and one inverse FFT per colour channel. The slabs' spectra are cached
per field position, so a z-sweep at one position costs only OTF look-ups, multiplies and the
inverse FFTs per frame.

Each slab stands for tissue spread evenly through its thickness, so its OTF is the mean of
the OTF over the slab's depth range (without that, a few thin sheets a DOF apart give
through-focus curves with one bump per sheet and high-pass metrics lock onto a single sheet).

Geometry. A slab at height h above the section mid-plane is in focus at drive offset
h / focal_shift_factor from the mid-plane's focus. Moving a dry objective by dz moves its
focus about n_medium dz through a mounted section for small NA (the paraxial focal shift,
1.52); at high NA the marginal rays focus deeper still. The default factor is the drive
offset that minimises the RMS wavefront error of a point at that depth
(`psf.focal_shift_factor`: 1.54 at NA 0.30, 1.70 at 0.75, 1.98 at 0.95), the same balancing
that keeps best focus at dz = 0 under cover-glass aberration; the depth-induced spherical
aberration left over is neglected (a few um of section).

The mid-plane focus of a field is the focal surface averaged over the field. The field's true focus is where the section's contrast is centred: the slab heights
weighted by each slab's share of the in-focus gradient energy of the field (cross terms
included, see `contrast_weights`). Contrast metrics then peak at it: at 20x/0.75 with the
default 3 um section, Brenner / Tenengrad / normalised variance within 0.01 um on a 1024^2
field and 0.08 um on a 256^2 one; metrics confined to the finest detail (variance of the
Laplacian, high-pass energy) see a thick section as a plateau and may pick a plane up to
~0.1 um (1024^2) or ~0.4 um (256^2) away, more so for 4-5 um sections. That is physics, not
noise: the content of a small field is not spread evenly through the section's depth. The
stain's centre of mass (OD-weighted centre) is recorded too (`od_centre_um`): it follows the
bulk of the stain, in H&E the evenly spread background rather than the nuclei that carry
the contrast, and agrees with the metrics less well.

The field is rendered with a margin (`margin_um`) so that blur pulls in real neighbouring
specimen; blur discs larger than the margin wrap around within the padded field.
"""

from __future__ import annotations

import collections
import math
import os
import threading
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from slidescan.hardware.optics import OpticalPath
from slidescan.hardware.sim.psf import DefocusModel, OTFTable
from slidescan.hardware.sim.specimen import Specimen
from slidescan.hardware.sim.stains import transmission
from slidescan.hardware.sim.surface import FocalSurface


@dataclass(frozen=True)
class FieldTruth:
    """What is known about one field without rendering it."""

    x_um: float
    y_um: float
    #: Mean focal-surface z over the field: where the section's mid-plane is in focus.
    midplane_um: float
    #: Drive z at which each slab is in focus, bottom slab first.
    layer_focus_um: tuple[float, ...]
    #: Total OD of each slab within the field (all channels, summed over pixels).
    layer_od: tuple[float, ...]
    #: Each slab's share of the field's contrast (see `contrast_weights`), sums to 1.
    layer_contrast: tuple[float, ...]
    #: Where the section's contrast-weighted centre is in focus: the focus truth.
    true_focus_um: float
    #: Where the section's OD-weighted centre is in focus (stain centre of mass).
    od_centre_um: float
    #: Fraction of the field's pixels with tissue.
    tissue_fraction: float


class FieldRenderer:
    """Noise-free transmission images (H, W, 3) of fields of a specimen at any focus."""

    def __init__(
        self,
        specimen: Specimen,
        surface: FocalSurface,
        optics: OpticalPath,
        model: DefocusModel,
        shape: tuple[int, int],
        *,
        wavelengths_um: tuple[float, ...],
        focal_shift_factor: float,
        chromatic_shift_um: tuple[float, ...] = (0.0, 0.0, 0.0),
        margin_um: float = 20.0,
        otf_dz_step_um: float = 0.05,
        otf_cache_size: int = 4096,
        field_cache_size: int = 2,
        workers: int | None = None,
    ) -> None:
        if len(wavelengths_um) != len(chromatic_shift_um):
            raise ValueError("one chromatic shift per wavelength is needed")
        self.specimen = specimen
        self.surface = surface
        self.optics = optics
        self.model = model
        self.shape = (int(shape[0]), int(shape[1]))
        self.wavelengths_um = tuple(float(w) for w in wavelengths_um)
        self.chromatic_shift_um = tuple(float(c) for c in chromatic_shift_um)
        self.focal_shift_factor = float(focal_shift_factor)
        self.pixel_um = float(optics.pixel_size_um)
        #: Drive-z extent of one slab: its content is spread evenly over this depth range.
        self.slab_width_um = specimen.thickness_um / specimen.n_layers / self.focal_shift_factor
        self.workers = workers or os.cpu_count() or 1
        h, w = self.shape
        m = math.ceil(margin_um / self.pixel_um)
        self.padded = (
            sfft.next_fast_len(h + 2 * m, real=True),
            sfft.next_fast_len(w + 2 * m, real=True),
        )
        self.offset = ((self.padded[0] - h) // 2, (self.padded[1] - w) // 2)
        hp, wp = self.padded
        rho = np.hypot(
            np.fft.fftfreq(hp, self.pixel_um)[:, None],
            np.fft.rfftfreq(wp, self.pixel_um)[None, :],
        )
        rho_step = 0.25 / (max(hp, wp) * self.pixel_um)
        self._ridx = np.rint(rho / rho_step).astype(np.intp)
        self.otf = OTFTable(
            model,
            rho_step,
            int(self._ridx.max()) + 1,
            dz_step_um=otf_dz_step_um,
            maxsize=otf_cache_size,
        )
        self._spectra: collections.OrderedDict[tuple[float, float], np.ndarray] = (
            collections.OrderedDict()
        )
        self._field_cache_size = int(field_cache_size)
        self._truths: collections.OrderedDict[tuple[float, float], FieldTruth] = (
            collections.OrderedDict()
        )
        self._lock = threading.RLock()
        self.field_hits = 0
        self.field_misses = 0

    # -- geometry -------------------------------------------------------------------------------
    @property
    def field_of_view_um(self) -> tuple[float, float]:
        return self.shape[1] * self.pixel_um, self.shape[0] * self.pixel_um

    def pixel_coords(self, x_um: float, y_um: float, padded: bool = True):
        """World coordinates (xs, ys) of the pixel centres of the field centred at (x, y)."""
        h, w = self.shape
        if padded:
            (hp, wp), (oy, ox) = self.padded, self.offset
        else:
            hp, wp, oy, ox = h, w, 0, 0
        xs = x_um + (np.arange(wp) - ox - (w - 1) / 2.0) * self.pixel_um
        ys = y_um + (np.arange(hp) - oy - (h - 1) / 2.0) * self.pixel_um
        return xs, ys

    # -- per-field data -------------------------------------------------------------------------
    def _truth_from_od(
        self, x: float, y: float, od: np.ndarray, absorbed: np.ndarray | None = None
    ) -> FieldTruth:
        h, w = self.shape
        oy, ox = self.offset
        crop = od[..., oy : oy + h, ox : ox + w]
        if absorbed is None:
            absorbed = absorption_layers(crop)
        else:
            absorbed = absorbed[..., oy : oy + h, ox : ox + w]
        layer_od = crop.sum(axis=(1, 2, 3), dtype=np.float64)
        fw, fh = self.field_of_view_um
        mid = self.surface.field_mean(x, y, fw, fh)
        heights = np.asarray(self.specimen.layer_heights_um, float)
        layer_focus = mid + heights / self.focal_shift_factor
        total = float(layer_od.sum())
        od_centre = float(np.dot(layer_od, heights) / total) if total > 0 else 0.0
        weights = contrast_weights(absorbed)
        centre = float(np.dot(weights, heights)) if weights.sum() > 0 else od_centre
        tissue = float(np.mean(crop.sum(axis=(0, 1)) > 0.02))
        return FieldTruth(
            x_um=x,
            y_um=y,
            midplane_um=mid,
            layer_focus_um=tuple(float(v) for v in layer_focus),
            layer_od=tuple(float(v) for v in layer_od),
            layer_contrast=tuple(float(v) for v in weights),
            true_focus_um=mid + centre / self.focal_shift_factor,
            od_centre_um=mid + od_centre / self.focal_shift_factor,
            tissue_fraction=tissue,
        )

    def _remember_truth(self, key: tuple[float, float], truth: FieldTruth) -> None:
        self._truths[key] = truth
        self._truths.move_to_end(key)
        while len(self._truths) > 100_000:
            self._truths.popitem(last=False)

    def truth(self, x_um: float, y_um: float) -> FieldTruth:
        """Focus truth of the field centred at (x, y); generates its specimen (and caches its
        spectra, as it is usually rendered next) if needed."""
        key = (float(x_um), float(y_um))
        with self._lock:
            t = self._truths.get(key)
            if t is None:
                # the field is usually rendered next: prepare it completely
                self.spectra(*key)
                t = self._truths[key]
            return t

    def spectra(self, x_um: float, y_um: float) -> np.ndarray:
        """Fourier transforms of the slabs' absorption A_k -> (L, C, Hp, Wp//2+1) complex64."""
        key = (float(x_um), float(y_um))
        with self._lock:
            s = self._spectra.get(key)
            if s is not None:
                self._spectra.move_to_end(key)
                self.field_hits += 1
                return s
            self.field_misses += 1
            xs, ys = self.pixel_coords(*key)
            od = self.specimen.od_layers(xs, ys)
            absorbed = absorption_layers(od)
            self._remember_truth(key, self._truth_from_od(*key, od, absorbed))
            del od
            s = sfft.rfft2(absorbed, axes=(-2, -1), workers=self.workers)
            s.setflags(write=False)
            self._spectra[key] = s
            while len(self._spectra) > self._field_cache_size:
                self._spectra.popitem(last=False)
            return s

    def clear_cache(self) -> None:
        with self._lock:
            self._spectra.clear()

    # -- rendering ------------------------------------------------------------------------------
    def intensity(self, x_um: float, y_um: float, z_um: float) -> np.ndarray:
        """Transmission image I / I0 -> (H, W, C) float32 of the field centred at (x, y) with
        the focus drive at z."""
        spectra = self.spectra(x_um, y_um)
        truth = self.truth(x_um, y_um)
        h, w = self.shape
        oy, ox = self.offset
        out = np.empty((h, w, len(self.wavelengths_um)), np.float32)
        for c, (lam, shift) in enumerate(
            zip(self.wavelengths_um, self.chromatic_shift_um, strict=True)
        ):
            acc = None
            for k, focus in enumerate(truth.layer_focus_um):
                profile = self.otf.profile(z_um - focus - shift, lam, self.slab_width_um)
                otf = profile[self._ridx]
                if acc is None:
                    acc = otf * spectra[k, c]
                else:
                    acc += otf * spectra[k, c]
            absorbed = sfft.irfft2(acc, s=self.padded, workers=self.workers)
            np.subtract(1.0, absorbed[oy : oy + h, ox : ox + w], out=out[..., c])
        return out


def contrast_weights(absorbed: np.ndarray) -> np.ndarray:
    """Each slab's share of the field's in-focus gradient energy -> (L,) summing to 1, or
    zeros for a featureless field.

    With g_k the gradient of slab k's absorption (mean over colours), the image's gradient
    energy in focus is sum_jk <g_j, g_k>; slab k's share is sum_j <g_k, g_j>, so structure
    that runs through several slabs counts for all of them. Negative shares (anti-correlated
    slabs) are clipped to zero.
    """
    a = absorbed.mean(axis=1, dtype=np.float32)  # (L, H, W)
    n = a.shape[0]
    gx = np.diff(a, axis=2).reshape(n, -1)
    gy = np.diff(a, axis=1).reshape(n, -1)
    gram = (gx @ gx.T).astype(np.float64) + (gy @ gy.T).astype(np.float64)
    share = np.clip(gram.sum(axis=1), 0.0, None)
    total = share.sum()
    return share / total if total > 1e-12 else np.zeros(n)


def absorption_layers(od: np.ndarray) -> np.ndarray:
    """Absorbed fraction per slab: A_k = OD_k / OD * (1 - 10^-OD), OD = sum_k OD_k, for OD
    of shape (L, ...) -> float32 (L, ...).

    sum_k A_k = 1 - prod_k T_k exactly, and for weak absorbers A_k -> ln(10) OD_k, the
    first-order (linear) imaging model. The share does not depend on the slabs' order.
    """
    total = od.sum(axis=0, dtype=np.float32)
    absorbed = 1.0 - transmission(total)
    # absorbed / total without dividing by zero on glass; -> ln(10) as total -> 0
    ratio = np.divide(absorbed, total, out=np.full_like(total, np.log(10.0)), where=total > 1e-6)
    return (od * ratio[None]).astype(np.float32, copy=False)
