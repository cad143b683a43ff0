"""Start the desktop application: QApplication, logging, the crash guard, first-run wizard.

`main()` is what `slidescan gui` (and `slidescan` with no subcommand) runs. On the very first
start (no saved profile and no user profiles) the hardware wizard opens with the simulator
preselected; afterwards the last profile is connected. An exception escaping any Qt slot is
logged and shown in a dialog instead of killing the program.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Sequence
from types import TracebackType

from PySide6 import QtCore, QtWidgets

from slidescan.app import __version__
from slidescan.app.gui import dialogs
from slidescan.app.gui.logs import setup_logging

log = logging.getLogger(__name__)


def ensure_app(argv: Sequence[str] | None = None) -> QtWidgets.QApplication:
    app = QtWidgets.QApplication.instance()
    if app is None:
        QtCore.QCoreApplication.setOrganizationName("slidescan")
        QtCore.QCoreApplication.setApplicationName("slidescan")
        QtCore.QCoreApplication.setApplicationVersion(__version__)
        app = QtWidgets.QApplication(list(argv or sys.argv[:1]))
        app.setWindowIcon(dialogs.app_icon())
    return app  # type: ignore[return-value]


def install_excepthook() -> None:
    """Log an uncaught exception and show it, rather than letting Qt abort."""

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        text = "".join(traceback.format_exception(kind, exc, tb))
        log.error("uncaught exception:\n%s", text)
        if issubclass(kind, KeyboardInterrupt):
            QtWidgets.QApplication.quit()
            return
        parent = QtWidgets.QApplication.activeWindow()
        dialogs.show_error(
            parent,
            "Unexpected error",
            f"{kind.__name__}: {exc}\n\nThe program keeps running; details are in the log.",
            details=text,
        )

    sys.excepthook = hook


def first_start(settings: QtCore.QSettings) -> bool:
    """True when no profile was ever chosen and the user has saved none."""
    if settings.value("profile/last"):
        return False
    try:
        from slidescan.hardware.profile import user_profile_dir

        folder = user_profile_dir()
        return not (folder.is_dir() and any(folder.glob("*.toml")))
    except Exception:  # profiles unavailable: treat as a first start
        return True


def create_main_window(
    profile: str | None = None, wizard: bool = False, review: str | None = None
):  # -> MainWindow (imported lazily: pyqtgraph is heavy)
    from slidescan.app.gui.main_window import MainWindow

    window = MainWindow()
    if wizard or (profile is None and first_start(window.settings)):
        QtCore.QTimer.singleShot(0, lambda: window.run_wizard(first_start=not wizard))
    else:
        name = profile or str(window.settings.value("profile/last", "simulator"))
        QtCore.QTimer.singleShot(0, lambda: window.connect_profile(name))
    if review:
        QtCore.QTimer.singleShot(0, lambda: window.open_review(review))
    return window


def main(
    argv: Sequence[str] | None = None,
    profile: str | None = None,
    wizard: bool = False,
    review: str | None = None,
) -> int:
    log_path = setup_logging()
    app = ensure_app(argv)
    install_excepthook()
    log.info("slidescan %s starting (log %s)", __version__, log_path)
    window = create_main_window(profile, wizard, review)
    window.show()
    return int(app.exec())
