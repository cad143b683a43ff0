"""`slidescan --self-test`: does this installation work, end to end, on this machine?

Starts the desktop application (the real main window, on the platform Qt would use), connects
the shipped simulator profile, loads every shipped learned model and runs it once through
torch, scans 2 x 2 tiles from the window, reopens the scan file (its tiles, and a review
window), and, where the GUI has child-process jobs, stitches the file in one (a frozen build's
executable running its own `gui --slide-job`). Then prints ``READY`` and exits 0. A failure
prints one line, ``self-test failed: STEP: REASON``, and exits 1; so does a step that takes
longer than its limit, and a hang anywhere ends the process after `TOTAL_TIMEOUT_S`.

The model is pymmcore-gui's bundle test (the built app prints READY once its window is up).
Nothing of the person's is touched: the window's settings and the scan file are in a temporary
folder, removed afterwards. The log goes to the usual log folder.

`run_steps` (the sequence, the one-line failure, the exit code) needs no Qt; the steps
themselves import Qt when they run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

log = logging.getLogger(__name__)

#: The whole self-test ends (exit 3) after this long, whatever it is waiting for.
TOTAL_TIMEOUT_S = 600.0
#: The simulator camera of the self-test (the shipped profile's optics, smaller frames).
CAMERA_PX = 256
READY = "READY"


class SelfTestError(Exception):
    """A step found something wrong (the one line to print)."""


@dataclass
class Step:
    name: str
    run: Callable[[], None]


@dataclass
class Timings:
    """Seconds each step took, in order (logged; the README's start-up figure is the first)."""

    steps: list[tuple[str, float]] = field(default_factory=list)

    def line(self) -> str:
        return ", ".join(f"{name} {s:.2f} s" for name, s in self.steps)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, SelfTestError | TimeoutError):
        return first or type(exc).__name__
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def run_steps(
    steps: Iterable[Step],
    out: TextIO | None = None,
    err: TextIO | None = None,
    timings: Timings | None = None,
) -> int:
    """Run `steps` in order; READY on `out` and 0 when all pass, else one line on `err` naming
    the first step that failed, and 1. Every step's time goes to `timings` and the log."""
    out = out or sys.stdout
    err = err or sys.stderr
    timings = timings if timings is not None else Timings()
    for step in steps:
        start = time.perf_counter()
        try:
            step.run()
        except Exception as exc:
            log.error("self-test: %s failed\n%s", step.name, traceback.format_exc())
            print(f"self-test failed: {step.name}: {one_line(exc)}", file=err, flush=True)
            return 1
        timings.steps.append((step.name, time.perf_counter() - start))
        log.info("self-test: %s passed (%.2f s)", step.name, timings.steps[-1][1])
    log.info("self-test passed: %s", timings.line())
    print(READY, file=out, flush=True)
    return 0


def watchdog(seconds: float, err: TextIO | None = None) -> threading.Timer:
    """End the process (exit 3) with one line if the self-test is still running after
    `seconds`: a hang must not outlive the test that started it."""

    def fire() -> None:
        print(
            f"self-test failed: timeout: not finished after {seconds:.0f} s",
            file=err or sys.stderr,
            flush=True,
        )
        os._exit(3)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    return timer


