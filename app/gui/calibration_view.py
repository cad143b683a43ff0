"""A DeepFocus calibration shown as a plot: what the network read per plane and the curve fitted.

`CalibrationPlot` draws a `DeepFocusCalibration` (focus/deepfocus_calibration.py): the median
patch score per plane with its spread (half the inter-quartile range) as error bars, hollow
where fewer than half the patches could be judged; the fitted curve; the focus (z = 0) and the
search interval a tile reads (+/- `search_fwhm` x FWHM) as vertical lines over a shaded band.
`CalibrationDialog` puts it in a window with one line of what it is (objective, pixel size,
FWHM, fit rms, the share of patches judged, the file) and a Recalibrate button. A view only:
loading, saving and calibrating are `deepfocus_calibrator.py`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from slidescan.app.gui._pg import add_grid, pg
from slidescan.focus.learned.deepfocus_params import DeepFocusParams

if TYPE_CHECKING:
    from slidescan.focus.deepfocus_calibration import DeepFocusCalibration

#: A plane whose share of judgeable patches is below this is drawn hollow.
FEW_VALID = 0.5
#: The search interval of a tile, in FWHM either side of the hint (DeepFocusParams default).
SEARCH_FWHM = float(DeepFocusParams.model_fields["search_fwhm"].default)

_POINTS = (90, 170, 255)
_CURVE = (255, 150, 40)
_FOCUS = (60, 220, 90)
_INTERVAL = (200, 200, 200)


class CalibrationPlot(pg.PlotWidget):
    """Score against z relative to the fitted focus, for one calibration."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setLabel("bottom", "z − focus (µm)")
        self.setLabel("left", "blur score: ln(blur width / px)")
        for axis in ("left", "bottom"):
            self.getAxis(axis).enableAutoSIPrefix(False)
        self.grid = add_grid(self)
        self.setMinimumSize(480, 300)
        self.legend = self.addLegend(
            offset=(-10, 10), labelTextSize="9pt", brush=pg.mkBrush(0, 0, 0, 190)
        )
        self.band = pg.LinearRegionItem(
            movable=False, brush=pg.mkBrush(255, 255, 255, 18), pen=pg.mkPen(None)
        )
        self.band.setZValue(-50)
        self.addItem(self.band, ignoreBounds=True)
        self.errors = pg.ErrorBarItem(pen=pg.mkPen((*_POINTS, 150), width=1), beam=0.0)
        self.addItem(self.errors)
        self.points = pg.ScatterPlotItem(size=6)
        self.addItem(self.points)
        self.legend.addItem(
            pg.ScatterPlotItem(size=6, brush=pg.mkBrush(_POINTS), pen=pg.mkPen(_POINTS)),
            "median of the patches per plane ± spread",
        )
        self.curve = self.plot([], [], pen=pg.mkPen(_CURVE, width=2), name="fitted curve")
        self.focus = pg.InfiniteLine(
            pos=0.0,
            angle=90,
            pen=pg.mkPen(_FOCUS, width=2),
            label="focus",
            labelOpts={"position": 0.95, "color": _FOCUS},
        )
        dashed = pg.mkPen(_INTERVAL, width=1, style=QtCore.Qt.PenStyle.DashLine)
        # the interval's labels at the foot (the legend is at the top right)
        # outside the interval: the low one's left of its line, the high one's right of it, so
        # a narrow interval does not put one over the other
        below = {"position": 0.04, "color": _INTERVAL}
        left = below | {"anchors": [(1, 0.5), (1, 0.5)]}
        right = below | {"anchors": [(0, 0.5), (0, 0.5)]}
        self.low = pg.InfiniteLine(angle=90, pen=dashed, label="", labelOpts=left)
        self.high = pg.InfiniteLine(angle=90, pen=dashed, label="", labelOpts=right)
        for line in (self.focus, self.low, self.high):
            self.addItem(line, ignoreBounds=True)
        self.calibration: DeepFocusCalibration | None = None

    def show_calibration(self, cal: DeepFocusCalibration, search_fwhm: float = SEARCH_FWHM) -> None:
        self.calibration = cal
        z = np.asarray(cal.z_um, dtype=float)
        med = np.asarray(cal.median, dtype=float)
        spread = np.asarray(cal.spread, dtype=float)
        valid = np.asarray(cal.valid_fraction, dtype=float)
        self.errors.setData(x=z, y=med, top=spread, bottom=spread)
        few = valid < FEW_VALID
        brushes = [pg.mkBrush(0, 0, 0, 0) if f else pg.mkBrush(_POINTS) for f in few]
        self.points.setData(z, med, brush=brushes, pen=pg.mkPen(_POINTS))
        zs = np.linspace(float(z.min()), float(z.max()), 400) if z.size else np.zeros(0)
        self.curve.setData(zs, np.asarray(cal.curve(zs), dtype=float))
        half = search_fwhm * cal.fwhm_um
        n = f"{search_fwhm:g}"
        self.low.setPos(-half)
        self.high.setPos(half)
        self.low.label.setFormat(f"−{n} FWHM")
        self.high.label.setFormat(f"+{n} FWHM")
        self.band.setRegion((-half, half))
        self.setTitle(
            f"DeepFocus calibration, {cal.objective}: FWHM {cal.fwhm_um:.2f} µm, "
            f"search ±{half:.1f} µm",
            size="10pt",
        )
        # the data in the lower part, the legend and the focus label in the headroom above
        if z.size:
            lows = np.concatenate([med - spread, self.curve.getData()[1]])
            highs = np.concatenate([med + spread, self.curve.getData()[1]])
            lo, hi = float(np.nanmin(lows)), float(np.nanmax(highs))
            r = max(hi - lo, 1e-6)
            self.setXRange(float(z.min()), float(z.max()), padding=0.02)
            self.setYRange(lo - 0.04 * r, hi + 0.3 * r, padding=0)


