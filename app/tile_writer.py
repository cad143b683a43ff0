"""The writer thread: takes tiles off a bounded queue, appends them to the scan file.

The scan thread `put`s each tile; the queue bound is the back-pressure that keeps memory flat
(the scan waits when the writer falls behind), and the next tile's stage move overlaps the
previous tile's writing. After each tile is committed, `on_written(item, thumbnail)` is called
on this thread (the runner turns it into events). A storage failure (disk full, I/O error) is
kept in `error`; from then on the thread only drains the queue, and `put` raises
`WriterFailed` so the scan stops at once, every tile committed before it intact.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from slidescan.app.engine import TileOutcome
from slidescan.app.plan import Tile
from slidescan.app.store import ScanWriter, StorageError
from slidescan.app.tissue import thumbnail as make_thumbnail

_SENTINEL = object()


class WriterFailed(Exception):
    """The writer thread failed; `TileWriterThread.error` says why."""


@dataclass
class WriteItem:
    """One tile on its way to the file."""

    tile: Tile
    outcome: TileOutcome
    fov_um: tuple[float, float]


class TileWriterThread:
    def __init__(
        self,
        writer: ScanWriter,
        on_written: Callable[[WriteItem, np.ndarray | None], None],
        queue_size: int = 2,
    ) -> None:
        self.writer = writer
        self.on_written = on_written
        self.error: StorageError | None = None
        self.written = 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(1, queue_size))
        self._thread = threading.Thread(target=self._loop, name="scan-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, item: WriteItem) -> None:
        """Queue a tile, waiting while the queue is full; raises `WriterFailed` once the
        writer has failed."""
        while True:
            if self.error is not None:
                raise WriterFailed(str(self.error))
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Write what is queued, then stop the thread."""
        self._queue.put(_SENTINEL)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _SENTINEL:
                return
            if self.error is not None:
                continue  # drain after a failure; the scan thread is stopping
            assert isinstance(item, WriteItem)
            out = item.outcome
            try:
                source = out.image if out.image is not None else out.look
                thumb = make_thumbnail(source) if source is not None else None
                shots = [(s.z_um, np.asarray(s.frame.image)) for s in out.shots]
                self.writer.append(out.record, out.image, thumb, shots)
            except BaseException as exc:
                self.error = (
                    exc
                    if isinstance(exc, StorageError)
                    else StorageError(
                        f"writing {self.writer.path} failed: {type(exc).__name__}: {exc}"
                    )
                )
                continue
            self.written += 1
            self.on_written(item, thumb)
