"""Classical focus metrics: one number per image that peaks at best focus.

Every metric takes one image or a batch and returns a float or an (N,) array:

- (H, W): one grey image;
- (H, W, C) with C in {1, 3, 4}: one colour image;
- (N, H, W) with the last axis not 1, 3 or 4: a batch of grey images;
- (N, H, W, C): a batch of colour images.

Colour becomes luminance with Rec. 601 weights (0.299 R + 0.587 G + 0.114 B; alpha is dropped):
in brightfield H&E and IHC the green band carries most of the contrast and dominates luminance
anyway, and luminance keeps the metric independent of the camera's white balance. Integer images
are scaled to [0, 1] by their dtype's full range (uint8 / 255, uint16 / 65535) so an 8-bit and a
16-bit capture of the same field score alike; float images are used as they are.

`brenner_green` is Brenner on the green channel alone (a grey image is used as it is). With axial
chromatic aberration the red and blue images focus apart (a few tenths of a um on a dry 20x);
luminance weighs red 2.6x more than blue, so its peak is pulled towards red focus. The green
band is the one dry objectives are corrected for and, in H&E and DAB, the one with most of the
contrast; the simulator's focus truth refers to it too. diffcnn's calibration sweep uses it.

Values are normalised by the number of pixels (means, not sums), so they are comparable across
frame sizes. Gradients and the Laplacian are taken on the valid interior only: no padding, so a
border never adds false edges.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

Metric = Callable[[np.ndarray], float | np.ndarray]
#: The metric names, as a type: parameter models use it (the GUI offers them as a choice).
MetricName = Literal[
    "brenner",
    "brenner_green",
    "tenengrad",
    "normalized_variance",
    "variance_of_laplacian",
    "highpass",
]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_GREEN = np.array([0.0, 1.0, 0.0], dtype=np.float32)
_COLOUR_CHANNELS = (1, 3, 4)


def as_luminance_batch(images: np.ndarray, weights: np.ndarray = _LUMA) -> tuple[np.ndarray, bool]:
    """Images as a float32 (N, H, W) luminance stack in [0, 1], and whether the input was a batch.
    `weights`: the R, G, B weights of a colour image (default Rec. 601 luminance)."""
    a = np.asarray(images)
    colour_last = a.ndim >= 3 and a.shape[-1] in _COLOUR_CHANNELS
    if a.ndim == 2 or (a.ndim == 3 and colour_last):
        batch, stack = False, a[None]
    elif a.ndim == 3 or (a.ndim == 4 and colour_last):
        batch, stack = True, a
    else:
        raise ValueError(
            f"expected an image (H, W[, C]) or a batch (N, H, W[, C]) with C in 1, 3, 4; "
            f"got shape {a.shape}"
        )
    if np.issubdtype(stack.dtype, np.integer):
        scale = 1.0 / float(np.iinfo(stack.dtype).max)
    elif np.issubdtype(stack.dtype, np.floating) or stack.dtype == np.bool_:
        scale = 1.0
    else:
        raise ValueError(f"unsupported image dtype {stack.dtype}")
    stack = stack.astype(np.float32, copy=False)
    if stack.ndim == 4:
        channels = stack.shape[-1]
        stack = stack[..., 0] if channels == 1 else stack[..., :3] @ weights
    if scale != 1.0:
        stack = stack * np.float32(scale)
    if stack.shape[-1] < 3 or stack.shape[-2] < 3:
        raise ValueError(f"images must be at least 3 x 3 pixels, got {stack.shape[-2:]}")
    return stack, batch


def _finish(values: np.ndarray, batch: bool) -> float | np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values if batch else float(values[0])


def _mean(a: np.ndarray) -> np.ndarray:
    """Per-image mean over the last two axes, accumulated in float64."""
    return a.mean(axis=(-2, -1), dtype=np.float64)


def _brenner(s: np.ndarray) -> np.ndarray:
    dx = s[:, :, 2:] - s[:, :, :-2]
    dy = s[:, 2:, :] - s[:, :-2, :]
    return _mean(dx * dx) + _mean(dy * dy)


def brenner(images: np.ndarray) -> float | np.ndarray:
    """Brenner gradient: mean squared difference between pixels two apart, along x and y."""
    s, batch = as_luminance_batch(images)
    return _finish(_brenner(s), batch)


def brenner_green(images: np.ndarray) -> float | np.ndarray:
    """Brenner gradient of the green channel (grey images as they are)."""
    s, batch = as_luminance_batch(images, _GREEN)
    return _finish(_brenner(s), batch)


def tenengrad(images: np.ndarray) -> float | np.ndarray:
    """Tenengrad: mean squared Sobel gradient magnitude (Gx^2 + Gy^2), no threshold."""
    s, batch = as_luminance_batch(images)
    # Separable 3x3 Sobel on the valid interior: derivative [-1, 0, 1] one way, [1, 2, 1] the other.
    d_x = s[:, :, 2:] - s[:, :, :-2]
    gx = d_x[:, :-2, :] + 2.0 * d_x[:, 1:-1, :] + d_x[:, 2:, :]
    d_y = s[:, 2:, :] - s[:, :-2, :]
    gy = d_y[:, :, :-2] + 2.0 * d_y[:, :, 1:-1] + d_y[:, :, 2:]
    return _finish(_mean(gx * gx) + _mean(gy * gy), batch)


def normalized_variance(images: np.ndarray) -> float | np.ndarray:
    """Intensity variance divided by the mean intensity (Groen et al. 1985)."""
    s, batch = as_luminance_batch(images)
    mean = _mean(s)
    var = s.var(axis=(-2, -1), dtype=np.float64)
    return _finish(var / np.maximum(mean, 1e-12), batch)


def variance_of_laplacian(images: np.ndarray) -> float | np.ndarray:
    """Variance of the 4-neighbour Laplacian (Pech-Pacheco et al. 2000)."""
    s, batch = as_luminance_batch(images)
    lap = (
        s[:, :-2, 1:-1] + s[:, 2:, 1:-1] + s[:, 1:-1, :-2] + s[:, 1:-1, 2:] - 4.0 * s[:, 1:-1, 1:-1]
    )
    return _finish(lap.var(axis=(-2, -1), dtype=np.float64), batch)


def highpass_energy(images: np.ndarray, cutoff: float = 0.15) -> float | np.ndarray:
    """Spectral energy above `cutoff` (cycles/pixel, Nyquist = 0.5) relative to the mean squared.

    The image is Hann-windowed first, so the frame edges do not leak energy into high
    frequencies. By Parseval the result is the mean squared value of the high-passed image
    divided by the squared mean intensity: a relative contrast energy, independent of frame size
    and illumination level.
    """
    if not 0.0 < cutoff < 0.5:
        raise ValueError(f"cutoff must lie in (0, 0.5) cycles/pixel, got {cutoff}")
    s, batch = as_luminance_batch(images)
    h, w = s.shape[-2:]
    mean = _mean(s)
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    windowed = (s - mean[:, None, None].astype(np.float32)) * window
    spectrum = np.fft.rfft2(windowed)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    high = (fy * fy + fx * fx) >= cutoff * cutoff
    # rfft2 keeps half the spectrum: columns other than DC (and Nyquist for even w) count twice.
    weight = np.full(fx.shape, 2.0)
    weight[:, 0] = 1.0
    if w % 2 == 0:
        weight[:, -1] = 1.0
    power = (np.abs(spectrum) ** 2) * (high * weight)
    energy = power.sum(axis=(-2, -1)) / float(h * w) / float((window**2).sum())
    return _finish(energy / np.maximum(mean * mean, 1e-24), batch)


METRICS: dict[str, Metric] = {
    "brenner": brenner,
    "brenner_green": brenner_green,
    "tenengrad": tenengrad,
    "normalized_variance": normalized_variance,
    "variance_of_laplacian": variance_of_laplacian,
    "highpass": highpass_energy,
}


def get_metric(name: str) -> Metric:
    """Look up a metric by name; a clear error lists the known ones."""
    try:
        return METRICS[name]
    except KeyError:
        known = ", ".join(METRICS)
        raise ValueError(f"unknown focus metric {name!r}; known metrics: {known}") from None
