"""What a running scan looks like in the main window: thumbnails filling the tile map, the
current tile's focus curve, the focus surface, progress, and the scan's frames in the live view.

Events arrive from the runner (through the relay) faster than plots can repaint. `ScanViews`
only records what an event changes and marks the views it touches; `scheduler.RoundRobin`
refreshes one view per event-loop turn, each no more often than its own interval, so no single
turn repaints several heavy plots. When the scan finishes, `settled` is emitted once every view
has caught up.

A focus method that makes a tile's image after the tile (TSVA: two raw shots fused on a worker
thread) leaves the tile pending (`FocusDone.image_source`); `pending` holds those tiles until
their `ImageMade` arrives with the made image's thumbnail, which replaces the stand-in (the
first shot) on the map. The panel says how many wait, and after the last tile shows the
backlog finishing (`BacklogProgress`).
"""

from __future__ import annotations

from PySide6 import QtCore

from slidescan.app.events import (
    BacklogProgress,
    Finished,
    FocusDone,
    FrameWritten,
    ImageMade,
    Progress,
    RunnerState,
    ScanEvent,
    ScanWarning,
    StateChanged,
    TileStarted,
)
from slidescan.app.gui.focus_plots import FocusCurvePlot, FocusSurfacePlot
from slidescan.app.gui.live_view import LiveView
from slidescan.app.gui.scan_panel import ScanPanel
from slidescan.app.gui.scheduler import RoundRobin
from slidescan.app.gui.tile_map import TileMap
from slidescan.app.records import PENDING

#: How often (ms) the live view shows the scan's newest frame (focus shots too).
SCAN_FRAME_MS = 250


def focus_quality(ev: FocusDone) -> float:
    """0..1 for the overlay: the method's confidence, 0 when it failed or fell back."""
    if not ev.ok or ev.fallback:
        return 0.0
    return float(min(max(ev.confidence, 0.0), 1.0))


