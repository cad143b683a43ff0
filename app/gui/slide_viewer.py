"""The slide viewer: the stitched slide, panned and zoomed across its pyramid levels.

Only what is on screen is read. The view picks the level its zoom needs (slide_chunks.py:
the coarsest whose pixels are no larger than a screen pixel), asks the loader thread for the
chunks of that level the view meets and are not cached yet (slide_loader.py, nearest the
centre first; a chunk that scrolls away before its turn is never read), and shows each as it
arrives. Until a chunk arrives the cached chunks of the next coarser levels (and of one finer
level) stand in for it, so a pan or zoom never shows an empty hole where something was. The
GUI thread only places cached images: a view change costs a few dictionary look-ups, view
changes are coalesced to one update per event-loop turn, nothing on this thread touches the
scan file, and while a viewer exists the GUI thread waits at most 1 ms for the GIL
(gil_share.py).

Overlays: tile boundaries (where the stitching placed each tile), a per-tile focus colour
(focus z, or, where the simulator knew the true focus, the focus error), the selected tile,
a scale bar. A click on a tile emits its planned index (`tileClicked`): the review opens its
record. Coordinates are level-0 mosaic pixels, x right, y down.
"""

from __future__ import annotations

import logging

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from slidescan.app.gui import gil_share
from slidescan.app.gui._pg import FOCUS_CMAP, pg
from slidescan.app.gui.slide_chunks import (
    CACHE_BYTES,
    CHUNK,
    ChunkCache,
    ChunkKey,
    coarsest_factor,
    factor_for,
    visible_chunks,
)
from slidescan.app.gui.slide_loader import ChunkLoader
from slidescan.app.gui.slide_model import ViewerSlide
from slidescan.app.gui.slide_overlays import RectsItem, ScaleBar

log = logging.getLogger(__name__)

OVERLAYS = ("none", "focus z", "focus error")
#: Diverging colours for the focus error (blue below focus, red above).
ERROR_CMAP = pg.colormap.get("CET-D1A")
#: Chunk items kept hidden for reuse (creating an ImageItem costs more than re-filling one).
POOL = 48