# ------------------------------------------------------------------------------------------
# the steps
# ------------------------------------------------------------------------------------------
class GuiSelfTest:
    """The steps on one main window; `steps()` lists them in order."""

    def __init__(self, workdir: Path, camera_px: int = CAMERA_PX) -> None:
        self.workdir = workdir
        self.camera_px = camera_px
        self.scan_path = workdir / "self-test.h5"
        self.app: Any = None
        self.window: Any = None
        self.microscope: Any = None
        self._errors: list[str] = []
        self._finished: list[Any] = []

    def steps(self) -> list[Step]:
        steps = [
            Step("start the GUI", self.start_gui),
            Step("connect the simulator", self.connect_simulator),
            Step("run the shipped models", self.run_models),
            Step("scan 2 x 2 tiles", self.scan),
            Step("reopen the scan file", self.reopen),
        ]
        if _has_child_jobs():
            steps.append(Step("stitch in a child process", self.child_job))
        steps.append(Step("close the window", self.close))
        return steps

    # -- waiting on the event loop -------------------------------------------------------------
    def wait_until(self, done: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Run the event loop until `done()`; an exception escaping a Qt slot meanwhile, or
        the time running out, fails the step."""
        from PySide6 import QtCore

        deadline = time.monotonic() + timeout_s
        loop = QtCore.QEventLoop()
        while True:
            if self._errors:
                raise SelfTestError(self._errors[0])
            if done():
                return
            if time.monotonic() > deadline:
                raise SelfTestError(f"{what} did not happen within {timeout_s:.0f} s")
            QtCore.QTimer.singleShot(10, loop.quit)
            loop.exec()

    def _excepthook(self, kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        log.error("self-test: uncaught\n%s", "".join(traceback.format_exception(kind, exc, tb)))
        self._errors.append(f"uncaught {one_line(exc)}")

    # -- steps -----------------------------------------------------------------------------------
    def start_gui(self) -> None:
        from slidescan.app.gui.app import check_display, ensure_app

        check_display()
        from PySide6 import QtCore

        QtCore.qInstallMessageHandler(_qt_message_to_log)  # the output is READY or one line
        self.app = ensure_app([sys.argv[0] if sys.argv else "slidescan"])
        sys.excepthook = self._excepthook
        from slidescan.app.gui.main_window import MainWindow
        from slidescan.app.gui.settings import gui_settings

        settings = gui_settings(self.workdir / "gui.ini")  # not the person's settings
        settings.setValue("camera/live", "false")
        self.window = MainWindow(settings=settings)
        self.window.show()
        handle = self.window.windowHandle
        self.wait_until(
            lambda: self.window.isVisible() and handle() is not None and handle().isExposed(),
            60,
            "the main window showing",
        )

    def connect_simulator(self) -> None:
        from slidescan.hardware.profile import load_profile, open_microscope
        from slidescan.resources import resource_path

        # the shipped profile itself (a person's own "simulator" profile may differ)
        prof = load_profile(resource_path("profiles", "simulator.toml"))
        small = {"camera": {"width": self.camera_px, "height": self.camera_px}}
        prof = prof.model_copy(update={"simulator": {**(prof.simulator or {}), **small}})
        self.microscope = open_microscope(prof)
        self.window.set_microscope(self.microscope, "simulator (self-test)", prof)
        ctl = lambda: self.window.stage_controller  # noqa: E731
        self.wait_until(
            lambda: ctl() is not None and ctl().position is not None, 60, "the stage answering"
        )

    def run_models(self) -> None:
        found = run_shipped_models()
        if not found:
            raise SelfTestError("no learned model is shipped in resources/models")

    def scan(self) -> None:
        from slidescan.app.events import FinishReason
        from slidescan.app.plan import ScanPlan, TissueSettings

        truth = self.microscope.truth
        if truth is None:
            raise SelfTestError("the simulator has no slide")
        x0, y0, x1, y1 = truth.slide_bounds_um
        plan = ScanPlan.grid(
            2,
            2,
            centre_um=((x0 + x1) / 2, (y0 + y1) / 2),
            fov_um=self.window.hardware.fov_um,
            objective=self.microscope.optics.objective_name,
            profile="simulator",
            output=str(self.scan_path),
            tissue=TissueSettings(enabled=False),  # every tile taken, tissue or glass
        )
        self.window.scanFinished.connect(self._finished.append)
        self.window.start_scan(plan)
        self.wait_until(lambda: bool(self._finished), 300, "the scan finishing")
        ev = self._finished[0]
        if ev.reason is not FinishReason.COMPLETED:
            raise SelfTestError(f"the scan ended {ev.reason.name.lower()}: {ev.message}")

    def reopen(self) -> None:
        from slidescan.app.store import ScanReader

        with ScanReader(self.scan_path) as r:
            problems = r.verify()
            if r.status != "completed" or r.n_tiles != 4 or problems:
                raise SelfTestError(
                    f"{self.scan_path.name}: status {r.status}, {r.n_tiles} tiles of 4"
                    + (f", {problems[0]}" if problems else "")
                )
            shape = r.image(0).shape
            if shape[:2] != (self.camera_px, self.camera_px):
                raise SelfTestError(f"tile 0 is {shape}, expected {self.camera_px} px square")
        review = self.window.open_review(str(self.scan_path))
        if review is None or review.n_tiles != 4:
            raise SelfTestError("the review window did not open the scan's 4 tiles")
        review.close()

    def child_job(self) -> None:
        from slidescan.app.gui.child_job import ChildJob

        outcome: list[str] = []
        job = ChildJob("self-test stitch")
        job.succeeded.connect(lambda r: outcome.append(""))
        job.failed.connect(lambda msg: outcome.append(msg or "failed"))
        job.cancelled.connect(lambda: outcome.append("cancelled"))
        job.start("stitch", {"scan": str(self.scan_path)})
        self.wait_until(lambda: bool(outcome), 180, "the child process's stitch")
        if outcome[0]:
            raise SelfTestError(f"the child process: {outcome[0]}")

    def close(self) -> None:
        if self.window is None:
            return
        self.window.close()
        self.wait_until(lambda: not self.window.isVisible(), 30, "the window closing")
        self.window = None


def _qt_message_to_log(kind: Any, context: Any, message: str) -> None:
    log.info("Qt: %s", message)


def _has_child_jobs() -> bool:
    import importlib.util

    return all(
        importlib.util.find_spec(f"slidescan.app.gui.{m}") is not None
        for m in ("child_job", "slide_jobs")
    )


def run_shipped_models(folder: Path | None = None) -> list[str]:
    """Load every model in resources/models (checksum checked), build its network and run it
    once on a blank input: the weights, torch and the network code all work. Returns what
    ran ("diffcnn_20x_075: mobilenetv2")."""
    import torch

    from slidescan.focus.learned.checkpoint import load_checkpoint
    from slidescan.resources import resource_path

    folder = folder or resource_path("models")
    ran = []
    for path in sorted(Path(folder).glob("*.pt")):
        blob = torch.load(path, map_location="cpu", weights_only=True)
        method = str(blob.get("method", "")) if isinstance(blob, dict) else ""
        ckpt = load_checkpoint(path, method or "diffcnn")
        net = ckpt.build()
        cfg = ckpt.config
        channels = int(cfg.get("in_channels", cfg.get("channels", 3)))
        inputs = [torch.zeros(1, channels, 64, 64) for _ in range(int(cfg.get("shots", 1)))]
        with torch.inference_mode():
            y = net(*inputs)
        if not bool(torch.isfinite(y).all()):
            raise SelfTestError(f"{path.name}: the network's output is not finite")
        ran.append(f"{path.stem}: {ckpt.architecture}")
    return ran


def main(timeout_s: float = TOTAL_TIMEOUT_S) -> int:
    """`slidescan --self-test`."""
    from slidescan.app.gui.qt_libraries import install_hint, missing_libraries

    missing = missing_libraries()
    if missing:  # before Qt loads: it would abort without saying why
        print(f"self-test failed: start the GUI: {install_hint(missing)}", file=sys.stderr)
        return 1
    from slidescan.app.gui.logs import setup_logging

    log_path = setup_logging()
    log.info("self-test starting (log %s)", log_path)
    timer = watchdog(timeout_s)
    try:
        with tempfile.TemporaryDirectory(prefix="slidescan-self-test-") as tmp:
            test = GuiSelfTest(Path(tmp))
            code = run_steps(test.steps())
            if code:
                with contextlib.suppress(Exception):
                    test.close()
            return code
    finally:
        timer.cancel()
