"""Remake the images of a finished scan from its raw shots: `slidescan refocus`.

A scan whose focus method makes its images from raw shots (`ImageMaker`, TSVA) keeps the shots
in the file. Refocusing runs the plan's method (or the same method with other weights) over
them again and commits each new image as the tile's next version, sharing the shots; the old
versions stay in the file, superseded. A refocus stopped half way leaves a consistent file
(each tile is committed whole) and can be run again. The file's status is kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slidescan.app.records import is_pending
from slidescan.app.store import ScanFileError, ScanReader, ScanWriter
from slidescan.focus.protocol import ImageMaker
from slidescan.focus.registry import get_method


@dataclass
class RefocusResult:
    path: str
    method: str
    tiles: int
    seconds: float
    seconds_per_tile: float
    skipped: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def build_maker(path: Path, params: dict[str, Any]) -> tuple[str, ImageMaker]:
    """The scan's focus method with `params` overriding the plan's, if it makes images."""
    with ScanReader(path) as r:
        if r.damage is not None:
            raise ScanFileError(f"{path} is damaged ({r.damage}); salvage it with scan --resume")
        name, plan_params = r.plan.focus.method, dict(r.plan.focus.params)
    method = get_method(name, **(plan_params | params))
    if not isinstance(method, ImageMaker):
        raise ScanFileError(
            f"{path} was scanned with {name!r}, which keeps no raw shots to make images from"
        )
    return name, method


def targets(path: Path, kind: str, pending_only: bool) -> list[int]:
    """Planned indices to remake: every tile whose latest version is, or waits to be, an
    image of `kind` (only the waiting ones with `pending_only`)."""
    out = []
    with ScanReader(path) as r:
        for rec in r.current():
            if rec["shot_count"] <= 0 or rec["skipped"]:
                continue
            if is_pending(rec) or (not pending_only and rec["made_kind"].decode() == kind):
                out.append(int(rec["index"]))
    return out


def refocus(
    path: str | Path,
    params: dict[str, Any] | None = None,
    *,
    pending_only: bool = False,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> RefocusResult:
    """Remake the images (see the module docstring). Raises `ScanFileError` (one line)."""
    path = Path(path)
    name, maker = build_maker(path, dict(params or {}))
    todo = targets(path, maker.image_kind, pending_only)
    with ScanReader(path) as r:
        status, message = r.status, r.message
    writer = ScanWriter.open(path)
    t0 = time.perf_counter()
    done = 0
    try:
        if progress is not None:
            progress(0, len(todo))
        for index in todo:
            if cancelled():
                break
            shots = writer.read_shots(index)
            t = time.perf_counter()
            image = maker.make_image(shots)
            writer.append_made(
                index,
                image,
                maker.image_kind,
                compute_s=time.perf_counter() - t,
                shots=[im for _, im in shots],
            )
            done += 1
            if progress is not None:
                progress(done, len(todo))
    finally:
        writer.close(status if status != "running" else "cancelled", message)
    seconds = time.perf_counter() - t0
    return RefocusResult(
        str(path), name, done, seconds, seconds / done if done else 0.0, todo[done:]
    )
