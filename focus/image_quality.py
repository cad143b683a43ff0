"""How close an image is to a reference: PSNR and SSIM on the 0-255 scale.

Used to score images a focus method makes (TSVA's fused tiles) against the in-focus image the
simulator can give. Both compare every pixel and every channel: a fused tile is judged whole,
vignetted corners included.
"""

from __future__ import annotations

import math

import numpy as np

#: The scale images are scored on: 8-bit frames as they are; other frames are brought to it.
PEAK = 255.0


def psnr_db(image: np.ndarray, reference: np.ndarray, peak: float = PEAK) -> float:
    """Peak signal-to-noise ratio in dB: 10 log10(peak^2 / MSE), the mean over all pixels and
    channels. Identical images give infinity."""
    a = np.asarray(image, np.float64)
    b = np.asarray(reference, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"image {a.shape} and reference {b.shape} differ in shape")
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)


def ssim(image: np.ndarray, reference: np.ndarray, peak: float = PEAK) -> float:
    """Structural similarity (Wang et al. 2004: 7 x 7 window, K1 0.01, K2 0.03, the mean over
    the image), per channel and averaged for colour images."""
    from skimage.metrics import structural_similarity

    a = np.asarray(image, np.float64)
    b = np.asarray(reference, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"image {a.shape} and reference {b.shape} differ in shape")
    channel_axis = 2 if a.ndim == 3 else None
    return float(structural_similarity(a, b, data_range=peak, channel_axis=channel_axis))


def to_peak_scale(image: np.ndarray) -> np.ndarray:
    """An image on the 0-255 scale as float32: 8-bit and float images as they are, 16-bit
    images divided by 257 (65535 -> 255)."""
    a = np.asarray(image)
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 257.0
    return a.astype(np.float32, copy=False)
