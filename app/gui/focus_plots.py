"""Focus plots: what the focus method measured on the current tile, and the focus surface.

`FocusCurvePlot` draws a `FocusDone` event: the metric against z (for a learned method, the
distance to focus the network read at each shot, with its line extended to the zero it
predicts), the z positions where frames were taken, the hint the method started from, the z
it chose and, on the simulator, the true focus. `FocusSurfacePlot` interpolates the focus z of the tiles done
so far onto a grid (linear inside their hull, nearest outside) and shows it as a heat map over
the slide with the tile centres on top.
"""

from __future__ import annotations

import logging
import threading
import weakref

import numpy as np
import shiboken6
from PySide6 import QtCore, QtWidgets
from scipy.interpolate import griddata

from slidescan.app.events import FocusDone
from slidescan.app.gui._pg import FOCUS_CMAP, add_grid, pg
from slidescan.focus.registry import METRIC_AXIS, curve_axis

log = logging.getLogger(__name__)

_Z_LABEL = "z (µm)"


class FocusCurvePlot(pg.PlotWidget):
    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setLabel("bottom", _Z_LABEL)
        self.setLabel("left", METRIC_AXIS)
        self.grid = add_grid(self)
        self.setMinimumSize(240, 180)
        self.legend = self.addLegend(offset=(10, 10), labelTextSize="8pt")
        self.curve = self.plot(
            [],
            [],
            pen=pg.mkPen((90, 170, 255), width=2),
            symbol="o",
            symbolSize=5,
            symbolBrush=(90, 170, 255),
            name="measured",
        )
        # learned methods: from the last shot down to zero distance at the predicted focus
        self.extrapolation = self.plot(
            [], [], pen=pg.mkPen((90, 170, 255), width=1, style=QtCore.Qt.PenStyle.DashLine)
        )
        self.zero = pg.InfiniteLine(pos=0.0, angle=0, pen=pg.mkPen((120, 120, 120), width=1))
        self.zero.setVisible(False)
        self.addItem(self.zero, ignoreBounds=True)
        self.shots = pg.ScatterPlotItem(
            size=11, symbol="t1", brush=pg.mkBrush(255, 150, 40), pen=None, name="frames taken"
        )
        self.addItem(self.shots)
        # No SI prefixes: with them every range change re-lays out the axis label, which makes
        # each new tile repaint the plot once more.
        for axis in ("left", "bottom"):
            self.getAxis(axis).enableAutoSIPrefix(False)
        self.chosen = pg.InfiniteLine(
            angle=90,
            pen=pg.mkPen((60, 220, 90), width=2),
            label="focus",
            labelOpts={"position": 0.92, "color": (60, 220, 90)},
        )
        self.hint = pg.InfiniteLine(
            angle=90,
            pen=pg.mkPen((170, 170, 170), width=1, style=QtCore.Qt.PenStyle.DashLine),
            label="hint",
            labelOpts={"position": 0.08, "color": (170, 170, 170)},
        )
        self.truth = pg.InfiniteLine(
            angle=90,
            pen=pg.mkPen((255, 90, 200), width=1, style=QtCore.Qt.PenStyle.DotLine),
            label="true",
            labelOpts={"position": 0.75, "color": (255, 90, 200)},
        )
        for line in (self.hint, self.truth, self.chosen):
            line.setVisible(False)
            self.addItem(line, ignoreBounds=True)
        self.setTitle("focus: no tile yet", size="9pt")
        self.last_event: FocusDone | None = None

    def show_focus(self, ev: FocusDone) -> None:
        self.last_event = ev
        z = np.asarray(ev.curve_z_um, dtype=float)
        v = np.asarray(ev.curve_values, dtype=float)
        ok = np.isfinite(z) & np.isfinite(v)
        z, v = z[ok], v[ok]
        order = np.argsort(z, kind="stable")
        prediction = ev.curve_kind == "prediction"
        if prediction:
            # the value is the focus z a shot's pair predicted: show what the network read,
            # the distance up to it, which falls to zero at the predicted focus
            v = v - z
        self.curve.setData(z[order], v[order])
        if prediction:
            left = "predicted distance to focus (µm)"
        else:  # a fallback's curve is another method's: the generic name
            left = METRIC_AXIS if ev.fallback else curve_axis(ev.method)
        if self.getAxis("left").labelText != left:  # unchanged text: no relayout
            self.setLabel("left", left)
        self.zero.setVisible(prediction)
        if prediction and z.size and np.isfinite(ev.z_um):
            top = int(order[-1])
            self.extrapolation.setData([z[top], ev.z_um], [v[top], 0.0])
        else:
            self.extrapolation.setData([], [])
        shots = np.asarray(ev.curve_z_um, dtype=float)
        shots = shots[np.isfinite(shots)]
        if shots.size:
            base = 0.0 if prediction else (float(v.min()) if v.size else 0.0)
            self.shots.setData(shots, np.full(shots.size, base))
        else:
            self.shots.setData([], [])
        self.chosen.setPos(ev.z_um)
        self.chosen.setVisible(True)
        self.hint.setPos(ev.hint_z_um)
        self.hint.setVisible(bool(np.isfinite(ev.hint_z_um)))
        truth = ev.true_focus_um
        self.truth.setVisible(bool(truth is not None and np.isfinite(truth)))
        if truth is not None and np.isfinite(truth):
            self.truth.setPos(truth)
        self.setTitle(self.describe(ev), size="9pt")
        xs = [ev.z_um, ev.hint_z_um] + ([truth] if truth is not None else [])
        xs += list(z) + list(shots)
        xs = [x for x in xs if np.isfinite(x)]
        if xs:
            lo, hi = min(xs), max(xs)
            pad = max(0.5, 0.08 * (hi - lo))
            self.setXRange(lo - pad, hi + pad, padding=0)
        # Both ranges set here rather than auto-ranged: auto-range is worked out while the plot
        # paints, changes the view and makes it paint again (each paint ~8 ms of GUI thread).
        ys = list(v) + ([0.0] if prediction else [])  # a prediction's line runs down to zero
        if ys:
            lo, hi = min(ys), max(ys)
            pad = 0.08 * (hi - lo) or max(0.1 * abs(hi), 1e-6)
            self.setYRange(lo - pad, hi + pad, padding=0)

    @staticmethod
    def describe(ev: FocusDone) -> str:
        text = f"tile {ev.index}: {ev.method}, {ev.frames} frames, conf {ev.confidence:.2f}"
        text += f", z {ev.z_um:.2f} µm"
        if ev.true_focus_um is not None and np.isfinite(ev.true_focus_um):
            text += f", error {ev.z_um - ev.true_focus_um:+.2f} µm"
        if ev.fallback:
            text += f" [fallback: {ev.fallback}]"
        elif not ev.ok:
            text += " [failed]"
        return text


