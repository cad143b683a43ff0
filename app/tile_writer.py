"""The writer thread: the one owner of the open scan file. It takes tiles off a bounded
queue and appends them to the file.

The scan thread `put`s each tile; the queue bound is the back-pressure that keeps memory flat
(the scan waits when the writer falls behind), and the next tile's stage move overlaps the
previous tile's writing. After each tile is committed, `on_written(item, thumbnail)` is called
on this thread (the runner turns it into events). Images a focus method made later from a
tile's raw shots (`app/image_worker.py`) come through the same queue as `MadeItem`s and are
committed as the tile's next version (`on_made(item, thumbnail)`). `call(fn)` runs `fn(writer)`
on this thread and returns its result (reading the file without a second owner). A storage
failure (disk full, I/O error) is kept in `error`; from then on the thread only drains the
queue, and `put` raises `WriterFailed` so the scan stops at once, every tile committed before
it intact.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from slidescan.app.engine import TileOutcome
from slidescan.app.image_worker import MadeItem
from slidescan.app.plan import Tile
from slidescan.app.store import ScanWriter, StorageError
from slidescan.app.tissue import thumbnail as make_thumbnail

_SENTINEL = object()
T = TypeVar("T")


class WriterFailed(Exception):
    """The writer thread failed; `TileWriterThread.error` says why."""


@dataclass
class WriteItem:
    """One tile on its way to the file."""

    tile: Tile
    outcome: TileOutcome
    fov_um: tuple[float, float]


@dataclass
class _Call:
    fn: Callable[[ScanWriter], Any]
    future: Future


class TileWriterThread:
    def __init__(
        self,
        writer: ScanWriter,
        on_written: Callable[[WriteItem, np.ndarray | None], None],
        queue_size: int = 2,
        on_made: Callable[[MadeItem, np.ndarray], None] = lambda item, thumb: None,
    ) -> None:
        self.writer = writer
        self.on_written = on_written
        self.on_made = on_made
        self.error: StorageError | None = None
        self.written = 0
        self.made = 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(1, queue_size))
        self._thread = threading.Thread(target=self._loop, name="scan-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, item: WriteItem | MadeItem) -> None:
        """Queue a tile (or a made image), waiting while the queue is full; raises
        `WriterFailed` once the writer has failed."""
        while True:
            if self.error is not None:
                raise WriterFailed(str(self.error))
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def call(self, fn: Callable[[ScanWriter], T]) -> T:
        """`fn(writer)` on the writer thread, after everything queued before it; its result
        (or its exception). Raises `WriterFailed` once the writer has failed."""
        future: Future = Future()
        self.put(_Call(fn, future))  # type: ignore[arg-type]
        return future.result()

    def flush(self) -> None:
        """Wait until everything queued so far is written."""
        self.call(lambda writer: None)

    def finish(self) -> None:
        """Write what is queued, then stop the thread."""
        self._queue.put(_SENTINEL)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _SENTINEL:
                return
            if isinstance(item, _Call):
                self._run_call(item)
                continue
            if self.error is not None:
                continue  # drain after a failure; the scan thread is stopping
            if isinstance(item, MadeItem):
                self._write_made(item)
                continue
            assert isinstance(item, WriteItem)
            out = item.outcome
            try:
                source = out.image if out.image is not None else out.look
                thumb = make_thumbnail(source) if source is not None else None
                shots = [(s.z_um, np.asarray(s.frame.image)) for s in out.shots]
                self.writer.append(out.record, out.image, thumb, shots)
            except BaseException as exc:
                self.error = self._storage_error(exc)
                continue
            self.written += 1
            self.on_written(item, thumb)

    def _run_call(self, call: _Call) -> None:
        if self.error is not None:
            call.future.set_exception(WriterFailed(str(self.error)))
            return
        try:
            call.future.set_result(call.fn(self.writer))
        except BaseException as exc:
            call.future.set_exception(exc)

    def _write_made(self, item: MadeItem) -> None:
        if not self.writer.is_pending(item.index):
            return  # made already (or taken again since): nothing to commit
        try:
            thumb = make_thumbnail(item.image)
            self.writer.append_made(
                item.index,
                item.image,
                item.kind,
                compute_s=item.seconds,
                shots=item.shots,
                thumb=thumb,
            )
        except BaseException as exc:
            self.error = self._storage_error(exc)
            return
        self.made += 1
        self.on_made(item, thumb)

    def _storage_error(self, exc: BaseException) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        return StorageError(f"writing {self.writer.path} failed: {type(exc).__name__}: {exc}")
