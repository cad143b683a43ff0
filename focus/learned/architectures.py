"""The networks learned methods are built from, by name: a checkpoint names its architecture
and its config (keyword arguments), and `build` makes the module.

Adding a network is one entry here (TSVA's U-Net, DeepFocus's sharpness net come next), so the
checkpoint format never needs to know the classes.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from slidescan.focus.protocol import FocusError

#: name -> "module:class" (imported when built, so listing names costs nothing)
ARCHITECTURES: dict[str, str] = {
    "mobilenetv2": "slidescan.focus.learned.mobilenet:MobileNetV2",
    "two_shot_unet": "slidescan.focus.learned.unet:TwoShotUNet",
}


def register_architecture(name: str, target: str) -> None:
    """Make `name` buildable: `target` is "module:class" of an `nn.Module` whose constructor
    takes the checkpoint's architecture config as keyword arguments."""
    if ":" not in target:
        raise ValueError(f"an architecture target is 'module:class', got {target!r}")
    ARCHITECTURES[name] = target


def build(name: str, config: dict[str, Any]) -> nn.Module:
    """A freshly initialised `name` network with `config`; one-line `FocusError` otherwise."""
    target = ARCHITECTURES.get(name)
    if target is None:
        known = ", ".join(sorted(ARCHITECTURES))
        raise FocusError(f"unknown network architecture {name!r}; known: {known}")
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    try:
        return cls(**config)
    except TypeError as exc:
        raise FocusError(f"architecture {name!r} does not take {sorted(config)}: {exc}") from None
