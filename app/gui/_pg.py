"""pyqtgraph configured once for the whole GUI, and the colour maps the views share.

Images are row-major, so numpy's (H, W[, C]) arrays show as they are stored: column = x,
row = y, y growing downwards, like the camera image and the stage frame (y grows away from the
operator, shown downwards as every slide viewer does).
"""

import pyqtgraph as pg

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False, background="k", foreground="w")

#: Focus heights (um): perceptually uniform.
FOCUS_CMAP = pg.colormap.get("viridis")
#: Focus quality / confidence in [0, 1]: red (bad) - yellow - green (good).
QUALITY_CMAP = pg.ColorMap(
    pos=[0.0, 0.5, 1.0], color=[(215, 48, 39), (254, 224, 139), (26, 152, 80)]
)


def add_grid(plot: pg.PlotWidget, z: float = -100.0) -> pg.GridItem:
    """A faint grid under a plot's data, drawn by one `GridItem` at z-value `z`.

    Not the axes' own grid (`showGrid`): that one is replayed by both axes on every repaint of
    the plot, 12 ms a repaint of a focus curve here against under 1 for this `GridItem`;
    during a scan that was the longest event-loop stall of the window."""
    grid = pg.GridItem(pen=pg.mkPen(255, 255, 255), textPen=None)
    # two levels (about 1 and 10 lines across the view), not the default third of ~100 faint
    # lines: 400 line draws per change of the view range, the grid's main cost
    grid.setTickSpacing(x=[None, None], y=[None, None])
    grid.setZValue(z)
    plot.addItem(grid, ignoreBounds=True)
    return grid


__all__ = ["FOCUS_CMAP", "QUALITY_CMAP", "add_grid", "pg"]
