"""The GUI's whole-slide jobs, stitching a scan file and exporting its slide, and the child
process they run in (no Qt here).

They do what `slidescan stitch` and `slidescan export` do (the same calls, the same checks,
the same one-line errors). The GUI runs them in a child process (`child_job.ChildJob`):
- a second `ScanReader` of a file in this process breaks the reads of every reader of it
  (HDF5 2.0: the refresh at open; tests/test_store.py), and a review window may have the file
  open: the export would read wrong tiles, the review too;
- the child has its own interpreter: the window never waits for its GIL while it composes
  and compresses the pyramid, and it runs at a lower priority.

Protocol: ``python -m slidescan.app.gui.slide_jobs KIND SPEC_JSON`` (KIND ``stitch`` or
``export``) prints one JSON object a line on stdout: ``{"progress": [stage, done, total]}``
(at most every `PROGRESS_S`, and the last of each stage), then one of ``{"result": ...}``,
``{"error": "one line"}``, ``{"cancelled": true}``. A line ``cancel`` on stdin cancels:
an export stops at its next tile and removes what it wrote; a stitch stops at its next
tile or pair and stores nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slidescan.app.export.errors import ExportCancelled, ExportError

Progress = Callable[[str, int, int], None]
#: Least time (s) between two progress lines.
PROGRESS_S = 0.05
#: How much lower the child runs than the window (nice).
CHILD_NICE = 5

#: What the person sees for each stage the stitcher and the exporter report.
STAGE_NAMES = {
    "flat-field": "stitching: flat-field",
    "register": "stitching: registering overlaps",
    "export": "exporting",
}


class SlideJobError(Exception):
    """A stitch or export that cannot be done, in one line."""


class JobCancelled(Exception):
    """The person cancelled the job."""


def stitch_file(path: str | Path, progress: Progress) -> dict[str, Any]:
    """Register, place and store (a new generation in the file); returns the figures the
    CLI prints (`StitchResult.figures()`, with the generation)."""
    from slidescan.app.stitch import stored
    from slidescan.app.stitch.stitcher import StitchParams, stitch
    from slidescan.app.store import ScanFileError, ScanReader

    path = Path(path)
    try:
        stored.check_can_write(path)  # before the work, not after it
        with ScanReader(path) as reader:
            if reader.damage is not None:
                raise SlideJobError(f"{path.name} is damaged: {reader.damage}")
            if reader.format_version < 2:
                raise SlideJobError(
                    f"{path.name} is a version 1 scan file: resume it with this slidescan "
                    "first to upgrade it"
                )
            result = stitch(reader, StitchParams(), progress=progress)
            if result.layout.n == 0:
                raise SlideJobError(f"{path.name} has no imaged tiles to stitch")
        generation = stored.save(path, result)
    except (ScanFileError, stored.StitchStoreError) as exc:
        raise SlideJobError(str(exc)) from None
    return {"generation": generation, **result.figures()}


def export_file(
    path: str | Path,
    out: str | Path,
    fmt: str,
    compression: str,
    quality: int,
    progress: Progress,
    cancelled: Callable[[], bool],
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export the stitched slide of scan file `path` to `out` (`ExportResult.as_dict()`);
    `ExportError` (one line) or `ExportCancelled`, nothing left at `out` either way."""
    from slidescan.app.export.scanslide import open_scan_slide
    from slidescan.app.export.slide import export_slide

    with open_scan_slide(path) as slide:
        result = export_slide(
            slide.source,
            out,
            fmt=fmt,
            compression=compression,
            quality=quality,
            overview=slide.overview,
            overwrite=overwrite,
            progress=lambda done, total: progress("export", done, total),
            cancelled=cancelled,
        )
    return result.as_dict()


def one_line(exc: BaseException) -> str:
    """What a failed job says to the person: its first line."""
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, SlideJobError | ExportError | ValueError | OSError):
        text = f"{type(exc).__name__}: {text}"
    return text.splitlines()[0]


# -- the child process ----------------------------------------------------------------------
def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, default=str) + "\n")
    sys.stdout.flush()


def run_child(kind: str, spec: dict[str, Any]) -> int:
    """Run one job as the child process (see the module); returns the exit code."""
    cancel = threading.Event()

    def listen() -> None:
        for line in sys.stdin:
            if line.strip() == "cancel":
                cancel.set()
                return

    threading.Thread(target=listen, name="cancel-listener", daemon=True).start()
    last = [0.0, ""]

    def progress(stage: str, done: int, total: int) -> None:
        if cancel.is_set():
            raise JobCancelled(f"{kind} cancelled")
        now = time.monotonic()
        if now - last[0] >= PROGRESS_S or done >= total or stage != last[1]:
            last[0], last[1] = now, stage
            _say({"progress": [stage, int(done), int(total)]})

    try:
        if kind == "stitch":
            result = stitch_file(spec["scan"], progress)
        elif kind == "export":
            result = export_file(
                spec["scan"],
                spec["out"],
                spec["format"],
                spec["compression"],
                int(spec["quality"]),
                progress,
                cancel.is_set,
                overwrite=bool(spec.get("overwrite", False)),
            )
        else:
            raise SlideJobError(f"unknown job {kind!r}")
    except (JobCancelled, ExportCancelled):
        _say({"cancelled": True})
        return 0
    except Exception as exc:  # one line for the person; the child never shows a traceback
        _say({"error": one_line(exc)})
        return 1
    if cancel.is_set():  # it finished before the cancel took effect: it is done all the same
        _say({"note": "finished before the cancel took effect"})
    _say({"result": result})
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m slidescan.app.gui.slide_jobs stitch|export SPEC_JSON")
        return 2
    if hasattr(os, "nice"):
        with contextlib.suppress(OSError):
            os.nice(CHILD_NICE)
    return run_child(args[0], json.loads(args[1]))


if __name__ == "__main__":
    sys.exit(main())
