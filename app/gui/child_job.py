"""A whole-slide job (stitch, export) in a child process, its progress, time left and
outcome delivered as Qt signals; Cancel asks the child to stop cleanly.

The child is `python -m slidescan.app.gui.slide_jobs` (see there why a process and not a
thread, and the line protocol it speaks). `QProcess` reads its output on the event loop: no
thread of ours, nothing to lock. Signals: `progressed(stage, done, total, eta_s)` (eta_s < 0:
not known yet), then exactly one of `succeeded(result)`, `failed(one_line)`, `cancelled()`,
then `ended()`; `running` is False by the time they arrive.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from PySide6 import QtCore

log = logging.getLogger(__name__)

#: A cancelled child that has not stopped after this long is killed.
KILL_AFTER_MS = 30_000


class Eta:
    """Time left from the rate so far (per stage: a new stage starts the clock again)."""

    def __init__(self) -> None:
        self._stage = ""
        self._start = 0.0
        self._first = 0

    def update(self, stage: str, done: int, total: int, now: float | None = None) -> float:
        now = time.perf_counter() if now is None else now
        if stage != self._stage:
            self._stage, self._start, self._first = stage, now, done
            return -1.0
        elapsed, progressed = now - self._start, done - self._first
        if total <= done:
            return 0.0
        if progressed <= 0 or elapsed < 0.2:
            return -1.0
        return elapsed / progressed * (total - done)


def format_eta(seconds: float) -> str:
    if seconds < 0:
        return "estimating the time left …"
    if seconds < 60:
        return f"{seconds:.0f} s left"
    return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s left"


def child_command(kind: str, spec: dict[str, Any]) -> tuple[str, list[str]]:
    """The child's program and arguments: this Python running the jobs module, or in a
    frozen build (PyInstaller) this program's hidden `gui --slide-job`."""
    if getattr(sys, "frozen", False):
        return sys.executable, ["gui", "--slide-job", kind, json.dumps(spec)]
    return sys.executable, ["-m", "slidescan.app.gui.slide_jobs", kind, json.dumps(spec)]


class ChildJob(QtCore.QObject):
    progressed = QtCore.Signal(str, int, int, float)
    succeeded = QtCore.Signal(object)
    failed = QtCore.Signal(str)
    cancelled = QtCore.Signal()
    ended = QtCore.Signal()

    def __init__(self, name: str = "job", parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.running = False
        self.cancel_requested = False
        self._process: QtCore.QProcess | None = None
        self._buffer = b""
        self._outcome: dict[str, Any] | None = None
        self._eta = Eta()
        self._kill_timer = QtCore.QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._kill)

    def start(self, kind: str, spec: dict[str, Any]) -> None:
        """Run job `kind` ("stitch" or "export") with `spec` in a child process."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.running = True
        self.cancel_requested = False
        self._buffer = b""
        self._outcome = None
        self._eta = Eta()
        proc = QtCore.QProcess(self)
        proc.setProcessChannelMode(QtCore.QProcess.ProcessChannelMode.SeparateChannels)
        proc.readyReadStandardOutput.connect(self._read)
        proc.finished.connect(self._finished)
        proc.errorOccurred.connect(self._error)
        self._process = proc
        program, args = child_command(kind, spec)
        log.info("%s: %s %s", self.name, program, " ".join(args[:-1]))
        proc.start(program, args)

    def cancel(self) -> None:
        proc = self._process
        if not self.running or proc is None or self.cancel_requested:
            return
        self.cancel_requested = True
        proc.write(b"cancel\n")
        self._kill_timer.start(KILL_AFTER_MS)

    def wait(self, timeout_ms: int = 60_000) -> bool:
        """Block until the child has exited (shutdown); its signals still need the loop."""
        proc = self._process
        return (
            proc is None
            or proc.state() == QtCore.QProcess.ProcessState.NotRunning
            or (proc.waitForFinished(timeout_ms))
        )

    # -- the child's output ----------------------------------------------------------------------
    def _read(self) -> None:
        proc = self._process
        if proc is None:
            return
        self._buffer += bytes(proc.readAllStandardOutput().data())
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError:
                log.debug("%s: %s", self.name, line.decode(errors="replace"))
                continue
            if "progress" in message:
                stage, done, total = message["progress"]
                eta = self._eta.update(stage, int(done), int(total))
                self.progressed.emit(stage, int(done), int(total), float(eta))
            elif {"result", "error", "cancelled"} & message.keys():
                self._outcome = message

    def _finished(self, code: int, status: QtCore.QProcess.ExitStatus) -> None:
        self._read()
        self._kill_timer.stop()
        proc = self._process
        stderr = bytes(proc.readAllStandardError().data()).decode(errors="replace") if proc else ""
        self._process = None
        if proc is not None:
            proc.deleteLater()
        outcome = self._outcome or {}
        if "result" in outcome:
            self._deliver("succeeded", outcome["result"])
        elif "cancelled" in outcome:
            self._deliver("cancelled", None)
        elif "error" in outcome:
            self._deliver("failed", str(outcome["error"]))
        elif self.cancel_requested:
            self._deliver("cancelled", None)
        else:
            tail = stderr.strip().splitlines()[-1:] or [f"exit code {code}"]
            log.warning("%s stopped: %s", self.name, stderr.strip())
            self._deliver("failed", f"the {self.name} process stopped: {tail[0]}")

    def _error(self, error: QtCore.QProcess.ProcessError) -> None:
        if error == QtCore.QProcess.ProcessError.FailedToStart:
            self._process = None
            self._deliver("failed", f"the {self.name} process could not start")

    def _kill(self) -> None:
        if self._process is not None:
            log.warning("%s did not stop after a cancel: killed", self.name)
            self._process.kill()

    def _deliver(self, outcome: str, payload: Any) -> None:
        self.running = False
        if outcome == "succeeded":
            self.succeeded.emit(payload)
        elif outcome == "failed":
            self.failed.emit(payload)
        else:
            self.cancelled.emit()
        self.ended.emit()
