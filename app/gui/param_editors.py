"""One editor per focus-method parameter, chosen from the parameter model's field.

`editor_for(field)` reads a pydantic field of a `FocusParams` model: bool -> check box,
int / float -> spin box whose range is the field's ge/gt/le/lt constraints, Literal -> combo
box, str / Path / tuple[float, ...] -> line edit (Path with a browse button). A field that
takes None (`X | None`) gets an "auto" choice: None means "the method decides". The field's
`description` is the tooltip.

Every editor has `value()` (Python, possibly invalid: the registry validates it),
`set_value(v)` (quietly: no `edited` emitted), `to_json(v)` and `from_json(v)`, and `mark()` to
show a problem.
"""

from __future__ import annotations

import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic.fields import FieldInfo
from PySide6 import QtCore, QtWidgets

INT_LIMIT = 2**31 - 1  # QSpinBox holds a C int
FLOAT_LIMIT = 1e9
DECIMALS = 3
AUTO = "auto"

_BAD_STYLE = "background-color: #5c1f1f;"


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without None, whether None is allowed)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(annotation))
        return (args[0] if len(args) == 1 else annotation), nullable
    return annotation, False


def _bounds(field: FieldInfo, step: float) -> tuple[float, float]:
    """The closed range an editor allows: ge/le as they are, gt/lt one step inside."""
    lo, hi = -math.inf, math.inf
    for m in field.metadata:
        if isinstance(m, annotated_types.Ge):
            lo = max(lo, float(m.ge))
        elif isinstance(m, annotated_types.Gt):
            lo = max(lo, float(m.gt) + step)
        elif isinstance(m, annotated_types.Le):
            hi = min(hi, float(m.le))
        elif isinstance(m, annotated_types.Lt):
            hi = min(hi, float(m.lt) - step)
    return lo, hi


class ParamEditor(QtWidgets.QWidget):
    """Base of the editors: a row of widgets with a value."""

    edited = QtCore.Signal()

    def __init__(self, default: Any, nullable: bool) -> None:
        super().__init__()
        self.default = default
        self.nullable = nullable
        self._row = QtWidgets.QHBoxLayout(self)
        self._row.setContentsMargins(0, 0, 0, 0)
        self._main: QtWidgets.QWidget | None = None
        self._tip = ""

    def value(self) -> Any:
        raise NotImplementedError

    def _set(self, value: Any) -> None:
        raise NotImplementedError

    def set_value(self, value: Any) -> None:
        """Show `value` without emitting `edited` (restoring settings is no edit)."""
        blockers = [QtCore.QSignalBlocker(w) for w in self.findChildren(QtWidgets.QWidget)]
        try:
            self._set(value)
        finally:
            del blockers

    def to_json(self, value: Any) -> Any:
        return value

    def from_json(self, value: Any) -> Any:
        return value

    def set_tip(self, tip: str) -> None:
        self._tip = tip
        self.setToolTip(tip)

    def mark(self, problem: str) -> None:
        """Show `problem` on the editor ('' clears it)."""
        if self._main is not None:
            self._main.setStyleSheet(_BAD_STYLE if problem else "")
        self.setToolTip(f"{problem}\n\n{self._tip}" if problem else self._tip)
        self.setProperty("problem", problem)

    @property
    def problem(self) -> str:
        return str(self.property("problem") or "")


class BoolEditor(ParamEditor):
    def __init__(self, default: Any, nullable: bool) -> None:
        super().__init__(default, nullable)
        self.box = QtWidgets.QCheckBox()
        self.box.toggled.connect(self.edited)
        self._row.addWidget(self.box)
        self._row.addStretch(1)
        self._main = self.box
        self._set(default)

    def value(self) -> bool:
        return self.box.isChecked()

    def _set(self, value: Any) -> None:
        self.box.setChecked(bool(value))


class ChoiceEditor(ParamEditor):
    """A Literal's values (and "auto" for None)."""

    def __init__(self, default: Any, nullable: bool, choices: tuple[Any, ...]) -> None:
        super().__init__(default, nullable)
        self.combo = QtWidgets.QComboBox()
        if nullable:
            self.combo.addItem(AUTO, None)
        for c in choices:
            self.combo.addItem(str(c), c)
        self.combo.currentIndexChanged.connect(self.edited)
        self._row.addWidget(self.combo, 1)
        self._main = self.combo
        self._set(default)

    def value(self) -> Any:
        return self.combo.currentData()

    def _set(self, value: Any) -> None:
        for i in range(self.combo.count()):
            if self.combo.itemData(i) == value:
                self.combo.setCurrentIndex(i)
                return


