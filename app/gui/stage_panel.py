"""Stage control: jog by buttons and keys, go-to, home, and the position readout.

`StageController` owns the GUI's access to a `Stage`: every call runs on the `DeviceWorker`
thread, every target is clamped into the soft limits before it is sent (a jog that would cross
a limit stops at it, with a message), and rapid jogs (a held arrow key) coalesce into one
pending target instead of queueing a move per key repeat. While a scan owns the stage the
controller refuses moves and takes its position from the scan's events instead of polling.

`StagePanel` is the widget: arrows for XY, up/down for Z, step sizes, go-to fields, home.
"""

from __future__ import annotations

import logging

from PySide6 import QtCore, QtGui, QtWidgets

from slidescan.app.gui.worker import DeviceWorker
from slidescan.hardware.base import AXES, Position, Stage

log = logging.getLogger(__name__)

XY_STEPS_UM = (1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0)
Z_STEPS_UM = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 20.0)


class StageController(QtCore.QObject):
    positionChanged = QtCore.Signal(object)  # Position
    message = QtCore.Signal(str)
    error = QtCore.Signal(str)
    movingChanged = QtCore.Signal(bool)

    def __init__(
        self,
        stage: Stage,
        worker: DeviceWorker,
        poll_ms: int = 300,
        parent: QtCore.QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.stage = stage
        self.worker = worker
        self._position: Position | None = None
        self._wanted: dict[str, float] = {}
        self._in_flight = False
        self._locked_reason = ""
        self._poll_busy = False
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        self.refresh()

    # -- state ---------------------------------------------------------------------------------
    @property
    def position(self) -> Position | None:
        return self._position

    @property
    def can_home(self) -> bool:
        return bool(getattr(self.stage, "can_home", False))

    @property
    def locked(self) -> bool:
        return bool(self._locked_reason)

    def lock(self, reason: str) -> None:
        """Refuse moves (a scan owns the stage) and stop polling it."""
        self._locked_reason = reason
        self._wanted.clear()
        self._timer.stop()

    def unlock(self) -> None:
        self._locked_reason = ""
        self._timer.start()
        self.refresh()

    def set_known_position(self, position: Position) -> None:
        """Position reported by someone else (the scan's events)."""
        self._position = position
        self.positionChanged.emit(position)

    def stop_polling(self) -> None:
        """Stop reading the position, and forget moves not yet sent (the stage is let go)."""
        self._timer.stop()
        self._wanted.clear()

    # -- moves ---------------------------------------------------------------------------------
    def jog(self, dx: float = 0.0, dy: float = 0.0, dz: float = 0.0) -> None:
        base = self._base()
        if base is None:
            self.message.emit("stage position unknown yet")
            return
        target = {}
        for axis, delta in zip(AXES, (dx, dy, dz), strict=True):
            if delta:
                target[axis] = base[axis] + delta
        self._request(target)

    def go_to(self, x: float | None = None, y: float | None = None, z: float | None = None) -> None:
        target = {a: float(v) for a, v in zip(AXES, (x, y, z), strict=True) if v is not None}
        self._request(target)

    def home(self) -> None:
        if self._refuse():
            return
        if not self.can_home:
            self.message.emit("this stage cannot home")
            return
        self.message.emit("homing ...")
        self.movingChanged.emit(True)
        self.worker.submit(
            self._home_and_read, on_result=self._moved, on_error=self._failed, label="home"
        )

    def stop(self) -> None:
        self._wanted.clear()
        try:
            self.stage.stop()  # deliberately not queued behind the move it should stop
        except Exception as exc:  # report, never raise into the event loop
            self.error.emit(f"stop failed: {exc}")

    def refresh(self) -> None:
        if self._poll_busy or self._in_flight or self.locked:
            return
        self._poll_busy = True
        self.worker.submit(
            self.stage.position,
            on_result=self._polled,
            on_error=self._poll_failed,
            label="stage position",
        )

    # -- internals -----------------------------------------------------------------------------
    def _refuse(self) -> bool:
        if self.locked:
            self.message.emit(f"stage is busy: {self._locked_reason}")
            return True
        return False

    def _base(self) -> dict[str, float] | None:
        """Where the next relative move starts: the pending target, else the last position."""
        if self._position is None:
            return None
        base = {a: self._position.get(a) for a in AXES}
        base.update(self._wanted)
        return base

    def _clamp(self, target: dict[str, float]) -> dict[str, float]:
        out = {}
        notes = []
        for axis, value in target.items():
            lo, hi = self.stage.limits.range(axis)
            clamped = min(max(value, lo), hi)
            if clamped != value:
                notes.append(f"{axis} stopped at the soft limit {clamped:.1f} µm")
            out[axis] = clamped
        if notes:
            self.message.emit("; ".join(notes))
        return out

    def _request(self, target: dict[str, float]) -> None:
        if self._refuse() or not target:
            return
        self._wanted.update(self._clamp(target))
        self._send()

    def _send(self) -> None:
        if self._in_flight or not self._wanted:
            return
        target = dict(self._wanted)
        self._in_flight = True
        self.movingChanged.emit(True)
        self.worker.submit(
            self._move_and_read,
            target,
            on_result=self._moved,
            on_error=self._failed,
            label="stage move",
        )

    def _move_and_read(self, target: dict[str, float]) -> tuple[dict[str, float], Position]:
        self.stage.move_to(**target, wait=True)
        return target, self.stage.position()

    def _home_and_read(self) -> tuple[dict[str, float], Position]:
        self.stage.home()
        return {}, self.stage.position()

    def _moved(self, result: tuple[dict[str, float], Position]) -> None:
        sent, position = result
        self._in_flight = False
        for axis, value in sent.items():
            if self._wanted.get(axis) == value:
                del self._wanted[axis]
        self._position = position
        self.positionChanged.emit(position)
        if self._wanted:
            self._send()
        else:
            self.movingChanged.emit(False)

    def _failed(self, exc: BaseException) -> None:
        self._in_flight = False
        self._wanted.clear()
        self.movingChanged.emit(False)
        self.error.emit(f"stage move failed: {exc}")
        self.refresh()

    def _polled(self, position: Position) -> None:
        self._poll_busy = False
        if self._in_flight:
            return
        if position != self._position:
            self._position = position
            self.positionChanged.emit(position)

    def _poll_failed(self, exc: BaseException) -> None:
        self._poll_busy = False
        self._timer.stop()
        self.error.emit(f"cannot read the stage position: {exc}")


class StagePanel(QtWidgets.QWidget):
    """Buttons, step sizes, go-to fields and the XYZ readout for a `StageController`."""

    def __init__(
        self, controller: StageController | None = None, parent: QtWidgets.QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.controller: StageController | None = None
        self._goto_filled = False

        self.pos_labels = {a: QtWidgets.QLabel("--") for a in AXES}
        readout = QtWidgets.QHBoxLayout()
        mono = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont)
        mono.setPointSizeF(mono.pointSizeF() * 1.15)
        for axis in AXES:
            name = QtWidgets.QLabel(f"<b>{axis.upper()}</b>")
            label = self.pos_labels[axis]
            label.setFont(mono)
            label.setAlignment(
                QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter
            )
            label.setMinimumWidth(84)
            readout.addWidget(name)
            readout.addWidget(label, 1)
            readout.addSpacing(8)

        self.xy_step = QtWidgets.QComboBox()
        for s in XY_STEPS_UM:
            self.xy_step.addItem(f"{s:g} µm", s)
        self.xy_step.setCurrentIndex(XY_STEPS_UM.index(100.0))
        self.xy_step.setToolTip("XY jog step (Ctrl: x10)")
        self.z_step = QtWidgets.QComboBox()
        for s in Z_STEPS_UM:
            self.z_step.addItem(f"{s:g} µm", s)
        self.z_step.setCurrentIndex(Z_STEPS_UM.index(1.0))
        self.z_step.setToolTip("Z jog step")

        def button(text: str, tip: str) -> QtWidgets.QToolButton:
            b = QtWidgets.QToolButton()
            b.setText(text)
            b.setToolTip(tip)
            b.setMinimumSize(34, 30)
            b.setAutoRepeat(True)
            b.setAutoRepeatDelay(400)
            b.setAutoRepeatInterval(150)
            return b

        self.btn_left = button("◀", "move -x (Left)")
        self.btn_right = button("▶", "move +x (Right)")
        self.btn_up = button("▲", "move -y (Up)")
        self.btn_down = button("▼", "move +y (Down)")
        self.btn_z_up = button("Z+", "focus up (Page Up)")
        self.btn_z_down = button("Z−", "focus down (Page Down)")
        self.btn_left.clicked.connect(lambda: self.jog_xy(-1, 0))
        self.btn_right.clicked.connect(lambda: self.jog_xy(1, 0))
        self.btn_up.clicked.connect(lambda: self.jog_xy(0, -1))
        self.btn_down.clicked.connect(lambda: self.jog_xy(0, 1))
        self.btn_z_up.clicked.connect(lambda: self.jog_z(1))
        self.btn_z_down.clicked.connect(lambda: self.jog_z(-1))

        pad = QtWidgets.QGridLayout()
        pad.addWidget(self.btn_up, 0, 1)
        pad.addWidget(self.btn_left, 1, 0)
        pad.addWidget(self.btn_right, 1, 2)
        pad.addWidget(self.btn_down, 2, 1)
        pad.addWidget(self.btn_z_up, 0, 4)
        pad.addWidget(self.btn_z_down, 2, 4)
        pad.setColumnMinimumWidth(3, 12)
        steps = QtWidgets.QFormLayout()
        steps.addRow("XY step", self.xy_step)
        steps.addRow("Z step", self.z_step)
        top = QtWidgets.QHBoxLayout()
        top.addLayout(pad)
        top.addSpacing(8)
        top.addLayout(steps)

        self.goto = {a: QtWidgets.QDoubleSpinBox() for a in AXES}
        goto_row = QtWidgets.QHBoxLayout()
        for axis, box in self.goto.items():
            box.setDecimals(2 if axis == "z" else 1)
            box.setRange(-1e6, 1e6)
            box.setButtonSymbols(QtWidgets.QAbstractSpinBox.ButtonSymbols.NoButtons)
            box.setToolTip(f"target {axis} (µm)")
            box.setKeyboardTracking(False)
            goto_row.addWidget(QtWidgets.QLabel(axis.upper()))
            goto_row.addWidget(box, 1)
        self.goto_button = QtWidgets.QPushButton("Go")
        self.goto_button.setToolTip("Move to the position in the fields (µm)")
        self.goto_button.clicked.connect(self._go)
        self.here_button = QtWidgets.QToolButton()
        self.here_button.setText("⟲")
        self.here_button.setToolTip("Copy the current position into the fields")
        self.here_button.clicked.connect(self.copy_position)
        goto_row.addWidget(self.here_button)
        goto_row.addWidget(self.goto_button)

        self.home_button = QtWidgets.QPushButton("Home")
        self.home_button.setToolTip("Home the stage (find the limit switches)")
        self.home_button.clicked.connect(self._home)
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.setToolTip("Stop the stage now")
        self.stop_button.clicked.connect(self._stop)
        self.limits_label = QtWidgets.QLabel("")
        self.limits_label.setWordWrap(True)
        self.limits_label.setStyleSheet("color: gray; font-size: 8pt")
        bottom = QtWidgets.QHBoxLayout()
        bottom.addWidget(self.home_button)
        bottom.addWidget(self.stop_button)
        bottom.addStretch(1)

        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(readout)
        layout.addLayout(top)
        layout.addLayout(goto_row)
        layout.addLayout(bottom)
        layout.addWidget(self.limits_label)
        layout.addStretch(1)
        self.set_controller(controller)

    def set_controller(self, controller: StageController | None) -> None:
        if self.controller is not None:
            self.controller.positionChanged.disconnect(self.show_position)
        self.controller = controller
        self._goto_filled = False
        self.setEnabled(controller is not None)
        if controller is None:
            for label in self.pos_labels.values():
                label.setText("--")
            return
        controller.positionChanged.connect(self.show_position)
        self.home_button.setEnabled(controller.can_home)
        lim = controller.stage.limits
        self.limits_label.setText(
            "soft limits: "
            + ", ".join(f"{a} [{lim.range(a)[0]:g}, {lim.range(a)[1]:g}]" for a in AXES)
            + " µm"
        )
        for axis, box in self.goto.items():
            lo, hi = lim.range(axis)
            box.setRange(max(lo, -1e6), min(hi, 1e6))
        if controller.position is not None:
            self.show_position(controller.position)

    @property
    def xy_step_um(self) -> float:
        return float(self.xy_step.currentData())

    @property
    def z_step_um(self) -> float:
        return float(self.z_step.currentData())

    def jog_xy(self, sx: int, sy: int, factor: float = 1.0) -> None:
        if self.controller is not None:
            step = self.xy_step_um * factor
            self.controller.jog(dx=sx * step, dy=sy * step)

    def jog_z(self, sz: int, factor: float = 1.0) -> None:
        if self.controller is not None:
            self.controller.jog(dz=sz * self.z_step_um * factor)

    def show_position(self, p: Position) -> None:
        if not self._goto_filled:  # start the go-to fields where the stage is
            self._goto_filled = True
            self.copy_position()
        self.pos_labels["x"].setText(f"{p.x:.1f} µm")
        self.pos_labels["y"].setText(f"{p.y:.1f} µm")
        self.pos_labels["z"].setText(f"{p.z:.2f} µm")

    def copy_position(self) -> None:
        if self.controller is not None and self.controller.position is not None:
            p = self.controller.position
            for axis, box in self.goto.items():
                with QtCore.QSignalBlocker(box):
                    box.setValue(p.get(axis))

    def set_moves_enabled(self, on: bool) -> None:
        for w in (
            self.btn_left,
            self.btn_right,
            self.btn_up,
            self.btn_down,
            self.btn_z_up,
            self.btn_z_down,
            self.goto_button,
            self.home_button,
            self.here_button,
        ):
            w.setEnabled(
                on
                and (
                    w is not self.home_button or bool(self.controller and self.controller.can_home)
                )
            )

    def _go(self) -> None:
        if self.controller is not None:
            self.controller.go_to(*(self.goto[a].value() for a in AXES))

    def _home(self) -> None:
        if self.controller is not None:
            self.controller.home()

    def _stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
