"""From two camera frames to the CNN's input patches; the same code for training and inference.

The difference of the two frames is taken in floating point (subtracting uint8 images wraps
around). Each patch is standardised per colour channel with the statistics of the pair's mean
frame, and the network sees two images per channel: the first frame standardised and the
difference divided by the same standard deviation. Dividing the difference by its *own*
standard deviation would erase its amplitude relative to the specimen's contrast, which is
exactly what says how far away focus is (for a thin specimen the ratio of the two frames'
spectra depends on defocus only, not on the tissue).

The patch's standard deviation (of the mean frame, in [0, 1] intensity units) is kept: patches
of empty glass carry no focus signal, so it weights both the training loss and the vote
between patches at inference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import cv2
import numpy as np

from slidescan.focus.protocol import FocusError

#: ITU-R BT.601 luma weights for R, G, B.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class InputSpec:
    """How frames become patches. Stored in the checkpoint so inference is self-describing.

    `pixel_size_um` is the specimen-plane pixel size the model was trained at; frames from a
    camera with another pixel size are resampled to it. `bin` native pixels make one model
    pixel, so a `patch_px` patch covers `patch_px * bin * pixel_size_um` um of specimen.
    """

    patch_px: int = 64
    bin: int = 2
    pixel_size_um: float = 0.325
    colour: Literal["rgb", "grey"] = "rgb"
    max_patches: int = 12
    min_patch_std: float = 0.01
    std_floor: float = 0.004

    @property
    def colour_channels(self) -> int:
        return 3 if self.colour == "rgb" else 1

    @property
    def in_channels(self) -> int:
        """Network input channels: the standardised first frame and the difference."""
        return 2 * self.colour_channels

    @property
    def patch_um(self) -> float:
        return self.patch_px * self.bin * self.pixel_size_um

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class PatchPairs:
    """Binned intensity patches of a frame pair: `pairs` (N, 2, C, P, P) float32 in [0, 1],
    `patch_std` (N,), `origins` (N, 2) top-left (row, col) in model pixels."""

    pairs: np.ndarray
    patch_std: np.ndarray
    origins: np.ndarray

    def __len__(self) -> int:
        return int(self.pairs.shape[0])


def to_float(image: np.ndarray) -> np.ndarray:
    """Camera image as float32 in [0, 1] (integers by their dtype's range)."""
    a = np.asarray(image)
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.float32) / float(np.iinfo(a.dtype).max)
    return a.astype(np.float32, copy=False)


def to_colour(image: np.ndarray, colour: str) -> np.ndarray:
    """(H, W, C) float32 with C = 3 for 'rgb' (grey replicated) or 1 for 'grey' (luma)."""
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise FocusError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    image = image[..., :3]
    if colour == "grey":
        return image if image.shape[2] == 1 else (image @ LUMA)[..., None]
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def resample(image: np.ndarray, spec: InputSpec, pixel_size_um: float | None) -> np.ndarray:
    """Bin/resample (H, W, C) so one pixel is `spec.bin * spec.pixel_size_um` um."""
    px = spec.pixel_size_um if pixel_size_um is None else float(pixel_size_um)
    factor = spec.bin * spec.pixel_size_um / px  # native pixels per model pixel
    if abs(factor - round(factor)) < 1e-6 and round(factor) >= 1:
        k = round(factor)
        if k == 1:
            return image
        h, w = (image.shape[0] // k) * k, (image.shape[1] // k) * k
        c = image.shape[2]
        return image[:h, :w].reshape(h // k, k, w // k, k, c).mean(axis=(1, 3))
    size = (max(1, round(image.shape[1] / factor)), max(1, round(image.shape[0] / factor)))
    out = cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor > 1 else cv2.INTER_LINEAR)
    return out if out.ndim == 3 else out[..., None]


def patch_pairs(
    image1: np.ndarray,
    image2: np.ndarray,
    spec: InputSpec,
    pixel_size_um: float | None = None,
    max_patches: int | None = None,
) -> PatchPairs:
    """Cut the binned pair into a grid of patches and keep the ones with the most tissue.

    Patches are ranked by the standard deviation of the mean frame; glass (std below
    `spec.min_patch_std`) is dropped. The result may be empty.
    """
    a = np.asarray(image1)
    b = np.asarray(image2)
    if a.shape != b.shape:
        raise FocusError(f"the two frames differ in shape: {a.shape} vs {b.shape}")
    f1 = resample(to_colour(to_float(a), spec.colour), spec, pixel_size_um)
    f2 = resample(to_colour(to_float(b), spec.colour), spec, pixel_size_um)
    p = spec.patch_px
    rows, cols = f1.shape[0] // p, f1.shape[1] // p
    if rows == 0 or cols == 0:
        raise FocusError(
            f"frame too small for {p}-px patches after binning to {f1.shape[:2]} "
            f"(needs at least {p * spec.bin} native pixels per side)"
        )
    # Centre the grid on the frame.
    r0, c0 = (f1.shape[0] - rows * p) // 2, (f1.shape[1] - cols * p) // 2
    c = f1.shape[2]

    def grid(f: np.ndarray) -> np.ndarray:
        g = f[r0 : r0 + rows * p, c0 : c0 + cols * p].reshape(rows, p, cols, p, c)
        return g.transpose(0, 2, 4, 1, 3).reshape(rows * cols, c, p, p)

    g1, g2 = grid(f1), grid(f2)
    mean_frame = 0.5 * (g1 + g2)
    luma = np.einsum("nchw,c->nhw", mean_frame, LUMA) if c == 3 else mean_frame[:, 0]
    std = luma.reshape(len(luma), -1).std(axis=1)
    order = np.argsort(-std, kind="stable")
    order = order[std[order] >= spec.min_patch_std]
    order = order[: spec.max_patches if max_patches is None else max_patches]
    origins = np.stack([order // cols * p + r0, order % cols * p + c0], axis=1)
    pairs = np.stack([g1[order], g2[order]], axis=1)
    return PatchPairs(pairs.astype(np.float32), std[order].astype(np.float32), origins)


def network_input(pairs: np.ndarray, spec: InputSpec) -> np.ndarray:
    """(N, 2, C, P, P) intensity pairs -> (N, 2C, P, P) float32 network input.

    Channels: the first frame standardised per channel, then the float difference
    (second - first) divided by the same per-channel standard deviation.
    """
    first = pairs[:, 0].astype(np.float32)
    second = pairs[:, 1].astype(np.float32)
    mean_frame = 0.5 * (first + second)
    mu = mean_frame.mean(axis=(2, 3), keepdims=True)
    sigma = np.maximum(mean_frame.std(axis=(2, 3), keepdims=True), spec.std_floor)
    return np.concatenate([(first - mu) / sigma, (second - first) / sigma], axis=1)
