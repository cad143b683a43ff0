"""DiffCNN checkpoints: the weights plus everything inference needs to use them.

A checkpoint is a `torch.save` dict of plain data (loaded with `weights_only=True`, so a file
cannot run code):

    format: "slidescan-diffcnn", version: 1
    state_dict: the network's tensors
    meta: architecture (in_channels, width_mult, last_channels), InputSpec (patch size,
          binning, pixel size, colour), optics (objective, na, delta_um, offset_um),
          target normalisation (y_mean_um, y_scale_um), trained range (y_min_um, y_max_um),
          training provenance (command, seed, metrics)

Shipped weights live in `slidescan/resources/models/`, one file per objective.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from slidescan.focus.learned.mobilenet import MobileNetV2
from slidescan.focus.learned.preprocess import InputSpec
from slidescan.focus.protocol import FocusError

FORMAT = "slidescan-diffcnn"
VERSION = 1
DEFAULT_OBJECTIVE = "20x/0.75"


class DiffCNNMeta(BaseModel):
    """What a checkpoint says about itself. Unknown keys are kept (forward compatible)."""

    model_config = ConfigDict(extra="allow")

    # architecture
    in_channels: int
    width_mult: float
    last_channels: int
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
    # target
    y_mean_um: float
    y_scale_um: float = Field(gt=0)
    y_min_um: float
    y_max_um: float
    # provenance
    trained: dict[str, Any] = Field(default_factory=dict)

    @property
    def spec(self) -> InputSpec:
        return InputSpec.from_dict(self.input_spec)


def build_model(meta: DiffCNNMeta) -> MobileNetV2:
    return MobileNetV2(
        in_channels=meta.in_channels,
        num_outputs=1,
        width_mult=meta.width_mult,
        last_channels=meta.last_channels,
    )


def save_checkpoint(path: str | Path, model: torch.nn.Module, meta: DiffCNNMeta) -> Path:
    """Write atomically (temp file + rename) so an interrupted save leaves the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    # Plain JSON types only (numpy scalars, str subclasses such as torch's version string
    # would not load with weights_only=True).
    plain = json.loads(json.dumps(meta.model_dump(mode="json"), default=_plain))
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "version": VERSION, "state_dict": state, "meta": plain}, tmp)
    tmp.replace(path)
    return path


def _plain(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def load_checkpoint(path: str | Path) -> tuple[MobileNetV2, DiffCNNMeta]:
    """Load a checkpoint into an eval-mode CPU model; any problem is one-line `FocusError`."""
    path = Path(path)
    if not path.is_file():
        raise FocusError(f"diffcnn weights not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip, pickle, EOF, runtime errors: all mean the same to a user
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FocusError(
            f"diffcnn weights {path} are unreadable or corrupt ({reason[:120]})"
        ) from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise FocusError(f"{path} is not a slidescan diffcnn checkpoint")
    if int(blob.get("version", -1)) > VERSION:
        raise FocusError(
            f"{path} has checkpoint version {blob.get('version')}; this slidescan reads <= {VERSION}"
        )
    try:
        meta = DiffCNNMeta.model_validate(blob["meta"])
        model = build_model(meta)
        model.load_state_dict(blob["state_dict"], strict=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FocusError(
            f"diffcnn checkpoint {path} does not match the model ({reason[:120]})"
        ) from None
    return model.eval(), meta


def objective_slug(objective: str) -> str:
    """'20x/0.75' -> '20x_075' (file-name safe)."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", objective.replace("0.", "0")).strip("_").lower()


def shipped_weights_path(objective: str = DEFAULT_OBJECTIVE) -> Path:
    """Path of the shipped weights for `objective` (may not exist: `load_checkpoint` says so)."""
    root = importlib.resources.files("slidescan.resources") / "models"
    return Path(str(root / f"diffcnn_{objective_slug(objective)}.pt"))
