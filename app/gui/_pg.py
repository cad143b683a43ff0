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

__all__ = ["FOCUS_CMAP", "QUALITY_CMAP", "pg"]