class SlideViewer(QtWidgets.QWidget):
    #: The planned index of a tile clicked on the slide.
    tileClicked = QtCore.Signal(int)
    #: The person asks to stitch the file (the slide shows stage positions).
    stitchRequested = QtCore.Signal()

    def __init__(
        self,
        chunk: int = CHUNK,
        cache_bytes: int = CACHE_BYTES,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.chunk = chunk
        self.slide: ViewerSlide | None = None
        self.cache = ChunkCache(cache_bytes)
        # No Qt parent: the loader's thread may still emit on it after this viewer is deleted
        # (a slow read when the window closes); Python keeps it alive until the thread ends.
        self.loader = ChunkLoader(chunk)
        self.loader.loaded.connect(self._chunk_loaded)
        self.loader.failed.connect(self._chunk_failed)
        self._items: dict[ChunkKey, pg.ImageItem] = {}
        self._pool: list[pg.ImageItem] = []
        self._levels: tuple[float, float] | None = None
        self._coarsest = 1
        self.factor = 1
        self.missing: list[ChunkKey] = []
        self._failed: set[ChunkKey] = set()
        self.failures = 0
        self._build()
        self._update_timer = QtCore.QTimer(self)
        self._update_timer.setSingleShot(True)
        self._update_timer.setInterval(0)
        self._update_timer.timeout.connect(self.update_view)
        self.view.sigRangeChanged.connect(self._schedule)
        # the loader composes chunks in Python between its numpy calls: short GIL waits for
        # the repaints (gil_share.py), also in a review window opened on its own
        gil_share.favour_gui_thread()
        self._favoured = True

    # ----------------------------------------------------------------------------------------
    # construction
    # ----------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.graphics = pg.GraphicsLayoutWidget()
        self.view = self.graphics.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.view.disableAutoRange()
        self.colorbar = pg.ColorBarItem(
            values=(0, 1), colorMap=FOCUS_CMAP, interactive=False, width=12
        )
        self.colorbar.axis.setWidth(62)  # the tick values and, outside them, the label
        self.graphics.addItem(self.colorbar)
        self.colorbar.setVisible(False)
        self.focus_item = RectsItem()
        self.focus_item.setZValue(10)
        self.focus_item.setVisible(False)
        self.view.addItem(self.focus_item, ignoreBounds=True)
        self.outline_item = RectsItem(pg.mkPen(255, 220, 0, 170, width=1))
        self.outline_item.setZValue(20)
        self.outline_item.setVisible(False)
        self.view.addItem(self.outline_item, ignoreBounds=True)
        self.selected_item = QtWidgets.QGraphicsRectItem()
        pen = pg.mkPen(0, 220, 255, width=2)
        pen.setCosmetic(True)
        self.selected_item.setPen(pen)
        self.selected_item.setZValue(30)
        self.selected_item.setVisible(False)
        self.view.addItem(self.selected_item, ignoreBounds=True)
        self.scale_bar = ScaleBar(1.0)
        self.scale_bar.setParentItem(self.view)
        self.scale_bar.setZValue(40)
        self.scale_bar.setVisible(False)
        self.placeholder = pg.TextItem("no slide", color=(180, 180, 180), anchor=(0.5, 0.5))
        self.view.addItem(self.placeholder)
        self.graphics.scene().sigMouseClicked.connect(self._on_click)

        self.outlines_check = QtWidgets.QCheckBox("Tile boundaries")
        self.outlines_check.setToolTip("Outline each tile where the stitching placed it")
        self.outlines_check.toggled.connect(self._show_outlines)
        self.overlay_combo = QtWidgets.QComboBox()
        self.overlay_combo.addItems(OVERLAYS)
        self.overlay_combo.setToolTip(
            "Colour each tile by its focus z, or by its focus error where the true focus is "
            "known (simulator)"
        )
        self.overlay_combo.currentTextChanged.connect(self.set_overlay)
        fit = QtWidgets.QPushButton("Fit")
        fit.setToolTip("Show the whole slide")
        fit.clicked.connect(self.fit)
        self.status = QtWidgets.QLabel("")
        self.status.setStyleSheet("color: gray")
        self.note = QtWidgets.QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #e0a040")
        self.stitch_button = QtWidgets.QPushButton("Stitch…")
        self.stitch_button.setToolTip("Register the tiles' overlaps and store the placement")
        self.stitch_button.clicked.connect(self.stitchRequested)
        self.note_bar = QtWidgets.QWidget()
        nb = QtWidgets.QHBoxLayout(self.note_bar)
        nb.setContentsMargins(4, 0, 4, 0)
        nb.addWidget(self.note, 1)
        nb.addWidget(self.stitch_button)
        self.note_bar.setVisible(False)

        bar = QtWidgets.QHBoxLayout()
        bar.addWidget(self.outlines_check)
        bar.addWidget(QtWidgets.QLabel("Overlay"))
        bar.addWidget(self.overlay_combo)
        bar.addWidget(fit)
        bar.addStretch(1)
        bar.addWidget(self.status)
        v = QtWidgets.QVBoxLayout(self)
        v.setContentsMargins(0, 0, 0, 0)
        v.addWidget(self.note_bar)
        v.addWidget(self.graphics, 1)
        v.addLayout(bar)

    # ----------------------------------------------------------------------------------------
    # the slide
    # ----------------------------------------------------------------------------------------
    def set_slide(self, slide: ViewerSlide | None, keep_view: bool = False) -> None:
        """Show `slide` (None: nothing). The previous slide is closed (its file may go);
        `keep_view` keeps the zoom and position (a reload of the same slide)."""
        old = self.slide
        if old is not None:
            old.close()
        self.slide = slide
        self.loader.set_source(slide.source if slide is not None else None)
        self.cache.clear()
        self._clear_items()
        self.missing = []
        self._failed: set[ChunkKey] = set()
        self._levels = None
        self.selected_item.setVisible(False)
        self.placeholder.setVisible(slide is None)
        self.scale_bar.setVisible(slide is not None)
        if slide is None:
            self.note_bar.setVisible(False)
            self.outline_item.set_rects(np.zeros((0, 4)))
            self.focus_item.set_rects(np.zeros((0, 4)))
            self.status.setText("")
            return
        h, w = slide.shape[:2]
        if not (h > 0 and w > 0):  # no tile taken yet
            slide.close()
            self.slide = None
            self.loader.set_source(None)
            self.placeholder.setText("no tiles yet")
            self.placeholder.setVisible(True)
            self.scale_bar.setVisible(False)
            return
        self.placeholder.setText("no slide")
        self._coarsest = coarsest_factor(slide.shape, self.chunk)
        self.view.setLimits(
            xMin=-0.5 * w, xMax=1.5 * w, yMin=-0.5 * h, yMax=1.5 * h, minXRange=24, minYRange=24
        )
        self.scale_bar.pixel_size_um = slide.pixel_size_um
        self.outline_item.set_rects(slide.tile_rects())
        self.note_bar.setVisible(not slide.stitched)
        self.note.setText(
            "Not stitched: the tiles are shown where the stage put them, uncorrected."
            if not slide.stitched
            else ""
        )
        error_item = self.overlay_combo.model().item(OVERLAYS.index("focus error"))
        error_item.setEnabled(slide.has_truth)
        if self.overlay_combo.currentText() == "focus error" and not slide.has_truth:
            self.overlay_combo.setCurrentText("none")
        self.set_overlay(self.overlay_combo.currentText())
        if not keep_view:
            self.fit()
        self._schedule()

    def fit(self) -> None:
        if self.slide is None:
            return
        h, w = self.slide.shape[:2]
        self.view.setRange(QtCore.QRectF(0, 0, w, h), padding=0.02)

    def shutdown(self) -> None:
        """Stop the loader thread and let go of the slide (the window is closing)."""
        self.set_slide(None)
        self.loader.shutdown()
        if self._favoured:
            self._favoured = False
            gil_share.release()

    # ----------------------------------------------------------------------------------------
    # what is on screen
    # ----------------------------------------------------------------------------------------
    def visible_rect(self) -> tuple[float, float, float, float]:
        r = self.view.viewRect()
        return r.left(), r.top(), r.right(), r.bottom()

    def level0_per_screen_px(self) -> float:
        """Level-0 pixels one device pixel of the screen spans."""
        sx, sy = self.view.viewPixelSize()
        return max(sx, sy) / max(self.devicePixelRatioF(), 1.0)

    @property
    def settled(self) -> bool:
        """Nothing left to do for the current view: no view update pending, every chunk it
        wants shown, the loader idle (tests, screenshots, benchmarks wait for this)."""
        return not self._update_timer.isActive() and not self.missing and not self.loader.busy

    def _schedule(self, *_: object) -> None:
        if not self._update_timer.isActive():
            self._update_timer.start()

    def update_view(self) -> None:
        """Show what is cached for the view, ask the loader for what is not."""
        slide = self.slide
        if slide is None:
            return
        shape = slide.shape
        view = self.visible_rect()
        self.factor = factor_for(self.level0_per_screen_px(), self._coarsest)
        wanted = visible_chunks(view, self.factor, shape, self.chunk)
        self.missing = [k for k in wanted if self._wanted(k)]
        quick = slide.quick_factor
        first: list[ChunkKey] = []
        if self.missing and quick > self.factor:  # the thumbnails' level: there at once
            first = [k for k in visible_chunks(view, quick, shape, self.chunk) if self._wanted(k)]
        self.loader.want(first + self.missing)
        shown = [k for k in wanted if k in self.cache]
        if self.missing:  # stand-ins: what coarser (and one finer) levels have cached
            f = self.factor * 2
            while f <= max(self._coarsest, quick):
                shown += [k for k in visible_chunks(view, f, shape, self.chunk) if k in self.cache]
                f *= 2
            if self.factor > 1:
                finer = visible_chunks(view, self.factor // 2, shape, self.chunk)
                shown += [k for k in finer if k in self.cache]
        self._show(shown)
        self._status()

    def _wanted(self, key: ChunkKey) -> bool:
        return key not in self.cache and key not in self._failed

    def _show(self, keys: list[ChunkKey]) -> None:
        want = set(keys)
        for key in [k for k in self._items if k not in want]:
            self._release(key)
        for key in keys:
            if key in self._items:
                continue
            image = self.cache.get(key)
            if image is None:
                continue
            item = self._pool.pop() if self._pool else self._new_item()
            item.setImage(image, levels=self._display_levels(image), autoLevels=False)
            x, y, w, h = key.rect(self.slide.shape, self.chunk)
            item.setRect(QtCore.QRectF(x, y, w, h))
            item.setZValue(-float(np.log2(key.factor)))  # finer levels on top
            item.setVisible(True)
            self._items[key] = item

    def _new_item(self) -> pg.ImageItem:
        item = pg.ImageItem()
        self.view.addItem(item, ignoreBounds=True)
        return item

    def _release(self, key: ChunkKey) -> None:
        item = self._items.pop(key)
        if len(self._pool) < POOL:
            item.setVisible(False)
            self._pool.append(item)
        else:
            self.view.removeItem(item)

    def _clear_items(self) -> None:
        for key in list(self._items):
            self._release(key)

    def _display_levels(self, image: np.ndarray) -> tuple[float, float]:
        if image.dtype == np.uint8:
            return (0.0, 255.0)
        if self._levels is None:  # deeper images: the levels of the first chunk, kept
            lo, hi = np.percentile(image[::4, ::4], [0.1, 99.9])
            self._levels = (float(lo), float(max(hi, lo + 1)))
        return self._levels

    def _chunk_loaded(self, key: ChunkKey, image: np.ndarray, generation: int) -> None:
        self.loader.taken(key)
        if generation != self.loader.generation or self.slide is None:
            return  # read for a slide no longer shown
        for dropped in self.cache.put(key, image):
            if dropped in self._items:
                self._release(dropped)
        self._schedule()

    def _chunk_failed(self, key: ChunkKey, message: str, generation: int) -> None:
        self.loader.taken(key)
        if generation == self.loader.generation and self.slide is not None:
            self._failed.add(key)  # not asked for again until the slide is reloaded
            self.failures += 1
            self.status.setText(f"cannot read the slide: {message}")

    def _status(self) -> None:
        n = len(self.missing)
        um = self.level0_per_screen_px() * (self.slide.pixel_size_um if self.slide else 0)
        text = f"level 1:{self.factor} · {um:.2f} µm per screen pixel"
        if n:
            text += f" · loading {n}"
        self.status.setText(text)

    # ----------------------------------------------------------------------------------------
    # overlays
    # ----------------------------------------------------------------------------------------
    def _show_outlines(self, on: bool) -> None:
        self.outline_item.setVisible(on)

    def set_overlay(self, mode: str) -> None:
        """Colour the tiles by "focus z" or "focus error" ("none": no colour)."""
        if mode not in OVERLAYS:
            raise ValueError(f"unknown overlay {mode!r}; choose from {', '.join(OVERLAYS)}")
        if self.overlay_combo.currentText() != mode:
            with QtCore.QSignalBlocker(self.overlay_combo):
                self.overlay_combo.setCurrentText(mode)
        slide = self.slide
        values = None
        if slide is not None and mode == "focus z":
            values = slide.z_um
        elif slide is not None and mode == "focus error":
            values = slide.error_um
        if values is None or not np.isfinite(values).any():
            self.focus_item.setVisible(False)
            self.colorbar.setVisible(False)
            return
        finite = values[np.isfinite(values)]
        if mode == "focus z":
            lo, hi = float(finite.min()), float(finite.max())
            if hi - lo < 0.1:
                lo, hi = (lo + hi) / 2 - 0.05, (lo + hi) / 2 + 0.05
            cmap, label = FOCUS_CMAP, "focus z (µm)"
        else:
            top = max(float(np.abs(finite).max()), 0.1)
            lo, hi = -top, top
            cmap, label = ERROR_CMAP, "focus error (µm)"
        colours: list[QtGui.QColor | None] = []
        for v in values:
            if not np.isfinite(v):
                colours.append(None)
                continue
            c = cmap.map((float(v) - lo) / (hi - lo), mode="qcolor")
            c.setAlpha(120)
            colours.append(c)
        self.focus_item.set_rects(slide.cells(), colours)
        self.focus_item.setVisible(True)
        self.colorbar.setColorMap(cmap)
        self.colorbar.setLevels((lo, hi))
        self.colorbar.axis.setLabel(label)
        self.colorbar.setVisible(True)

    # ----------------------------------------------------------------------------------------
    # tiles
    # ----------------------------------------------------------------------------------------
    def set_selected(self, index: int | None) -> None:
        """Outline planned tile `index` (None: none)."""
        slide = self.slide
        k = None if slide is None or index is None else slide.position_of(index)
        if k is None or slide is None:
            self.selected_item.setVisible(False)
            return
        x, y = slide.positions[k]
        h, w = slide.tile_shape
        self.selected_item.setRect(QtCore.QRectF(float(x), float(y), w, h))
        self.selected_item.setVisible(True)

    def zoom_to_tile(self, index: int) -> None:
        slide = self.slide
        k = None if slide is None else slide.position_of(index)
        if k is None or slide is None:
            return
        x, y = slide.positions[k]
        h, w = slide.tile_shape
        self.view.setRange(QtCore.QRectF(float(x), float(y), w, h), padding=0.1)

    def _on_click(self, ev) -> None:  # pyqtgraph MouseClickEvent
        if ev.button() != QtCore.Qt.MouseButton.LeftButton or self.slide is None:
            return
        if not self.view.sceneBoundingRect().contains(ev.scenePos()):
            return
        p = self.view.mapSceneToView(ev.scenePos())
        k = self.slide.tile_at(p.x(), p.y())
        if k is None:
            return
        ev.accept()
        index = int(self.slide.indices[k])
        self.set_selected(index)
        self.tileClicked.emit(index)
