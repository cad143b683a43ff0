"""The focus-method registry: names for the CLI, the GUI and scan plans.

Each entry names the method class and its parameter model. Built-in classical methods are
classes; learned methods are "module:attr" entries imported on first use (torch is slow to
import), listed only when their module can be found, and their parameter models live in small
torch-free modules so a form or `--help` never imports torch. "focusmap" is not a method: it is
a scan strategy (survey points, a fitted surface and an inner method) that the scan engine
builds from `slidescan.focus.surface`.

    params = validate_params("zsweep", {"step_um": 0.5})   # a ZSweepParams, or one-line error
    method = get_method("zsweep", step_um=0.5)             # a fresh ZSweep
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from slidescan.focus.classical import BrentSearch, NoFocus, ZSweep
from slidescan.focus.protocol import FocusError, FocusMethod, FocusParams

#: A metric curve's axis unless the method names its own.
METRIC_AXIS = "focus metric (a.u.)"


class UnknownMethodError(FocusError, ValueError):
    """An unknown focus-method name, or parameters the method does not take."""


Target = type | str  # a class, or "module:attr" imported on first use


@dataclass(frozen=True)
class _Entry:
    method: Target
    params: Target
    summary: str = ""
    #: What a plot's axis calls the method's metric curve (`FocusCurve`, kind "metric").
    curve_axis: str = METRIC_AXIS

    @property
    def modules(self) -> list[str]:
        return [t.split(":", 1)[0] for t in (self.method, self.params) if isinstance(t, str)]

    def available(self) -> bool:
        try:
            return all(importlib.util.find_spec(m) is not None for m in self.modules)
        except (ImportError, ValueError):  # a parent package is missing or broken
            return False


def _load(name: str, target: Target) -> type:
    if not isinstance(target, str):
        return target
    module_name, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownMethodError(
            f"focus method {name!r} is not available ({target}: {exc})"
        ) from exc


_REGISTRY: dict[str, _Entry] = {
    "zsweep": _Entry(ZSweep, ZSweep.Params),
    "brent": _Entry(BrentSearch, BrentSearch.Params),
    "none": _Entry(NoFocus, NoFocus.Params),
    "diffcnn": _Entry(
        "slidescan.focus.learned.diffcnn:DiffCNNFocus",
        "slidescan.focus.learned.diffcnn_params:DiffCNNParams",
        "Learned: a CNN predicts the defocus from the difference of two frames a known step apart.",
    ),
    "tsva": _Entry(
        "slidescan.focus.learned.tsva:TSVAFocus",
        "slidescan.focus.learned.tsva_params:TSVAParams",
        "Learned: two shots either side of the predicted focus fused by a network into the "
        "in-focus image (no search, no move to focus).",
    ),
    "deepfocus": _Entry(
        "slidescan.focus.learned.deepfocus:DeepFocusFocus",
        "slidescan.focus.learned.deepfocus_params:DeepFocusParams",
        "Learned: a CNN reads each patch's blur; a few frames laid over the instrument's "
        "calibrated blur curve give the focus (calibrate first: Focus > Calibrate DeepFocus, or "
        "`slidescan focus calibrate`).",
        curve_axis="DeepFocus blur score (ln px)",
    ),
}


def register(
    name: str,
    method: Target,
    params: Target | None = None,
    summary: str = "",
    curve_axis: str = METRIC_AXIS,
) -> None:
    """Add a method: its class (or "module:attr") and its parameter model (default: the
    class's `Params`; give "module:attr" for a lazily imported method so its form does not
    import it), and what plots call its metric curve. Replaces an entry of the same name (a
    plug-in can override a default)."""
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"method names are letters, digits and '_', got {name!r}")
    for target in (method, params):
        if isinstance(target, str) and ":" not in target:
            raise ValueError(f"a lazy target is 'module:attr', got {target!r}")
    if params is None:
        if isinstance(method, str):
            raise ValueError("a lazily imported method needs its parameter model named too")
        params = method.Params
    _REGISTRY[name] = _Entry(method, params, summary, curve_axis)


def curve_axis(name: str) -> str:
    """What a plot calls method `name`'s metric curve; the generic name for a method not
    known here (a scan file from another installation still plots)."""
    entry = _REGISTRY.get(name)
    return entry.curve_axis if entry is not None else METRIC_AXIS


def available_methods() -> list[str]:
    """Names of the methods that can be used here, built-ins first."""
    return [name for name, entry in _REGISTRY.items() if entry.available()]


def _entry(name: str) -> _Entry:
    entry = _REGISTRY.get(name)
    if entry is None or not entry.available():
        valid = ", ".join(available_methods())
        raise UnknownMethodError(f"unknown focus method {name!r}; available: {valid}")
    return entry


def method_class(name: str) -> type[FocusMethod]:
    """The class of method `name` (imports a learned method's module)."""
    cls = _load(name, _entry(name).method)
    if not (isinstance(cls, type) and issubclass(cls, FocusMethod)):
        raise UnknownMethodError(f"{cls!r} is not a focus method (subclass FocusMethod)")
    return cls


def params_model(name: str) -> type[FocusParams]:
    """The parameter model of method `name`, without importing the method itself."""
    model = _load(name, _entry(name).params)
    if not (isinstance(model, type) and issubclass(model, FocusParams)):
        raise UnknownMethodError(f"{model!r} is not a focus parameter model (FocusParams)")
    return model


def validate_params(name: str, params: dict[str, Any]) -> FocusParams:
    """`params` checked against method `name`'s model; one line naming the parameter and the
    problem (or the valid names) otherwise."""
    model = params_model(name)
    unknown = sorted(set(params) - set(model.model_fields))
    if unknown:
        valid = ", ".join(model.model_fields) or "none"
        raise UnknownMethodError(
            f"focus method {name!r} has no parameter {', '.join(map(repr, unknown))}; "
            f"valid parameters: {valid}"
        )
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise UnknownMethodError(
            f"bad parameter {where} for focus method {name!r}: "
            f"{first['msg'].removeprefix('Value error, ')}{more}"
        ) from None


def get_method(name: str, **params: Any) -> FocusMethod:
    """A new instance of method `name` with validated `params`; a clear one-line error for an
    unknown name, an unknown parameter or a bad value."""
    validated = validate_params(name, params)
    cls = method_class(name)
    try:
        return cls(validated)
    except (TypeError, ValueError) as exc:
        raise UnknownMethodError(f"bad parameters for focus method {name!r}: {exc}") from exc


def describe(name: str) -> str:
    """A few lines for --help and the GUI: what the method does and its parameters."""
    entry = _entry(name)
    if isinstance(entry.method, str):
        first = entry.summary
    else:
        doc = entry.method.__doc__ or entry.summary
        first = " ".join(doc.strip().split("\n\n", 1)[0].split()) if doc else ""
    lines = [f"{name}: {first}"]
    model = params_model(name)
    if model.model_fields:
        parts = [f"{key}={field.default!r}" for key, field in model.model_fields.items()]
        lines.append("parameters: " + ", ".join(parts))
    return "\n".join(lines)