def _spans_an_area(pts: np.ndarray) -> bool:
    """True unless the points are (nearly) collinear, so a Delaunay triangulation exists.
    (Plain arithmetic: no LAPACK call, whose threads can stall a busy GUI thread.)"""
    if len(pts) < 3:
        return False
    d = pts - pts[0]
    far = d[np.argmax(np.einsum("ij,ij->i", d, d))]
    size = float(np.hypot(*far))
    if size == 0:
        return False
    cross = np.abs(d[:, 0] * far[1] - d[:, 1] * far[0])
    return bool(cross.max() > 1e-6 * size * size)


def interpolate_surface(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    bounds: tuple[float, float, float, float],
    size: int = 64,
) -> np.ndarray:
    """Focus z on a (size, size) grid over `bounds` (x0, y0, x1, y1): linear, nearest outside."""
    x0, y0, x1, y1 = bounds
    gx, gy = np.meshgrid(np.linspace(x0, x1, size), np.linspace(y0, y1, size))
    pts = np.column_stack([x, y])
    near = griddata(pts, z, (gx, gy), method="nearest")
    if _spans_an_area(pts):
        lin = griddata(pts, z, (gx, gy), method="linear")
        near = np.where(np.isfinite(lin), lin, near)
    return near.astype(np.float32)


class _Bridge(QtCore.QObject):
    """Carries results from worker threads to the GUI thread. It lives as long as the program,
    so a thread never emits on an object that the GUI thread may be deleting (a plot closed
    while its surface is being computed); the slot checks the plot is still there."""

    done = QtCore.Signal(object, object)  # weakref to the plot, result
    _instance: _Bridge | None = None

    @classmethod
    def instance(cls) -> _Bridge:
        if cls._instance is None:
            cls._instance = cls()
            cls._instance.done.connect(cls._deliver)
        return cls._instance

    @staticmethod
    def _deliver(ref: weakref.ref, result: tuple) -> None:
        plot = ref()
        if plot is not None and shiboken6.isValid(plot):
            plot._show(result)


