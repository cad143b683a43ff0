"""Stains in optical-density (OD) space and Beer-Lambert colour.

A stain's colour is its OD vector: the optical density per RGB channel of a unit amount of
stain. Amounts add in OD space, and light through the slide follows Beer-Lambert,
I = I0 * 10^(-OD) per channel. The vectors are the measured ones of Ruifrok & Johnston,
"Quantification of histochemical staining by color deconvolution", Anal. Quant. Cytol. Histol.
23 (2001) 291-299 (the same numbers as scikit-image's `rgb_from_hed`), in R, G, B order to
match `OpticalPath.wavelengths_um`.
"""

from __future__ import annotations

import numpy as np

HEMATOXYLIN = np.array([0.650, 0.704, 0.286])
EOSIN = np.array([0.072, 0.990, 0.105])
DAB = np.array([0.268, 0.570, 0.776])

#: Stain pairs of the procedural specimen: (nuclear stain, second stain).
STAIN_PAIRS: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "he": (HEMATOXYLIN, EOSIN),
    "ihc": (HEMATOXYLIN, DAB),
}


def od_from_stains(amounts: np.ndarray, vectors: tuple[np.ndarray, ...]) -> np.ndarray:
    """RGB OD from stain amounts: amounts (..., S, H, W) -> OD (..., 3, H, W) float32."""
    m = np.stack(vectors).astype(np.float32)  # (S, 3)
    amounts = amounts.astype(np.float32, copy=False)
    shape = (*amounts.shape[:-3], 3, *amounts.shape[-2:])
    od = np.empty(shape, np.float32)
    for c in range(3):
        out = od[..., c, :, :]
        np.multiply(amounts[..., 0, :, :], m[0, c], out=out)
        for s in range(1, len(m)):
            out += amounts[..., s, :, :] * m[s, c]
    return od


def transmission(od: np.ndarray) -> np.ndarray:
    """Beer-Lambert: fraction of light transmitted, 10^(-OD)."""
    return np.power(np.float32(10.0), -od, dtype=np.float32)


def od_from_rgb(rgb: np.ndarray, white: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """OD of an RGB image (H, W, 3) against the glass brightness `white` (3,), >= 0, float32.

    Values are clipped to [floor, 1] of the white level first, so black pixels get a finite OD
    (3 for the default floor) and pixels brighter than glass count as clear.
    """
    ratio = np.clip(rgb.astype(np.float32) / np.asarray(white, np.float32), floor, 1.0)
    return -np.log10(ratio).astype(np.float32)
