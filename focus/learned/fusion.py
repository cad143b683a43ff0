"""Fusing shots into the in-focus image with a TSVA network (or its single-input ablation).

`Fuser` wraps a trained network for inference on whole camera frames: any size (reflect-padded
to the network's multiple, large frames in overlapping blocks so memory stays bounded), 8- or
16-bit, colour or grey (a grey frame goes through the colour network as three equal channels),
batch norm folded into the convolutions, channels-last memory. Output: float32 on the 0-255
scale, the frame's shape; `to_camera` turns it back into the camera's dtype.

The shot pair is ordered as in training: the sharper by the Brenner gradient first, because
the network adds its output to the first input (the global residual).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import torch

from slidescan.focus.image_quality import to_peak_scale
from slidescan.focus.learned.torch_threads import torch_threads
from slidescan.focus.learned.unet import TwoShotUNet, fused_for_inference
from slidescan.focus.metrics import brenner

#: Largest block side fused at once (memory ~ 0.4 GB at 1024 for the shipped width).
BLOCK_PX = 1024
#: Context kept around each block so its seams match (more than the network's reach to
#: matter: features at the deepest level see about 100 px).
BLOCK_MARGIN_PX = 64


def sharper_first(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sharper, other) of two shots by the Brenner gradient (Li et al.: the sharper is Y1)."""
    return (a, b) if brenner(np.asarray(a)) >= brenner(np.asarray(b)) else (b, a)


class Fuser:
    """A network that turns shots into the in-focus image (see the module docstring).

    `threads`: torch CPU threads while fusing (None: torch's setting). One fusion at a time:
    calls from several threads are serialised.
    """

    def __init__(
        self, model: TwoShotUNet, threads: int | None = None, device: str | torch.device = "cpu"
    ) -> None:
        self.device = torch.device(device)
        self.shots = model.shots
        self.channels = model.channels
        self.multiple = model.multiple
        self.model = fused_for_inference(model).to(self.device)
        if self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.threads = threads
        self._lock = threading.Lock()
        self.last_seconds = 0.0

    def fuse(self, first: np.ndarray, second: np.ndarray | None = None) -> np.ndarray:
        """The in-focus image (float32, 0-255, the frames' shape) from two shots (any order),
        or from one for a single-input network."""
        if self.shots == 2:
            if second is None:
                raise ValueError("this network fuses two shots: give both")
            if np.shape(first) != np.shape(second):
                raise ValueError(f"shots differ in shape: {np.shape(first)} vs {np.shape(second)}")
            first, second = sharper_first(first, second)
            frames = [first, second]
        else:
            if second is not None:  # a single-input network is fed the sharper shot
                first, _ = sharper_first(first, second)
            frames = [first]
        shape = np.shape(first)
        if len(shape) not in (2, 3):
            raise ValueError(f"a shot must be (H, W) or (H, W, C), got {shape}")
        arrays = [self._as_channels(to_peak_scale(f)) for f in frames]
        t0 = time.perf_counter()
        with self._lock, torch_threads(self.threads), torch.inference_mode():
            out = self._blocks(np.stack(arrays))  # (H, W, C) 0-255
        self.last_seconds = time.perf_counter() - t0
        if len(shape) == 2:
            return out.mean(axis=2)
        if shape[2] != out.shape[2]:
            return np.repeat(out.mean(axis=2, keepdims=True), shape[2], axis=2)
        return out

    def _as_channels(self, a: np.ndarray) -> np.ndarray:
        """(H, W, model channels) float32."""
        if a.ndim == 2:
            a = a[:, :, None]
        if a.shape[2] == self.channels:
            return a
        if a.shape[2] == 4 and self.channels == 3:
            return a[:, :, :3]
        return np.repeat(a.mean(axis=2, keepdims=True), self.channels, axis=2)

    def _blocks(self, frames: np.ndarray) -> np.ndarray:
        """Fuse (S, H, W, C) frames block by block."""
        _, h, w, c = frames.shape
        out = np.empty((h, w, c), np.float32)
        step, m = BLOCK_PX, BLOCK_MARGIN_PX
        for y0 in range(0, h, step):
            for x0 in range(0, w, step):
                y1, x1 = min(h, y0 + step), min(w, x0 + step)
                ya, xa = max(0, y0 - m), max(0, x0 - m)
                yb, xb = min(h, y1 + m), min(w, x1 + m)
                block = self._run(frames[:, ya:yb, xa:xb])
                out[y0:y1, x0:x1] = block[y0 - ya : y1 - ya, x0 - xa : x1 - xa]
        return out

    def _run(self, frames: np.ndarray) -> np.ndarray:
        """One block through the network: (S, h, w, C) 0-255 -> (h, w, C) 0-255."""
        _, h, w, _ = frames.shape
        k = self.multiple
        ph, pw = (-h) % k, (-w) % k
        x = torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2)) / 255.0)
        x = x.to(self.device, torch.float32)
        if ph or pw:
            mode = "reflect" if h > ph and w > pw else "replicate"
            x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode=mode)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        y = self.model(x[0:1], x[1:2]) if self.shots == 2 else self.model(x[0:1])
        y = y[0, :, :h, :w].clamp(0.0, 1.0) * 255.0
        return y.permute(1, 2, 0).float().cpu().numpy()


def to_camera(image: np.ndarray, like: np.ndarray) -> np.ndarray:
    """A 0-255 float image in the dtype of the camera frame `like` (uint8, uint16, float)."""
    dtype = np.asarray(like).dtype
    if dtype == np.uint8:
        return np.clip(np.rint(image), 0, 255).astype(np.uint8)
    if dtype == np.uint16:
        return np.clip(np.rint(image * 257.0), 0, 65535).astype(np.uint16)
    return image.astype(dtype)
