"""The focus-method registry: names for the CLI, the GUI and scan plans.

Built-in classical methods are always there. Learned methods are entries "module:attr" that are
imported on first use (torch is slow to import), and listed only when their module can be
found. "focusmap" is not a method: it is a scan strategy (survey points, a fitted surface and an
inner method) that the scan engine builds from `slidescan.focus.surface`.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from dataclasses import dataclass
from typing import Any

from slidescan.focus.classical import BrentSearch, NoFocus, ZSweep
from slidescan.focus.protocol import FocusError, FocusMethod


class UnknownMethodError(FocusError, ValueError):
    """An unknown focus-method name, or parameters the method does not take."""


@dataclass(frozen=True)
class _Entry:
    target: type | str  # the class, or "module:attr" imported on first use
    summary: str = ""

    @property
    def module(self) -> str | None:
        return self.target.split(":", 1)[0] if isinstance(self.target, str) else None

    def available(self) -> bool:
        if self.module is None:
            return True
        try:
            return importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):  # a parent package is missing or broken
            return False

    def load(self, name: str) -> type:
        if not isinstance(self.target, str):
            return self.target
        module_name, _, attr = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
            return getattr(module, attr)
        except (ImportError, AttributeError) as exc:
            raise UnknownMethodError(
                f"focus method {name!r} is not available ({self.target}: {exc})"
            ) from exc


_REGISTRY: dict[str, _Entry] = {
    "zsweep": _Entry(ZSweep),
    "brent": _Entry(BrentSearch),
    "none": _Entry(NoFocus),
    "diffcnn": _Entry(
        "slidescan.focus.learned.diffcnn:DiffCNNFocus",
        "Learned: a CNN predicts the defocus from the difference of two frames a known step apart.",
    ),
}


def register(name: str, target: type | str, summary: str = "") -> None:
    """Add a method: a class, or "module:attr" imported on first use. Replaces an entry of the
    same name (so a plug-in can override a default)."""
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"method names are letters, digits and '_', got {name!r}")
    if isinstance(target, str) and ":" not in target:
        raise ValueError(f"a lazy target is 'module:attr', got {target!r}")
    _REGISTRY[name] = _Entry(target, summary)


def available_methods() -> list[str]:
    """Names of the methods that can be used here, built-ins first."""
    return [name for name, entry in _REGISTRY.items() if entry.available()]


def _entry(name: str) -> _Entry:
    entry = _REGISTRY.get(name)
    if entry is None or not entry.available():
        valid = ", ".join(available_methods())
        raise UnknownMethodError(f"unknown focus method {name!r}; available: {valid}")
    return entry


def _parameters(cls: type) -> dict[str, inspect.Parameter]:
    sig = inspect.signature(cls.__init__)
    return {
        p.name: p
        for p in list(sig.parameters.values())[1:]
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def get_method(name: str, **params: Any) -> FocusMethod:
    """A new instance of method `name` with `params`; a clear one-line error for an unknown
    name, an unknown parameter or a bad value."""
    cls = _entry(name).load(name)
    accepted = _parameters(cls)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        valid = ", ".join(accepted) or "none"
        raise UnknownMethodError(
            f"focus method {name!r} has no parameter {', '.join(map(repr, unknown))}; "
            f"valid parameters: {valid}"
        )
    try:
        method = cls(**params)
    except (TypeError, ValueError) as exc:
        raise UnknownMethodError(f"bad parameters for focus method {name!r}: {exc}") from exc
    if not isinstance(method, FocusMethod):
        raise UnknownMethodError(f"{cls.__name__} is not a focus method (needs name and focus())")
    return method


def describe(name: str) -> str:
    """A few lines for --help and the GUI: what the method does and its parameters."""
    entry = _entry(name)
    if isinstance(entry.target, str) and entry.summary:
        # Do not import a learned method (and torch) just to describe it.
        return f"{name}: {entry.summary}"
    cls = entry.load(name)
    doc = inspect.getdoc(cls) or entry.summary
    first = doc.split("\n\n", 1)[0].replace("\n", " ") if doc else ""
    lines = [f"{name}: {first}"]
    params = _parameters(cls)
    if params:
        parts = [
            p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
            for p in params.values()
        ]
        lines.append("parameters: " + ", ".join(parts))
    return "\n".join(lines)
