"""Reads the slide viewer's chunks on a thread of its own, newest wish first.

The viewer says which chunks it wants (`want`, nearest the view's centre first) every time
the view changes; the list replaces the previous one, so chunks that scrolled away before
their turn are never read. One chunk is read at a time (`read_scaled` composes it from the
tiles under it) and handed to the GUI thread by a queued signal; until the viewer says it has
taken it (`taken`), a chunk on its way is not read again, however often the view changes
meanwhile (between the signal and its handling the chunk is in neither the loader nor the
viewer's cache). A source swapped out
(`set_source`) bumps the generation: chunks of the old one still in flight are dropped by
the viewer. The thread runs at the background priority of the device worker (worker.py).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

import numpy as np
from PySide6 import QtCore

from slidescan.app.gui.slide_chunks import CHUNK, ChunkKey
from slidescan.app.gui.worker import BACKGROUND_NICE, _lower_priority

log = logging.getLogger(__name__)


class ScaledSource(Protocol):
    """What the viewer reads: a mosaic (`ScanMosaic`) or anything shaped like one."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def read_scaled(self, y0: int, x0: int, height: int, width: int, factor: int) -> Any: ...


class ChunkLoader(QtCore.QObject):
    #: (ChunkKey, image, generation): a chunk read.
    loaded = QtCore.Signal(object, object, int)
    #: (ChunkKey, message, generation): a chunk that could not be read.
    failed = QtCore.Signal(object, str, int)

    def __init__(
        self, chunk: int = CHUNK, nice: int = BACKGROUND_NICE, parent: QtCore.QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.chunk = chunk
        self._nice = nice
        self._cond = threading.Condition()
        self._queue: list[ChunkKey] = []
        self._source: ScaledSource | None = None
        self._generation = 0
        self._reading: ChunkKey | None = None
        self._delivering: set[ChunkKey] = set()  # sent to the GUI thread, not yet taken
        self._stop = False
        self._thread: threading.Thread | None = None
        #: Chunks read so far (tests, benchmarks).
        self.reads = 0

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def busy(self) -> bool:
        with self._cond:
            return bool(self._queue) or self._reading is not None

    def set_source(self, source: ScaledSource | None) -> int:
        """Read from `source` from now on (None: nothing); returns the new generation."""
        with self._cond:
            self._source = source
            self._queue = []
            self._delivering.clear()
            self._generation += 1
            return self._generation

    def want(self, keys: list[ChunkKey]) -> None:
        """Read these chunks, in this order, instead of whatever was wanted before."""
        with self._cond:
            self._queue = [k for k in keys if k != self._reading and k not in self._delivering]
            if self._queue and self._thread is None and not self._stop:
                self._thread = threading.Thread(
                    target=self._run, name="slidescan-slide-loader", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def taken(self, key: ChunkKey) -> None:
        """The GUI thread has handled `key`'s signal (cached it, or dropped it)."""
        with self._cond:
            self._delivering.discard(key)

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Block until nothing is queued or being read (tests). True when idle."""
        end = time.monotonic() + timeout_s
        while self.busy:
            if time.monotonic() > end:
                return False
            time.sleep(0.005)
        return True

    def shutdown(self, timeout_s: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._queue = []
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    def _run(self) -> None:
        _lower_priority(self._nice)
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                key = self._queue.pop(0)
                source, generation = self._source, self._generation
                self._reading = key
            try:
                if source is None:
                    continue
                image = self._read(source, key)
            except Exception as exc:  # a file closed under it, a damaged tile: said, not fatal
                log.debug("slide chunk %s not read: %s", key, exc)
                self._deliver(key, generation)
                self.failed.emit(key, str(exc), generation)
            else:
                self.reads += 1
                self._deliver(key, generation)
                self.loaded.emit(key, image, generation)
            finally:
                with self._cond:
                    self._reading = None

    def _deliver(self, key: ChunkKey, generation: int) -> None:
        """Mark `key` as on its way, before its signal goes (the GUI may take it at once)."""
        with self._cond:
            if generation == self._generation:
                self._delivering.add(key)

    def _read(self, source: ScaledSource, key: ChunkKey) -> np.ndarray:
        y0, x0, h, w = key.level_rect(tuple(source.shape), self.chunk)
        return np.ascontiguousarray(source.read_scaled(y0, x0, h, w, key.factor))
