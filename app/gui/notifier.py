"""Where the main window's parts tell the person something: non-blocking dialogs and status-bar
messages, in one place, so each part takes a `Notifier` instead of the whole window.

`last_dialog` is the most recent dialog (tests press its buttons; a person sees it)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6 import QtCore, QtWidgets

from slidescan.app.gui import dialogs


class Notifier(QtCore.QObject):
    def __init__(self, window: QtWidgets.QMainWindow) -> None:
        super().__init__(window)
        self._window = window
        self.last_dialog: QtWidgets.QMessageBox | None = None

    def error(
        self, title: str, text: str, buttons: dict[str, Callable[[], None]] | None = None
    ) -> QtWidgets.QMessageBox:
        """A window-modal error box that never blocks the event loop (`dialogs.show_error`)."""
        self.last_dialog = dialogs.show_error(self._window, title, text, buttons=buttons)
        return self.last_dialog

    def ask(self, title: str, text: str, yes: Callable[[], None]) -> QtWidgets.QMessageBox:
        self.last_dialog = dialogs.ask(self._window, title, text, yes=yes)
        return self.last_dialog

    def status(self, text: str, timeout_ms: int = 0) -> None:
        self._window.statusBar().showMessage(text, timeout_ms)

    def clear_status(self) -> None:
        self._window.statusBar().clearMessage()
