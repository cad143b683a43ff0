"""A focus method's settings, generated from its parameter model.

`MethodParamsForm.set_method(name)` lays out one editor per field of
`focus.registry.params_model(name)` (torch-free, also for learned methods), in the model's
order. Every edit is checked with `focus.registry.validate_params`: a bad value marks its field
and `problem` says why in one line (the scan panel shows it on the Start button). `values()`
gives only the parameters the person changed from their defaults, as JSON values for the plan's
`FocusSettings.params`.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from PySide6 import QtCore, QtWidgets

from slidescan.app.gui.param_editors import ParamEditor, editor_for
from slidescan.app.plan import FocusSettings


class MethodParamsForm(QtWidgets.QWidget):
    #: The values changed (edited, or restored by `set_values`); `problem` may have changed.
    edited = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QtWidgets.QFormLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self.method = ""
        self.editors: dict[str, ParamEditor] = {}
        #: Why the parameters cannot be used ('' when they can).
        self.problem = ""

    def set_method(self, name: str) -> None:
        """Editors for method `name`'s parameters, at their defaults."""
        from slidescan.focus.registry import params_model

        while self._layout.rowCount():
            self._layout.removeRow(0)
        self.method = name
        self.editors = {}
        self.problem = ""
        try:
            fields = params_model(name).model_fields
        except Exception as exc:  # a plug-in whose model cannot load: say so, no editors
            self.problem = f"{name}: parameters unavailable ({exc})"
            self._layout.addRow(QtWidgets.QLabel(self.problem))
            return
        for key, field in fields.items():
            editor = editor_for(field)
            editor.edited.connect(self._edited)
            self.editors[key] = editor
            label = QtWidgets.QLabel(key.replace("_", " "))
            label.setToolTip(editor.toolTip())
            self._layout.addRow(label, editor)

    # -- values ------------------------------------------------------------------------------
    def changed(self) -> dict[str, Any]:
        """The parameters whose editor differs from the default (Python values, unchecked)."""
        out = {}
        for key, editor in self.editors.items():
            value = editor.value()
            if value != editor.default:
                out[key] = value
        return out

    def values(self) -> dict[str, Any]:
        """The changed parameters, validated, as JSON values; ValueError (one line) if any
        is bad."""
        if self.problem:
            raise ValueError(self.problem)
        return self._json(self.changed())

    def raw_values(self) -> dict[str, Any]:
        """The changed parameters as JSON, valid or not (kept in the settings as typed)."""
        return {k: self.editors[k].to_json(v) for k, v in self.changed().items()}

    def set_values(self, values: dict[str, Any]) -> None:
        """Show saved values (JSON); unknown names are ignored, bad values get marked."""
        for key, value in values.items():
            editor = self.editors.get(key)
            if editor is not None:
                editor.set_value(editor.from_json(value))
        self._edited()

    # -- checking ----------------------------------------------------------------------------
    def _edited(self) -> None:
        self._check()
        self.edited.emit()

    def _json(self, changed: dict[str, Any]) -> dict[str, Any]:
        from slidescan.focus.registry import validate_params

        validated = validate_params(self.method, changed)
        return validated.model_dump(mode="json", include=set(changed))

    def _problem(self, changed: dict[str, Any]) -> str:
        """'' when `changed` is good for the method and fits in a scan plan, else why not."""
        from slidescan.focus.registry import UnknownMethodError

        try:
            params = self._json(changed)
        except UnknownMethodError as exc:
            return str(exc)
        try:
            FocusSettings(method=self.method, params=params)
        except ValidationError as exc:
            loc = exc.errors()[0]["loc"]
            key = str(loc[1]) if len(loc) > 1 else "?"
            return f"{key}: a scan plan cannot hold {params.get(key)!r}"
        return ""

    def _check(self) -> None:
        changed = self.changed()
        self.problem = self._problem(changed)
        bad = {k: self._problem({k: v}) for k, v in changed.items()} if self.problem else {}
        if self.problem and not any(bad.values()):  # only together: mark every changed one
            bad = dict.fromkeys(changed, self.problem)
        for key, editor in self.editors.items():
            editor.mark(bad.get(key, ""))
