"""Dialogs: errors that never block the event loop, the About box, the shortcut list."""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6 import QtCore, QtGui, QtWidgets

from slidescan.app import __version__

log = logging.getLogger(__name__)


def app_icon() -> QtGui.QIcon:
    from importlib.resources import files

    icons = files("slidescan.resources") / "icons"
    icon = QtGui.QIcon()
    for name in ("slidescan.svg", "slidescan.png"):
        path = icons / name
        if path.is_file():
            icon.addFile(str(path))
    return icon


def show_error(
    parent: QtWidgets.QWidget | None,
    title: str,
    text: str,
    details: str = "",
    buttons: dict[str, Callable[[], None]] | None = None,
) -> QtWidgets.QMessageBox:
    """A window-modal error box opened with `open()` (not `exec()`), so scans and timers keep
    running behind it. `buttons` maps extra button labels to what they do."""
    log.error("%s: %s", title, text)
    box = QtWidgets.QMessageBox(parent)
    box.setIcon(QtWidgets.QMessageBox.Icon.Warning)
    box.setWindowTitle(title)
    box.setText(text)
    if details:
        box.setDetailedText(details)
    actions: dict[QtWidgets.QAbstractButton, Callable[[], None]] = {}
    for label, action in (buttons or {}).items():
        b = box.addButton(label, QtWidgets.QMessageBox.ButtonRole.ActionRole)
        actions[b] = action
    box.addButton(QtWidgets.QMessageBox.StandardButton.Close)
    box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)

    def done(_: int) -> None:
        action = actions.get(box.clickedButton())
        if action is not None:
            action()

    box.finished.connect(done)
    box.open()
    return box


def ask(
    parent: QtWidgets.QWidget | None, title: str, text: str, yes: Callable[[], None]
) -> QtWidgets.QMessageBox:
    """A yes/no question opened with `open()`; `yes` runs when the person agrees."""
    box = QtWidgets.QMessageBox(parent)
    box.setIcon(QtWidgets.QMessageBox.Icon.Question)
    box.setWindowTitle(title)
    box.setText(text)
    box.setStandardButtons(
        QtWidgets.QMessageBox.StandardButton.Yes | QtWidgets.QMessageBox.StandardButton.No
    )
    box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
    box.finished.connect(lambda r: yes() if r == QtWidgets.QMessageBox.StandardButton.Yes else None)
    box.open()
    return box


ABOUT = """<h3>slidescan {version}</h3>
<p>Whole-slide-imaging scanner with learned autofocus, crash-safe HDF5 scans and a physically
grounded optical simulator.</p>
<p>Draw a region on the tile map (or choose rows × columns around the stage), press
<b>Start scan</b>, and review the tiles with <b>File ▸ Open scan for review</b>.</p>
<p>Simulator specimens can use real tissue images from the OpenSlide freely-distributable test
data. Built with PySide6 (Qt) and pyqtgraph. MIT licence.</p>"""


def show_about(parent: QtWidgets.QWidget | None) -> None:
    QtWidgets.QMessageBox.about(parent, "About slidescan", ABOUT.format(version=__version__))


def shortcuts_table(actions: list[QtGui.QAction]) -> str:
    rows = []
    for a in actions:
        keys = ", ".join(
            s.toString(QtGui.QKeySequence.SequenceFormat.NativeText) for s in a.shortcuts()
        )
        if keys:
            rows.append(f"<tr><td><b>{keys}</b></td><td>{a.text().replace('&', '')}</td></tr>")
    return "<table cellspacing='4'>" + "".join(rows) + "</table>"


def show_shortcuts(parent: QtWidgets.QWidget | None, actions: list[QtGui.QAction]) -> None:
    box = QtWidgets.QMessageBox(parent)
    box.setWindowTitle("Keyboard shortcuts")
    box.setTextFormat(QtCore.Qt.TextFormat.RichText)
    box.setText(shortcuts_table(actions))
    box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
