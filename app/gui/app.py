"""Start the desktop application: QApplication, logging, the crash guard, first-run wizard.

`main()` is what `slidescan gui` (and `slidescan` with no subcommand) runs. On the very first
start (no saved profile and no user profiles) the hardware wizard opens with the simulator
preselected; afterwards the last profile is connected. An exception escaping any Qt slot or
thread is logged, written to a crash report in the log folder (app/crash_report.py) and shown
in a dialog that says where the report is, instead of killing the program; one that stops the
start-up itself is reported the same way and ends it with exit code 1.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from PySide6 import QtCore, QtWidgets

from slidescan.app import __version__
from slidescan.app.crash_report import write_crash_report
from slidescan.app.gui import dialogs
from slidescan.app.gui.logs import LOG_NAME, log_dir, setup_logging

log = logging.getLogger(__name__)

#: What a crash report says of the hardware: () -> (profile name, HardwareProfile or None).
ProfileSource = Callable[[], tuple[str, Any]]


class NoDisplayError(RuntimeError):
    """Qt has no screen to open a window on (it would abort the process)."""


def check_display(environ: dict[str, str] | None = None, platform: str = sys.platform) -> None:
    """On Linux, X11 needs DISPLAY and Wayland WAYLAND_DISPLAY; without them Qt's platform
    plugin aborts the process with no way to catch it. Raise a one-line `NoDisplayError`."""
    from slidescan.app.gui.qt_libraries import qt_platform

    env = os.environ if environ is None else environ
    if not platform.startswith("linux"):
        return
    qpa = qt_platform(env)
    if (qpa == "xcb" and not env.get("DISPLAY")) or (
        qpa == "wayland" and not env.get("WAYLAND_DISPLAY")
    ):
        raise NoDisplayError(
            f"no screen to show the window on ({qpa}: "
            f"{'DISPLAY' if qpa == 'xcb' else 'WAYLAND_DISPLAY'} is not set); "
            "for a test without one, set QT_QPA_PLATFORM=offscreen"
        )


def ensure_app(argv: Sequence[str] | None = None) -> QtWidgets.QApplication:
    app = QtWidgets.QApplication.instance()
    if app is None:
        QtCore.QCoreApplication.setOrganizationName("slidescan")
        QtCore.QCoreApplication.setApplicationName("slidescan")
        QtCore.QCoreApplication.setApplicationVersion(__version__)
        app = QtWidgets.QApplication(list(argv or sys.argv[:1]))
        app.setWindowIcon(dialogs.app_icon())
    return app  # type: ignore[return-value]


def report_crash(
    kind: type[BaseException],
    exc: BaseException,
    tb: TracebackType | None,
    profile_source: ProfileSource | None = None,
) -> Path | None:
    """Log the exception and write a crash report in the log folder; its path, or None when
    even that failed (the log still has the traceback)."""
    text = "".join(traceback.format_exception(kind, exc, tb))
    log.error("uncaught exception:\n%s", text)
    name, profile = "", None
    if profile_source is not None:
        try:
            name, profile = profile_source()
        except Exception:  # the report matters more than the profile in it
            name, profile = "(unknown)", None
    try:
        folder = log_dir()
        path = write_crash_report(
            kind,
            exc,
            tb,
            folder=folder,
            profile=profile,
            profile_name=name,
            log_path=folder / LOG_NAME,
        )
    except Exception:
        log.exception("could not write the crash report")
        return None
    log.error("crash report written to %s", path)
    print(f"slidescan: unexpected error: {kind.__name__}: {exc}; report: {path}", file=sys.stderr)
    return path


class _CrashRelay(QtCore.QObject):
    """Brings a crash on another thread to the GUI thread, where its dialog can be shown."""

    crashed = QtCore.Signal(str, str, str)  # title line, report path, traceback


_relay: _CrashRelay | None = None


def _show_crash(summary: str, report: str, details: str) -> None:
    where = f"A crash report was written to\n{report}" if report else "Details are in the log."
    dialogs.show_error(
        QtWidgets.QApplication.activeWindow(),
        "Unexpected error",
        f"{summary}\n\nThe program keeps running. {where}\n"
        "Please send the report with a description of what you were doing.",
        details=details,
        buttons={"Open log folder": _open_log_folder},
    )


def _open_log_folder() -> None:
    from PySide6 import QtGui

    QtGui.QDesktopServices.openUrl(QtCore.QUrl.fromLocalFile(str(log_dir())))


def install_excepthook(profile_source: ProfileSource | None = None) -> None:
    """An exception escaping a Qt slot (sys.excepthook) or a thread (threading.excepthook) is
    logged, written to a crash report, and shown in a dialog that names the report, rather
    than letting Qt abort."""
    global _relay
    if _relay is None:
        _relay = _CrashRelay()
        _relay.crashed.connect(_show_crash)
    relay = _relay

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            QtWidgets.QApplication.quit()
            return
        path = report_crash(kind, exc, tb, profile_source)
        details = "".join(traceback.format_exception(kind, exc, tb))
        # queued to the GUI thread when raised on another one
        relay.crashed.emit(f"{kind.__name__}: {exc}", str(path or ""), details)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        hook(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)

    sys.excepthook = hook
    threading.excepthook = thread_hook


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
        QtCore.QTimer.singleShot(0, window, lambda: window.run_wizard(first_start=not wizard))
    else:
        name = profile or str(window.settings.value("profile/last", "simulator"))
        QtCore.QTimer.singleShot(0, window, lambda: window.connect_profile(name))
    if review:
        QtCore.QTimer.singleShot(0, window, lambda: window.open_review(review))
    return window


def main(
    argv: Sequence[str] | None = None,
    profile: str | None = None,
    wizard: bool = False,
    review: str | None = None,
) -> int:
    check_display()
    log_path = setup_logging()
    app = ensure_app(argv)
    window: Any = None

    def profile_source() -> tuple[str, Any]:
        hw = getattr(window, "hardware", None)
        return (getattr(hw, "profile_name", ""), getattr(hw, "profile", None))

    install_excepthook(profile_source)
    log.info("slidescan %s starting (log %s)", __version__, log_path)
    try:
        window = create_main_window(profile, wizard, review)
        window.show()
    except Exception:  # the window could not even be built: report it, say where, exit 1
        kind, exc, tb = sys.exc_info()
        path = report_crash(kind, exc, tb, profile_source)  # type: ignore[arg-type]
        where = f"A crash report was written to\n{path}" if path else "Details are in the log."
        QtWidgets.QMessageBox.critical(
            None, "slidescan could not start", f"{type(exc).__name__}: {exc}\n\n{where}"
        )
        return 1
    return int(app.exec())
