"""The difference-image CNN as a model: its checkpoint's meta, loading it, and the predictor
that turns two frames into a distance to focus (used by the focus method, by training
validation and by benchmarks).

Weights are the kit's checkpoints (`focus.learned.checkpoint`, method "diffcnn"); `DiffCNNMeta`
is what a diffcnn checkpoint says about itself.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from slidescan.focus.learned.checkpoint import Checkpoint, load_checkpoint, shipped_path
from slidescan.focus.learned.preprocess import InputSpec, network_input, patch_pairs
from slidescan.focus.learned.torch_threads import torch_threads
from slidescan.focus.protocol import FocusError

METHOD = "diffcnn"
DEFAULT_OBJECTIVE = "20x/0.75"
ARCHITECTURE = "mobilenetv2"


class DiffCNNMeta(BaseModel):
    """What a diffcnn checkpoint says about itself: its `meta` and `normalisation` parts and
    its provenance. Unknown keys are kept (forward compatible)."""

    model_config = ConfigDict(extra="allow")

    # input
    input_spec: dict[str, Any]
    # optics and acquisition
    objective: str
    na: float
    #: NA range the training data covered (None: only `na`)
    na_range: tuple[float, float] | None = None
    immersion_n: float = 1.0
    delta_um: float = Field(gt=0, description="z step between the two shots")
    offset_um: float = Field(gt=0, description="default distance of the first shot below the hint")
    # target normalisation: the network outputs (y - y_mean) / y_scale
    y_mean_um: float
    y_scale_um: float = Field(gt=0)
    y_min_um: float
    y_max_um: float
    # provenance
    trained: dict[str, Any] = Field(default_factory=dict)

    @property
    def spec(self) -> InputSpec:
        return InputSpec.from_dict(self.input_spec)

    @classmethod
    def of(cls, ckpt: Checkpoint) -> DiffCNNMeta:
        return cls.model_validate({**ckpt.meta, **ckpt.normalisation, "trained": ckpt.trained})

    def checkpoint(self, model: nn.Module, config: dict[str, Any], card: str = "") -> Checkpoint:
        """A checkpoint of `model` (a `mobilenetv2` built with `config`) with this meta."""
        data = self.model_dump(mode="json")
        trained = data.pop("trained")
        normalisation = {k: data.pop(k) for k in ("y_mean_um", "y_scale_um")}
        return Checkpoint.of(
            METHOD,
            ARCHITECTURE,
            config,
            model,
            normalisation=normalisation,
            meta=data,
            trained=trained,
            card=card,
        )


def load_diffcnn(path: str | Path) -> tuple[nn.Module, DiffCNNMeta]:
    """The network (eval mode, CPU) and meta of a diffcnn checkpoint; one-line `FocusError`."""
    ckpt = load_checkpoint(path, METHOD)
    if ckpt.architecture != ARCHITECTURE:
        raise FocusError(f"{path}: diffcnn needs a {ARCHITECTURE}, not {ckpt.architecture}")
    try:
        meta = DiffCNNMeta.of(ckpt)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise FocusError(f"diffcnn checkpoint {path}: bad {where} ({first['msg']})") from None
    return ckpt.build(), meta


def shipped_weights_path(objective: str = DEFAULT_OBJECTIVE) -> Path:
    """Path of the shipped weights for `objective` (may not exist: loading says so)."""
    return shipped_path(METHOD, objective)


#: Scale factor from the median absolute deviation to a Gaussian standard deviation.
MAD_TO_SIGMA = 1.4826
#: Standard error of a median relative to that of a mean (Gaussian data), sqrt(pi / 2).
MEDIAN_SE_FACTOR = 1.2533


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The value where the cumulative weight reaches half the total (midpoint on a tie)."""
    order = np.argsort(values, kind="stable")
    v, w = np.asarray(values, float)[order], np.asarray(weights, float)[order]
    if v.size == 0:
        raise ValueError("weighted median of nothing")
    total = w.sum()
    if not total > 0:
        return float(np.median(v))
    cum = np.cumsum(w)
    half = 0.5 * total
    i = int(np.searchsorted(cum, half))
    if math.isclose(cum[i], half, rel_tol=1e-12) and i + 1 < v.size:
        return float(0.5 * (v[i] + v[i + 1]))
    return float(v[i])


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm into the convolution before it (eval mode only): same outputs,
    fewer kernels to run, which matters for a small network on a CPU."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    def fuse(seq: nn.Module) -> None:
        names = list(seq._modules)
        for a, b in zip(names, names[1:], strict=False):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq._modules[a] = fuse_conv_bn_eval(conv, bn)
                seq._modules[b] = nn.Identity()
        for child in seq.children():
            fuse(child)

    fuse(model)
    return model


