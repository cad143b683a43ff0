"""The image worker: makes tile images from raw shots (`ImageMaker`) on a background thread,
so the stage never waits for the computation.

The scan thread `offer`s each pending tile's shots; when the worker is busy and its small queue
is full the offer is declined at once and the tile simply stays pending in the scan file (its
shots are there), so the scan goes on and memory stays flat however far the worker falls
behind. After the last tile the runner `submit`s the backlog (read back from the file one tile
at a time, waiting for room). Each image made goes to `deliver` (the writer thread, which
commits it as the tile's next version). A failure to make one image is logged and reported
through `on_error`; the tile stays pending (resume or `slidescan refocus` tries again).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from slidescan.focus.protocol import ImageMaker

log = logging.getLogger(__name__)

_STOP = object()


@dataclass
class MadeItem:
    """An image made for planned tile `index` from its `shots`, and how long it took."""

    index: int
    image: np.ndarray
    kind: str
    seconds: float
    shots: list[np.ndarray]


class ImageWorker:
    """One background thread making images with `maker` (see the module docstring)."""

    def __init__(
        self,
        maker: ImageMaker,
        deliver: Callable[[MadeItem], None],
        on_error: Callable[[int, str], None] = lambda index, message: None,
        capacity: int = 2,
    ) -> None:
        self.maker = maker
        self.deliver = deliver
        self.on_error = on_error
        self.made = 0
        self.declined = 0
        self.seconds = 0.0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(1, capacity))
        self._idle = threading.Condition()
        self._busy = 0  # items queued or being made
        self._thread = threading.Thread(target=self._loop, name="scan-images", daemon=True)
        self._thread.start()

    # -- the scan thread's side ------------------------------------------------------------------
    def offer(self, index: int, shots: Sequence[tuple[float, np.ndarray]]) -> bool:
        """Queue a tile if there is room now; False (and nothing queued) when there is not."""
        with self._idle:
            self._busy += 1
        try:
            self._queue.put_nowait((index, list(shots)))
            return True
        except queue.Full:
            self._done()
            self.declined += 1
            return False

    def submit(self, index: int, shots: Sequence[tuple[float, np.ndarray]]) -> None:
        """Queue a tile, waiting for room (the backlog after the last tile)."""
        with self._idle:
            self._busy += 1
        self._queue.put((index, list(shots)))

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every queued tile has been made and delivered; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    @property
    def backlog(self) -> int:
        """Tiles queued or being made."""
        return self._busy

    def stop(self) -> None:
        """Finish what is queued, then end the thread."""
        self._queue.put(_STOP)
        self._thread.join()

    # -- the worker thread -----------------------------------------------------------------------
    def _done(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            index, shots = item  # type: ignore[misc]
            try:
                t0 = time.perf_counter()
                image = self.maker.make_image(shots)
                seconds = time.perf_counter() - t0
                self.seconds += seconds
                self.deliver(
                    MadeItem(index, image, self.maker.image_kind, seconds, [s for _, s in shots])
                )
                self.made += 1
            except Exception as exc:  # one tile's failure: it stays pending
                log.exception("making the image of tile %d failed", index)
                self.on_error(index, f"{type(exc).__name__}: {exc}")
            finally:
                self._done()
