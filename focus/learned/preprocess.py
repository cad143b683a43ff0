"""From two camera frames to the CNN's input patches; the same code for training and inference.

The difference of the two frames is taken in floating point (subtracting uint8 images wraps
around). Each patch is standardised per colour channel with the statistics of the pair's mean
frame, and the network sees two images per channel: the first frame standardised and the
difference divided by the same standard deviation. Dividing the difference by its *own*
standard deviation would erase its amplitude relative to the specimen's contrast, which is
exactly what says how far away focus is (for a thin specimen the ratio of the two frames'
spectra depends on defocus only, not on the tissue).

The patch's standard deviation (of the mean frame, relative to the pair's brightness) is kept: patches
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
    min_patch_std: float = 0.015
    std_floor: float = 0.005

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
    """Binned patches of a frame pair: `pairs` (N, 2, C, P, P) float32, intensities relative
    to the pair's mean brightness; `patch_std` (N,) the mean frame's luma std (relative
    contrast); `origins` (N, 2) top-left (row, col) in native frame pixels."""

    pairs: np.ndarray
    patch_std: np.ndarray
    origins: np.ndarray

    def __len__(self) -> int:
        return int(self.pairs.shape[0])


def to_colour(image: np.ndarray, colour: str) -> np.ndarray:
    """(H, W, C) float32 with C = 3 for 'rgb' (grey replicated) or 1 for 'grey' (luma)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    image = image[..., :3]
    if colour == "grey":
        return image if image.shape[2] == 1 else (image @ LUMA)[..., None]
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def _check_frames(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise FocusError(f"the two frames differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise FocusError(f"expected (H, W) or (H, W, 3) frames, got shape {a.shape}")


def _luma(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        return image
    return image[..., 0] if image.shape[2] == 1 else image[..., :3] @ LUMA


def patch_pairs(
    image1: np.ndarray,
    image2: np.ndarray,
    spec: InputSpec,
    pixel_size_um: float | None = None,
    max_patches: int | None = None,
) -> PatchPairs:
    """Cut the pair into a centred grid of patches and keep the ones with the most tissue.

    Intensities are divided by the pair's mean brightness, so exposure, gain and bit depth do
    not matter and `patch_std` is a relative contrast. Patches are ranked by a cheap contrast
    estimate on a subsampled grid, the best `max_patches` are binned/resampled to the model's
    pixel size, and those whose std is below `spec.min_patch_std` (glass) are dropped. Only
    the kept patches are converted to float, which keeps a 1024 x 1024 RGB pair to a few ms.
    The result may be empty.
    """
    a, b = np.asarray(image1), np.asarray(image2)
    _check_frames(a, b)
    px = spec.pixel_size_um if pixel_size_um is None else float(pixel_size_um)
    factor = spec.bin * spec.pixel_size_um / px  # native pixels per model pixel
    side = max(1, round(spec.patch_px * factor))  # native pixels per patch
    h, w = a.shape[:2]
    rows, cols = h // side, w // side
    if rows == 0 or cols == 0:
        raise FocusError(
            f"frame {h}x{w} too small for one {spec.patch_px}-px patch "
            f"(needs {side} native pixels per side at {px:g} um/px)"
        )
    r0, c0 = (h - rows * side) // 2, (w - cols * side) // 2
    # Cheap ranking: luma std of each patch on a subsampled grid of the mean frame.
    step = max(1, side // 16)
    sub = 0.5 * (
        _luma(a[r0 : r0 + rows * side : step, c0 : c0 + cols * side : step])
        + _luma(b[r0 : r0 + rows * side : step, c0 : c0 + cols * side : step])
    )
    brightness = float(sub.mean())
    if not brightness > 0:
        return PatchPairs(
            np.zeros((0, 2, spec.colour_channels, spec.patch_px, spec.patch_px), np.float32),
            np.zeros(0, np.float32),
            np.zeros((0, 2), int),
        )
    n = side // step if side % step == 0 else None
    if n is not None and sub.shape == (rows * n, cols * n):
        score = sub.reshape(rows, n, cols, n).std(axis=(1, 3)).reshape(-1)
    else:  # side not a multiple of step: per-block loop (few blocks)
        score = np.array(
            [
                sub[
                    i * side // step : (i + 1) * side // step,
                    j * side // step : (j + 1) * side // step,
                ].std()
                for i in range(rows)
                for j in range(cols)
            ]
        )
    limit = spec.max_patches if max_patches is None else max_patches
    order = np.argsort(-score, kind="stable")[:limit]
    p = spec.patch_px
    pairs = np.empty((len(order), 2, spec.colour_channels, p, p), np.float32)
    for k, idx in enumerate(order):
        i, j = divmod(int(idx), cols)
        y, x = r0 + i * side, c0 + j * side
        for f, img in enumerate((a, b)):
            block = to_colour(img[y : y + side, x : x + side], spec.colour) / brightness
            if side != p:
                block = cv2.resize(block, (p, p), interpolation=cv2.INTER_AREA)
                block = block if block.ndim == 3 else block[..., None]
            pairs[k, f] = block.transpose(2, 0, 1)
    mean_frame = 0.5 * (pairs[:, 0] + pairs[:, 1])
    luma = np.einsum("nchw,c->nhw", mean_frame, LUMA) if pairs.shape[2] == 3 else mean_frame[:, 0]
    std = luma.reshape(len(order), -1).std(axis=1)
    keep = std >= spec.min_patch_std
    rc = np.stack([order // cols * side + r0, order % cols * side + c0], axis=1).reshape(-1, 2)
    return PatchPairs(pairs[keep], std[keep].astype(np.float32), rc[keep])


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
