"""One checkpoint format for every learned focus method.

A checkpoint is a `torch.save` dict of plain data, loaded with `weights_only=True` (a file
cannot run code):

    format        "slidescan-model"
    version       1
    method        the focus method it serves ("diffcnn", later "tsva", "deepfocus")
    architecture  {"name": "mobilenetv2", "config": {keyword arguments of the network}}
    state_dict    the network's tensors
    checksum      SHA-256 over the tensors (names, dtypes, shapes, bytes, in name order)
    normalisation how inputs and outputs are scaled (the method's own keys)
    meta          what the method needs to use the network (optics, acquisition geometry,
                  input spec, trained range: the method's own keys)
    trained       provenance: command, seed, data, metrics, history
    card          the model card (markdown), also written beside shipped weights as NAME.md

A missing, unreadable, truncated or tampered file, another method's checkpoint, an unknown
architecture or weights that do not fit it: each is a one-line `FocusError`.

Files written by slidescan 0.1's diffcnn ("slidescan-diffcnn", version 1) are read and upgraded
in memory (`_from_diffcnn_v1`); they carry no checksum.

Shipped weights live in `slidescan/resources/models/<method>_<objective slug>.pt`.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slidescan.focus.learned import architectures
from slidescan.focus.naming import objective_slug
from slidescan.focus.protocol import FocusError

FORMAT = "slidescan-model"
VERSION = 1
LEGACY_DIFFCNN_FORMAT = "slidescan-diffcnn"


@dataclass
class Checkpoint:
    """A learned model as stored: everything but the live network."""

    method: str
    architecture: str
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    normalisation: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    trained: dict[str, Any] = field(default_factory=dict)
    card: str = ""

    @classmethod
    def of(
        cls,
        method: str,
        architecture: str,
        config: dict[str, Any],
        model: nn.Module,
        **parts: Any,
    ) -> Checkpoint:
        """A checkpoint of `model` (its tensors copied to the CPU)."""
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return cls(method, architecture, dict(config), state, **parts)

    @property
    def checksum(self) -> str:
        return state_checksum(self.state_dict)

    def build(self) -> nn.Module:
        """The network with these weights, in eval mode on the CPU."""
        model = architectures.build(self.architecture, self.config)
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as exc:
            raise FocusError(
                f"{self.method} weights do not fit a {self.architecture} with {self.config} "
                f"({_first_line(exc)})"
            ) from None
        return model.eval()


def state_checksum(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write atomically (temp file + rename): an interrupted save leaves the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": FORMAT,
        "version": VERSION,
        "method": ckpt.method,
        "architecture": {"name": ckpt.architecture, "config": _plain(ckpt.config)},
        "state_dict": ckpt.state_dict,
        "checksum": ckpt.checksum,
        "normalisation": _plain(ckpt.normalisation),
        "meta": _plain(ckpt.meta),
        "trained": _plain(ckpt.trained),
        "card": str(ckpt.card),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path, method: str) -> Checkpoint:
    """Read the checkpoint at `path` for `method`; any problem is a one-line `FocusError`."""
    path = Path(path)
    if not path.is_file():
        raise FocusError(
            f"{method} weights not found: {path} (make them with `slidescan train {method}`, "
            "or give weights=FILE)"
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip, pickle, EOF, runtime errors: all mean the same to a user
        raise FocusError(
            f"{method} weights {path} are unreadable or corrupt ({_first_line(exc)[:120]})"
        ) from None
    if isinstance(blob, dict) and blob.get("format") == LEGACY_DIFFCNN_FORMAT:
        ckpt = _from_diffcnn_v1(blob, path)
    elif isinstance(blob, dict) and blob.get("format") == FORMAT:
        ckpt = _from_blob(blob, path)
    else:
        raise FocusError(f"{path} is not a slidescan model checkpoint")
    if ckpt.method != method:
        raise FocusError(f"{path} holds a {ckpt.method!r} model, not {method!r}")
    return ckpt


def _from_blob(blob: dict[str, Any], path: Path) -> Checkpoint:
    if int(blob.get("version", -1)) > VERSION:
        raise FocusError(
            f"{path} has checkpoint version {blob.get('version')}; this slidescan reads <= {VERSION}"
        )
    try:
        arch = blob["architecture"]
        ckpt = Checkpoint(
            method=str(blob["method"]),
            architecture=str(arch["name"]),
            config=dict(arch["config"]),
            state_dict=dict(blob["state_dict"]),
            normalisation=dict(blob.get("normalisation") or {}),
            meta=dict(blob.get("meta") or {}),
            trained=dict(blob.get("trained") or {}),
            card=str(blob.get("card") or ""),
        )
        stored = str(blob["checksum"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FocusError(f"{path} is an incomplete model checkpoint (missing {exc})") from None
    if ckpt.checksum != stored:
        raise FocusError(f"{path}: the weights do not match their checksum (the file is damaged)")
    return ckpt


def _from_diffcnn_v1(blob: dict[str, Any], path: Path) -> Checkpoint:
    """A slidescan 0.1 diffcnn file: its meta held the architecture and the normalisation."""
    if int(blob.get("version", -1)) > 1:
        raise FocusError(f"{path} has diffcnn checkpoint version {blob.get('version')}")
    try:
        meta = dict(blob["meta"])
        config = {
            "in_channels": int(meta.pop("in_channels")),
            "num_outputs": 1,
            "width_mult": float(meta.pop("width_mult")),
            "last_channels": int(meta.pop("last_channels")),
        }
        normalisation = {k: float(meta.pop(k)) for k in ("y_mean_um", "y_scale_um")}
        trained = dict(meta.pop("trained", {}) or {})
        state = dict(blob["state_dict"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FocusError(f"diffcnn checkpoint {path} is incomplete (missing {exc})") from None
    return Checkpoint("diffcnn", "mobilenetv2", config, state, normalisation, meta, trained)


def shipped_path(method: str, objective: str) -> Path:
    """Where the shipped weights of `method` for `objective` are (the file may not exist)."""
    root = importlib.resources.files("slidescan.resources") / "models"
    return Path(str(root / f"{method}_{objective_slug(objective)}.pt"))


def _plain(obj: Any) -> Any:
    """Plain JSON types only: numpy scalars, tuples and str subclasses (torch's version string)
    would not load with weights_only=True."""
    return json.loads(json.dumps(obj, default=_json_default))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