class FocusSurfacePlot(pg.PlotWidget):
    """Heat map of the focus z over the slide from the tiles focused so far."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setLabel("bottom", "stage x (µm)")
        self.setLabel("left", "stage y (µm)")
        self.getPlotItem().getViewBox().invertY(True)
        self.getPlotItem().getViewBox().setAspectLocked(True)
        self.setMinimumSize(240, 180)
        self.image = pg.ImageItem()
        self.addItem(self.image)
        self.points = pg.ScatterPlotItem(
            size=5, brush=pg.mkBrush(255, 255, 255, 200), pen=pg.mkPen(0, 0, 0, 200)
        )
        self.points.setZValue(5)
        self.addItem(self.points)
        self.colorbar = pg.ColorBarItem(
            values=(0, 1), colorMap=FOCUS_CMAP, interactive=False, width=12, label="focus z (µm)"
        )
        self.colorbar.setImageItem(self.image, insert_in=self.getPlotItem())
        self.setTitle("focus surface", size="9pt")
        self._x: list[float] = []
        self._y: list[float] = []
        self._z: list[float] = []
        self.bounds: tuple[float, float, float, float] | None = None
        self._busy = False
        self._again = False
        self._generation = 0
        self.updated = 0  # surfaces shown so far (tests wait on it)

    def clear_points(self) -> None:
        self._generation += 1  # a surface still being computed is for the old points
        self._x.clear()
        self._y.clear()
        self._z.clear()
        self.points.setData([], [])
        self.image.clear()

    def set_bounds(self, bounds: tuple[float, float, float, float] | None) -> None:
        """The area to fill (the scan region); None: the tiles' bounding box."""
        self.bounds = bounds

    def add_point(self, x: float, y: float, z: float) -> None:
        if np.isfinite(z):
            self._x.append(float(x))
            self._y.append(float(y))
            self._z.append(float(z))

    def set_points(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> None:
        self.clear_points()
        for xi, yi, zi in zip(x, y, z, strict=True):
            self.add_point(xi, yi, zi)
        self.redraw()

    @property
    def n_points(self) -> int:
        return len(self._z)

    def redraw(self) -> None:
        """Interpolate on a background thread (scipy's triangulation can take tens of ms on a
        busy machine); the GUI thread only puts the result on screen."""
        if not self._z:
            return
        if self._busy:
            self._again = True
            return
        x, y, z = np.array(self._x), np.array(self._y), np.array(self._z)
        if self.bounds is not None:
            bx0, by0, bx1, by1 = self.bounds
        else:
            bx0, bx1, by0, by1 = x.min(), x.max(), y.min(), y.max()
        if bx1 - bx0 < 1e-6:
            bx0, bx1 = bx0 - 1, bx1 + 1
        if by1 - by0 < 1e-6:
            by0, by1 = by0 - 1, by1 + 1
        bounds = (float(bx0), float(by0), float(bx1), float(by1))
        generation = self._generation
        ref = weakref.ref(self)
        _Bridge.instance()  # created here, on the GUI thread
        self._busy = True
        self._again = False

        def work() -> None:
            try:
                grid = interpolate_surface(x, y, z, bounds)
            except Exception:  # a degenerate set of points: show them without a surface
                log.debug("focus surface interpolation failed", exc_info=True)
                grid = None
            _Bridge.instance().done.emit(ref, (generation, x, y, z, bounds, grid))

        threading.Thread(target=work, name="focus-surface", daemon=True).start()

    def _show(self, result: tuple) -> None:
        generation, x, y, z, (bx0, by0, bx1, by1), grid = result
        self._busy = False
        if generation != self._generation:
            if self._z:
                self.redraw()
            return
        lo, hi = float(z.min()), float(z.max())
        if hi - lo < 0.1:
            lo, hi = (lo + hi) / 2 - 0.05, (lo + hi) / 2 + 0.05
        if grid is not None:
            self.image.setImage(grid, autoLevels=False)
            self.image.setRect(QtCore.QRectF(bx0, by0, bx1 - bx0, by1 - by0))
        self.colorbar.setLevels((lo, hi))
        self.points.setData(x, y)
        self.setTitle(
            f"focus surface: {len(z)} tiles, z {lo:.2f} to {hi:.2f} µm (range {hi - lo:.2f} µm)"
            if len(z) > 1
            else "focus surface: 1 tile",
            size="9pt",
        )
        self.updated += 1
        if self._again:
            self.redraw()
