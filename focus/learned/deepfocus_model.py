"""DeepFocus's sharpness network at inference: a checkpoint in, blur scores per patch out.

`SharpnessNet` loads a kit checkpoint of method "deepfocus" (MobileNetV2, one luminance input,
two outputs), folds batch norm into the convolutions and scores a frame's patches
(`deepfocus_score.frame_draws`, their noise first raised to the calibration's floor): per
patch the blur score (ln px) and the probability that the patch can be judged. Deterministic for a given input; `threads` as for diffcnn (one thread
is fastest for a dozen patches and far faster than two when other work shares the CPU).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from slidescan.focus.learned.checkpoint import load_checkpoint, shipped_path
from slidescan.focus.learned.deepfocus_score import (
    NOISE_DRAWS,
    PATCH_PX,
    frame_draws,
)
from slidescan.focus.learned.diffcnn_model import fuse_conv_bn
from slidescan.focus.learned.torch_threads import torch_threads
from slidescan.focus.protocol import FocusError

#: Shipped weights: one model for every objective.
SHIPPED_NAME = "any"


def shipped_weights_path() -> Path:
    return shipped_path("deepfocus", SHIPPED_NAME)


@dataclass
class FrameScores:
    """One frame's patches: blur scores, validity probabilities, top-left corners."""

    scores: np.ndarray
    valid_prob: np.ndarray
    corners: list[tuple[int, int]]
    compute_s: float


class SharpnessNet:
    def __init__(self, weights: str | Path | None = None, threads: int | None = 1) -> None:
        path = Path(weights) if weights is not None else shipped_weights_path()
        ckpt = load_checkpoint(path, "deepfocus")
        if ckpt.config.get("in_channels") != 1 or ckpt.config.get("num_outputs") != 2:
            raise FocusError(f"{path}: a DeepFocus network reads 1 channel and gives 2 outputs")
        self.path = path
        self.checksum = ckpt.checksum
        self.meta = dict(ckpt.meta)
        self.patch_px = int(self.meta.get("patch_px", PATCH_PX))
        self.model = fuse_conv_bn(ckpt.build()).eval().to(memory_format=torch.channels_last)
        self.threads = threads
        self.score_patches(np.zeros((4, self.patch_px, self.patch_px), np.float32))

    def score_patches(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, P, P) standardised patches -> (scores, validity probabilities)."""
        if len(patches) == 0:
            return np.zeros(0), np.zeros(0)
        x = torch.from_numpy(np.ascontiguousarray(patches[:, None], dtype=np.float32))
        x = x.contiguous(memory_format=torch.channels_last)
        with torch_threads(self.threads), torch.inference_mode():
            out = self.model(x).double().numpy()
        return out[:, 0], 1.0 / (1.0 + np.exp(-out[:, 1]))

    def score_frame(
        self,
        image: np.ndarray,
        max_patches: int = 16,
        noise_floor: float = 0.0,
        draws: int = NOISE_DRAWS,
        drawn_patches: int | None = None,
    ) -> FrameScores:
        """A frame's patches scored, their noise first raised to `noise_floor` grey levels
        (the calibration's `noise_floor`; 0: as they are); where noise is added, it is drawn
        `draws` times (with `drawn_patches`: fewer where the frame has the patches to average
        it, `frame_draws`) and the scores and validities averaged (`deepfocus_score`)."""
        if draws < 1:
            raise ValueError(f"noise draws must be at least 1, got {draws}")
        t0 = time.perf_counter()
        batch, corners = frame_draws(
            image, max_patches, self.patch_px, noise_floor, draws, drawn_patches=drawn_patches
        )
        n = len(batch[0])
        s, v = self.score_patches(np.concatenate(batch))  # one call: cheaper than one per draw
        return FrameScores(
            s.reshape(len(batch), n).mean(axis=0),
            v.reshape(len(batch), n).mean(axis=0),
            corners,
            time.perf_counter() - t0,
        )


_CACHE: dict[tuple, SharpnessNet] = {}


def load_sharpness(weights: str | Path | None = None, threads: int | None = 1) -> SharpnessNet:
    """A `SharpnessNet`, shared between method instances while its file is unchanged (path,
    size and modification time), so a scan or an evaluation reads it once."""
    path = Path(weights) if weights is not None else shipped_weights_path()
    try:
        st = path.stat()
        key: tuple = (str(path.resolve()), st.st_size, st.st_mtime_ns, threads)
    except OSError:
        return SharpnessNet(path, threads)  # raises the one-line "not found"
    net = _CACHE.get(key)
    if net is None:
        net = SharpnessNet(path, threads)
        _CACHE[key] = net
    return net