class ScanViews(QtCore.QObject):
    #: Every view has caught up with the scan's `Finished` event.
    settled = QtCore.Signal(object)
    #: Where the scan has put the stage: a dict with the axes known ("x", "y", "z"), um.
    positionSeen = QtCore.Signal(object)
    #: Text for the status bar's scan field.
    statusText = QtCore.Signal(str)

    def __init__(
        self,
        tile_map: TileMap,
        curve: FocusCurvePlot,
        surface: FocusSurfacePlot,
        panel: ScanPanel,
        live: LiveView,
        parent: QtCore.QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._map = tile_map
        self._curve = curve
        self._surface = surface
        self._panel = panel
        self.fov_um = (0.0, 0.0)
        self._pending_focus: FocusDone | None = None
        self._pending_thumbs: dict[int, FrameWritten] = {}
        self._pending_progress: Progress | None = None
        self._pending_tile: TileStarted | None = None
        #: Tiles taken whose image is still being made (see the module).
        self.pending: set[int] = set()
        self._made: dict[int, ImageMade] = {}
        self._backlog: BacklogProgress | None = None
        self._images_seen = False  # the scan's method makes its images after the tile
        self._pending_dirty = False
        self._overlay_dirty = False
        self._xyz: dict[str, float] = {}
        self.scheduler = RoundRobin(40, self)
        self.scheduler.add("status", self._refresh_status)
        self.scheduler.add("map", self._refresh_map, 200)
        self.scheduler.add("curve", self._draw_focus, 250)
        self.scheduler.add("live", live.poll, 100)
        self.scheduler.add("surface", surface.redraw, 1000)
        self._frame_timer = QtCore.QTimer(self)
        self._frame_timer.setInterval(SCAN_FRAME_MS)
        self._frame_timer.timeout.connect(lambda: self.scheduler.mark("live"))

    # -- start and end -----------------------------------------------------------------------
    def scan_started(self, total: int) -> None:
        self._xyz = {}
        self.pending.clear()
        self._made.clear()
        self._backlog = None
        self._images_seen = False
        self._pending_dirty = True
        self._frame_timer.start()
        self._surface.clear_points()
        self._panel.reset_progress(total)
        self._panel.set_state(RunnerState.RUNNING, "starting")
        self.statusText.emit("scan: starting")

    def scan_ended(self) -> None:
        self._frame_timer.stop()
        self._panel.set_state(None)
        self._map.refresh_overlay()
        if self._images_seen:  # a stopped scan's waiting tiles keep their shots for later
            self._panel.show_images_left(len(self.pending))

    # -- events (GUI thread) -----------------------------------------------------------------
    def on_event(self, ev: ScanEvent) -> None:
        """Record what an event changes; the views catch up one per event-loop turn."""
        mark = self.scheduler.mark
        if isinstance(ev, FrameWritten):
            if not ev.skipped or ev.thumbnail.size > 1:
                self._pending_thumbs[ev.index] = ev
            mark("map")
            mark("live")
        elif isinstance(ev, Progress):
            self._pending_progress = ev
            mark("status")
        elif isinstance(ev, TileStarted):
            self._pending_tile = ev
            self._xyz.update(x=ev.x_um, y=ev.y_um)
            mark("map")
            mark("status")
        elif isinstance(ev, FocusDone):
            self._focus_done(ev)
        elif isinstance(ev, ImageMade):
            self.pending.discard(ev.index)
            self._made[ev.index] = ev
            self._images_seen = self._pending_dirty = True
            mark("map")
            mark("status")
        elif isinstance(ev, BacklogProgress):
            self._backlog = ev
            self._images_seen = True
            mark("status")
        elif isinstance(ev, ScanWarning):
            self._panel.add_warning(ev.message)
        elif isinstance(ev, StateChanged):
            self._panel.set_state(ev.state, ev.message)
            self.statusText.emit(f"scan: {ev.state.value}")
        elif isinstance(ev, Finished):
            for name in ("status", "map", "curve", "surface"):
                mark(name)
            self._overlay_dirty = True
            self.scheduler.when_idle(lambda: self.settled.emit(ev))

    def _focus_done(self, ev: FocusDone) -> None:
        self._xyz["z"] = ev.z_um
        self._pending_focus = ev
        if ev.image_source == PENDING:
            self.pending.add(ev.index)
            self._images_seen = self._pending_dirty = True
        tile = self._map.planned.get(ev.index)
        if tile is not None:
            self._surface.add_point(tile.x_um, tile.y_um, ev.z_um)
            self.scheduler.mark("surface")
        self._map.set_tile_focus(ev.index, ev.z_um, focus_quality(ev))
        self._overlay_dirty = True
        for name in ("curve", "live", "status"):
            self.scheduler.mark(name)

    # -- the views, one per turn -------------------------------------------------------------
    def _refresh_status(self) -> None:
        p = self._pending_progress
        if p is not None:
            self._pending_progress = None
            self._panel.show_progress(p)
            self.statusText.emit(f"scan: {p.done}/{p.total} tiles")
        b = self._backlog
        if b is not None:  # after the last tile: no more tile progress comes
            self._panel.show_backlog(b)
            self.statusText.emit(f"scan: making images {b.done}/{b.total}")
        elif self._images_seen:
            self._panel.show_images_waiting(len(self.pending))
        if self._xyz:
            self.positionSeen.emit(dict(self._xyz))

    def _refresh_map(self) -> None:
        thumbs, self._pending_thumbs = self._pending_thumbs, {}
        for ev in thumbs.values():
            self._map.add_tile_image(
                ev.index, ev.x_um, ev.y_um, ev.width_um, ev.height_um, ev.thumbnail, dim=ev.skipped
            )
        made, self._made = self._made, {}
        for ev in made.values():  # after the stand-ins: the made image replaces its tile's
            self._map.replace_tile_image(ev.index, ev.thumbnail)
        if self._pending_dirty:
            self._pending_dirty = False
            self._map.set_pending(self.pending)
        t = self._pending_tile
        if t is not None:
            self._pending_tile = None
            self._map.set_current_tile(t.x_um, t.y_um, *self.fov_um)
        if self._overlay_dirty and self._map.overlay_mode != "none":
            self._overlay_dirty = False
            self._map.refresh_overlay()

    def _draw_focus(self) -> None:
        if self._pending_focus is not None:
            self._curve.show_focus(self._pending_focus)
            self._pending_focus = None