def summary_line(cal: DeepFocusCalibration, path: Path | str | None) -> str:
    """The calibration in one line: objective, pixel size, FWHM, fit rms, patches judged, file."""
    valid = float(np.mean(cal.valid_fraction)) if cal.valid_fraction else 0.0
    text = (
        f"{cal.objective} · {cal.pixel_size_um:.4g} µm/px · FWHM {cal.fwhm_um:.2f} µm · "
        f"fit rms {cal.fit_rms:.3f} · {100 * valid:.0f} % of patches judged"
    )
    if cal.noise_floor > 0:
        text += f" · frames scored at noise {cal.noise_floor:.2f} grey levels"
    return f"{text} · {path}" if path else text


def detail_line(cal: DeepFocusCalibration) -> str:
    """When and from what it was made."""
    made = cal.made.replace("T", " ").replace("+00:00", " UTC") if cal.made else "unknown"
    return (
        f"{len(cal.z_um)} planes, made {made} from {cal.source or 'an unknown source'}; "
        f"focus was at z = {cal.focus_z_um:.2f} µm · hollow points: under "
        f"{100 * FEW_VALID:.0f} % of the patches judgeable"
    )


class CalibrationDialog(QtWidgets.QDialog):
    """The plot, its one-line summary, and Recalibrate / Open folder / Close."""

    recalibrateRequested = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("DeepFocus calibration")
        self.plot = CalibrationPlot()
        self.summary = QtWidgets.QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details = QtWidgets.QLabel("")
        self.details.setWordWrap(True)
        self.details.setStyleSheet("color: gray")
        self.recalibrate_button = QtWidgets.QPushButton("Recalibrate…")
        self.recalibrate_button.setToolTip(
            "Take a new calibration stack here (a flat textured object, roughly in focus)"
        )
        self.recalibrate_button.clicked.connect(self.recalibrateRequested)
        self.folder_button = QtWidgets.QPushButton("Open folder")
        self.folder_button.clicked.connect(self._open_folder)
        close = QtWidgets.QPushButton("Close")
        close.clicked.connect(self.close)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.recalibrate_button)
        buttons.addWidget(self.folder_button)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.summary)
        layout.addWidget(self.details)
        layout.addLayout(buttons)
        self.resize(860, 560)
        self.path: Path | None = None

    def show_calibration(
        self,
        cal: DeepFocusCalibration,
        path: Path | str | None,
        search_fwhm: float = SEARCH_FWHM,
    ) -> None:
        self.path = Path(path) if path else None
        self.plot.show_calibration(cal, search_fwhm)
        self.summary.setText(summary_line(cal, path))
        self.details.setText(detail_line(cal))
        self.folder_button.setEnabled(self.path is not None)

    def _open_folder(self) -> None:
        if self.path is not None:
            QtGui.QDesktopServices.openUrl(QtCore.QUrl.fromLocalFile(str(self.path.parent)))