@dataclass
class PairPrediction:
    """What the CNN says about one pair of frames.

    `distance_um` = predicted z_focus - z_first_shot. `spread_um` is the robust spread of the
    patches' predictions (weighted MAD scaled to a standard deviation), `stderr_um` the
    resulting uncertainty of the combined value, `confidence` in [0, 1] falls with it.
    """

    distance_um: float
    spread_um: float
    stderr_um: float
    confidence: float
    n_patches: int
    compute_s: float
    patch_distance_um: np.ndarray = field(default_factory=lambda: np.zeros(0))
    patch_std: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def ok(self) -> bool:
        return self.n_patches > 0 and math.isfinite(self.distance_um)


class DiffCNNPredictor:
    """A loaded checkpoint that turns two frames into a distance to focus.

    `weights` is a checkpoint path (default: the shipped weights for `objective`). Inference
    runs on the CPU in eval mode with batch norm folded into the convolutions; it is
    deterministic for a given input. `threads` sets torch's CPU threads during inference
    (restored afterwards): one thread is fastest for a dozen small patches, and far faster
    than two when other work shares the CPU. `tolerance_um` sets the confidence scale:
    confidence is 1 / (1 + (stderr / tolerance)^2), so 0.5 when the combined value is
    uncertain by `tolerance_um`.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        objective: str = DEFAULT_OBJECTIVE,
        tolerance_um: float = 0.2,
        max_patches: int | None = None,
        threads: int | None = 1,
    ) -> None:
        path = Path(weights) if weights is not None else shipped_weights_path(objective)
        model, meta = load_diffcnn(path)
        self.path = path
        self.meta: DiffCNNMeta = meta
        self.spec = meta.spec
        # Batch norm folded into the convolutions and NHWC layout: together about 2x faster
        # on a CPU than the training graph, same outputs.
        self.model = fuse_conv_bn(model).eval().to(memory_format=torch.channels_last)
        self.tolerance_um = float(tolerance_um)
        self.max_patches = max_patches
        self.threads = threads
        # The first forward pass allocates and picks kernels (tens of ms); do it here, not
        # inside the first tile's focus.
        p, n = self.spec.patch_px, max_patches or self.spec.max_patches
        self.predict_patches(np.zeros((n, 2, self.spec.colour_channels, p, p), np.float32))

    def predict_patches(self, pairs: np.ndarray) -> np.ndarray:
        """(N, 2, C, P, P) intensity pairs -> (N,) distances in um."""
        if len(pairs) == 0:
            return np.zeros(0)
        x = torch.from_numpy(network_input(pairs, self.spec))
        x = x.contiguous(memory_format=torch.channels_last)
        with torch_threads(self.threads), torch.inference_mode():
            out = self.model(x).reshape(-1).double().numpy()
        return out * self.meta.y_scale_um + self.meta.y_mean_um

    def warm_up(self) -> None:
        """One inference on a dummy batch, so the first tile does not pay torch's one-off
        set-up (thread pool, kernel selection)."""
        spec = self.spec
        rng = np.random.default_rng(0)
        shape = (2, 2, spec.colour_channels, spec.patch_px, spec.patch_px)
        self.predict_patches(rng.uniform(0.2, 0.8, size=shape).astype(np.float32))

    def predict(
        self, image1: np.ndarray, image2: np.ndarray, pixel_size_um: float | None = None
    ) -> PairPrediction:
        """Distance from the first frame's z to focus; image2 was taken `delta_um` above."""
        t0 = time.perf_counter()
        patches = patch_pairs(image1, image2, self.spec, pixel_size_um, self.max_patches)
        if len(patches) == 0:
            return PairPrediction(math.nan, math.inf, math.inf, 0.0, 0, time.perf_counter() - t0)
        d = self.predict_patches(patches.pairs)
        w = patches.patch_std.astype(float)
        centre = weighted_median(d, w)
        spread = MAD_TO_SIGMA * weighted_median(np.abs(d - centre), w) if d.size > 1 else math.inf
        # Effective number of independent votes under the std weights (Kish).
        n_eff = w.sum() ** 2 / max(float((w**2).sum()), 1e-30)
        stderr = MEDIAN_SE_FACTOR * spread / math.sqrt(max(n_eff, 1.0))
        confidence = (
            1.0 / (1.0 + (stderr / self.tolerance_um) ** 2) if math.isfinite(stderr) else 0.0
        )
        return PairPrediction(
            distance_um=float(centre),
            spread_um=float(spread),
            stderr_um=float(stderr),
            confidence=float(confidence),
            n_patches=int(d.size),
            compute_s=time.perf_counter() - t0,
            patch_distance_um=d,
            patch_std=patches.patch_std,
        )
