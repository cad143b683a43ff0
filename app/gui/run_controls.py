"""The scan panel's Run box: Start / Pause / Resume / Stop, progress with tiles/s and ETA, the
runner's state and the scan's warnings.

A focus method that makes each tile's image after the tile from its raw shots (TSVA) has a
backlog: while tiles are taken a line says how many images are waiting; after the last tile
the progress bar shows the backlog being finished (the scan ends when it is).

The buttons follow the runner's state machine (`set_state`). Start also needs a connected
microscope (`set_hardware_ready`) and usable settings (`set_blocked(reason)`): when it cannot
start, the button says why in its tooltip and the reason shows in red below it.
"""

from __future__ import annotations

import math

from PySide6 import QtCore, QtWidgets

from slidescan.app.events import BacklogProgress, Progress, RunnerState

START_TIP = "Start the scan (Ctrl+R)"


def format_duration(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class RunControls(QtWidgets.QGroupBox):
    startRequested = QtCore.Signal()
    pauseRequested = QtCore.Signal()
    resumeRequested = QtCore.Signal()
    stopRequested = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("Run", parent)
        self._state: RunnerState | None = None
        self._hardware_ready = True
        self.blocked_reason = ""
        v = QtWidgets.QVBoxLayout(self)
        v.addLayout(self._build_buttons())
        self.problem_label = QtWidgets.QLabel("")
        self.problem_label.setWordWrap(True)
        self.problem_label.setStyleSheet("color: #ff6b5b")
        self.problem_label.setVisible(False)
        v.addWidget(self.problem_label)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setMaximum(1)
        self.progress.setValue(0)
        self.progress.setFormat("no scan yet")
        v.addWidget(self.progress)
        self.images_label = QtWidgets.QLabel("")
        self.images_label.setToolTip(
            "The focus method makes each tile's image from its raw shots after the tile "
            "(amber outlines on the tile map: still waiting)"
        )
        self.images_label.setVisible(False)
        v.addWidget(self.images_label)
        self.rate_label = QtWidgets.QLabel("")
        self.state_label = QtWidgets.QLabel("idle")
        status = QtWidgets.QHBoxLayout()
        status.addWidget(self.state_label)
        status.addStretch(1)
        status.addWidget(self.rate_label)
        v.addLayout(status)
        self.warnings = QtWidgets.QListWidget()
        self.warnings.setMaximumHeight(110)
        self.warnings.setToolTip("Warnings from the scan (focus fallbacks, device errors)")
        v.addWidget(QtWidgets.QLabel("Warnings"))
        v.addWidget(self.warnings)
        self.set_state(None)

    def _build_buttons(self) -> QtWidgets.QHBoxLayout:
        self.start_button = QtWidgets.QPushButton("Start scan")
        self.start_button.setToolTip(START_TIP)
        self.start_button.setStyleSheet("font-weight: bold")
        self.pause_button = QtWidgets.QPushButton("Pause")
        self.resume_button = QtWidgets.QPushButton("Resume")
        self.stop_button = QtWidgets.QPushButton("Stop")
        buttons = QtWidgets.QHBoxLayout()
        for button, signal in (
            (self.start_button, self.startRequested),
            (self.pause_button, self.pauseRequested),
            (self.resume_button, self.resumeRequested),
            (self.stop_button, self.stopRequested),
        ):
            button.clicked.connect(signal)
            buttons.addWidget(button)
        return buttons

    # -- what Start depends on ---------------------------------------------------------------
    def set_state(self, state: RunnerState | None, message: str = "") -> None:
        """None: no scan. Buttons follow the runner's state machine."""
        self._state = state
        running = state is RunnerState.RUNNING
        paused = state is RunnerState.PAUSED
        self.pause_button.setEnabled(running)
        self.resume_button.setEnabled(paused)
        self.stop_button.setEnabled(running or paused)
        text = "idle" if state is None else state.value
        self.state_label.setText(f"{text}: {message}" if message else text)
        self._update_start()

    @property
    def active(self) -> bool:
        return self._state is not None and self._state is not RunnerState.IDLE

    def set_hardware_ready(self, ready: bool) -> None:
        self._hardware_ready = ready
        self._update_start()

    def set_blocked(self, reason: str) -> None:
        """Settings that cannot start a scan ('' when they can): Start says why."""
        self.blocked_reason = reason
        self.problem_label.setText(f"Cannot start: {reason}" if reason else "")
        self.problem_label.setVisible(bool(reason))
        self._update_start()

    def _update_start(self) -> None:
        self.start_button.setEnabled(
            not self.active and self._hardware_ready and not self.blocked_reason
        )
        reason = self.blocked_reason
        self.start_button.setToolTip(f"Cannot start: {reason}" if reason else START_TIP)

    # -- progress ----------------------------------------------------------------------------
    def reset_progress(self, total: int) -> None:
        self.progress.setFormat("%v / %m tiles")
        self.progress.setMaximum(max(1, total))
        self.progress.setValue(0)
        self.rate_label.setText("")
        self.images_label.setText("")
        self.images_label.setVisible(False)
        self.warnings.clear()

    def show_progress(self, p: Progress) -> None:
        self.progress.setMaximum(max(1, p.total))
        self.progress.setValue(p.done)
        self.rate_label.setText(f"{p.tiles_per_s:.2f} tiles/s · ETA {format_duration(p.eta_s)}")

    def show_images_waiting(self, waiting: int) -> None:
        """How many tiles taken so far wait for their image to be made."""
        self.images_label.setText(
            f"making images: {waiting} waiting (amber on the tile map)"
            if waiting
            else "making images: all made so far"
        )
        self.images_label.setVisible(True)

    def show_backlog(self, b: BacklogProgress) -> None:
        """After the last tile: the images still to make, being made."""
        self.progress.setFormat("making images: %v / %m")
        self.progress.setMaximum(max(1, b.total))
        self.progress.setValue(min(b.done, b.total))
        self.rate_label.setText(f"ETA {format_duration(b.eta_s)}")
        left = b.total - b.done
        self.images_label.setText(
            f"every tile taken; making the last {left} image{'s' if left != 1 else ''}"
            if left > 0
            else "every image made"
        )
        self.images_label.setVisible(True)

    def show_images_left(self, n: int) -> None:
        """The scan has ended with `n` tiles still waiting for their image (0: none)."""
        self.images_label.setText(
            f"{n} tile{'s' if n != 1 else ''} still without {'their' if n != 1 else 'its'} "
            "made image: resuming the scan (or slidescan refocus) makes them"
            if n
            else "every image made"
        )
        self.images_label.setVisible(True)

    def add_warning(self, message: str) -> None:
        self.warnings.addItem(message)
        self.warnings.scrollToBottom()