class NumberEditor(ParamEditor):
    """A spin box over the field's allowed range; with None allowed, an "auto" check box."""

    def __init__(self, default: Any, nullable: bool, is_int: bool, field: FieldInfo) -> None:
        super().__init__(default, nullable)
        self.is_int = is_int
        step = 1.0 if is_int else 10.0**-DECIMALS
        lo, hi = _bounds(field, step)
        limit = INT_LIMIT if is_int else FLOAT_LIMIT
        lo, hi = max(lo, -limit), min(hi, limit)
        if is_int:
            self.spin: QtWidgets.QSpinBox | QtWidgets.QDoubleSpinBox = QtWidgets.QSpinBox()
            self.spin.setRange(int(lo), int(hi))
        else:
            self.spin = QtWidgets.QDoubleSpinBox()
            self.spin.setDecimals(DECIMALS)
            self.spin.setRange(lo, hi)
            self.spin.setSingleStep(self._step(default, lo, hi))
        self.spin.setKeyboardTracking(False)
        self.spin.valueChanged.connect(self.edited)
        self._row.addWidget(self.spin, 1)
        self._main = self.spin
        self.auto: QtWidgets.QCheckBox | None = None
        if nullable:
            self.auto = QtWidgets.QCheckBox(AUTO)
            self.auto.setToolTip("let the method choose (its documented default)")
            self.auto.toggled.connect(self._auto_toggled)
            self._row.addWidget(self.auto)
        # a value to start from when "auto" is unticked: 1 where the range allows it
        self._fallback = min(max(1.0, lo), hi)
        self._set(default)

    @staticmethod
    def _step(default: Any, lo: float, hi: float) -> float:
        ref = abs(float(default)) if isinstance(default, int | float) and default else 1.0
        return max(10.0**-DECIMALS, 10.0 ** math.floor(math.log10(ref)) / 10.0)

    def _auto_toggled(self, on: bool) -> None:
        self._show_auto(on)
        self.edited.emit()

    def _show_auto(self, on: bool) -> None:
        """With "auto" ticked the spin box is off and shows no number (none is used)."""
        self.spin.setEnabled(not on)
        if on:
            self.spin.clear()
        else:
            self.spin.lineEdit().setText(self.spin.textFromValue(self.spin.value()))

    def value(self) -> int | float | None:
        if self.auto is not None and self.auto.isChecked():
            return None
        return int(self.spin.value()) if self.is_int else float(self.spin.value())

    def _set(self, value: Any) -> None:
        number = self._fallback if value is None else value
        try:
            number = float(number)
        except (TypeError, ValueError):
            return
        if math.isfinite(number):
            self.spin.setValue(int(number) if self.is_int else number)
        if self.auto is not None:
            self.auto.setChecked(value is None)
            self._show_auto(value is None)


class TextEditor(ParamEditor):
    """str, Path or tuple[float, ...] as text; empty means None where None is allowed."""

    def __init__(self, default: Any, nullable: bool, kind: Literal["str", "path", "tuple"]) -> None:
        super().__init__(default, nullable)
        self.kind = kind
        self.edit = QtWidgets.QLineEdit()
        self.edit.setPlaceholderText(AUTO if nullable else "")
        self.edit.editingFinished.connect(self.edited)
        self._row.addWidget(self.edit, 1)
        self._main = self.edit
        if kind == "path":
            browse = QtWidgets.QToolButton()
            browse.setText("…")
            browse.setToolTip("choose a file")
            browse.clicked.connect(self._browse)
            self._row.addWidget(browse)
        self._set(default)

    def value(self) -> Any:
        text = self.edit.text().strip()
        if not text:
            return None if self.nullable else ("" if self.kind == "str" else self.default)
        if self.kind == "path":
            return Path(text).expanduser()
        if self.kind == "tuple":
            try:
                return tuple(float(v) for v in text.replace(";", ",").split(",") if v.strip())
            except ValueError:
                return text  # not numbers: the parameter model says what is wrong
        return text

    def _set(self, value: Any) -> None:
        if value is None:
            self.edit.setText("")
        elif self.kind == "tuple" and isinstance(value, list | tuple):
            self.edit.setText(", ".join(f"{float(v):g}" for v in value))
        else:
            self.edit.setText(str(value))

    def to_json(self, value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, tuple):
            return list(value)
        return value

    def from_json(self, value: Any) -> Any:
        if self.kind == "tuple" and isinstance(value, list):
            return tuple(value)
        return value

    def _browse(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Choose a file", self.edit.text())
        if path:
            self.edit.setText(path)
            self.edited.emit()


def editor_for(field: FieldInfo) -> ParamEditor:
    """The editor that fits `field`'s type (see the module docstring)."""
    base, nullable = _unwrap(field.annotation)
    default = field.default
    origin = typing.get_origin(base)
    if origin is Literal:
        editor: ParamEditor = ChoiceEditor(default, nullable, typing.get_args(base))
    elif base is bool:
        editor = (
            ChoiceEditor(default, True, (True, False)) if nullable else BoolEditor(default, False)
        )
    elif base is int or base is float:
        editor = NumberEditor(default, nullable, base is int, field)
    elif origin is tuple:
        editor = TextEditor(default, nullable, "tuple")
    elif isinstance(base, type) and issubclass(base, Path):
        editor = TextEditor(default, nullable, "path")
    else:
        editor = TextEditor(default, nullable, "str")
    tip = field.description or ""
    shown = "auto" if default is None else repr(default)
    editor.set_tip(f"{tip} (default {shown})" if tip else f"default {shown}")
    return editor
