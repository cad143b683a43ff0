"""What a scan file stores per tile: the record layout (format version 2) and `TileRecord`.

Version 2 (this release) added, per tile: the fallback's reason, whether it was a per-slide
calibration tile, where its image came from (a capture at z, or an image the focus method made
from raw shots, which are stored too), and the stage's reported and (simulator) true XY.
Version 1 files are read through `as_current`, which fills the new fields (a v1 method name
"diffcnn+calibration" becomes "diffcnn" with `calibration` set).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

FORMAT = "slidescan-scan"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
CURVE_MAX = 128

#: `fallback` of a tile taken at the predicted z because its focus method failed.
PREDICTED = "predicted"
#: `image_source`: a frame captured at the tile's z, an image the focus method made, or one it
#: will make from the tile's raw shots (`ImageMaker`; until then the first shot stands in).
CAPTURE, MADE, PENDING = "capture", "made", "pending"

PLAN_TILE_DTYPE = np.dtype(
    [("index", "<i4"), ("row", "<i4"), ("col", "<i4"), ("x_um", "<f8"), ("y_um", "<f8")]
)

_V1_FIELDS = [
    ("index", "<i4"),
    ("version", "<i4"),
    ("row", "<i4"),
    ("col", "<i4"),
    ("x_um", "<f8"),
    ("y_um", "<f8"),
    ("z_um", "<f8"),
    ("hint_z_um", "<f8"),
    ("focus_z_um", "<f8"),
    ("true_focus_um", "<f8"),
    ("method", "S24"),
    ("frames", "<i4"),
    ("confidence", "<f4"),
    ("ok", "?"),
    ("fallback", "S24"),
    ("hardware_s", "<f8"),
    ("compute_s", "<f8"),
    ("wall_time", "<f8"),
    ("hw_time", "<f8"),
    ("skipped", "?"),
    ("tissue_fraction", "<f4"),
    ("checksum", "<u4"),
    ("curve_len", "<i4"),
    ("curve_kind", "S12"),
    ("tile_hardware_s", "<f8"),
    ("tile_frames", "<i4"),
]
RECORD_DTYPE_V1 = np.dtype(_V1_FIELDS)

RECORD_DTYPE = np.dtype(
    _V1_FIELDS
    + [
        ("fallback_reason", "S128"),
        ("calibration", "?"),
        ("image_source", "S8"),
        ("made_kind", "S16"),
        ("shot_first", "<i8"),
        ("shot_count", "<i4"),
        ("stage_x_um", "<f8"),
        ("stage_y_um", "<f8"),
        ("true_x_um", "<f8"),
        ("true_y_um", "<f8"),
    ]
)

SURVEY_DTYPE = np.dtype(
    [("x_um", "<f8"), ("y_um", "<f8"), ("z_um", "<f8"), ("confidence", "<f4"), ("ok", "?")]
)

#: Stitching results (app/stitch): one row per placed tile and per registered pair, tagged with
#: the run (`generation`) that made them; `/stitch/generation` names the latest complete run.
PLACEMENT_DTYPE = np.dtype(
    [
        ("generation", "<i4"),
        ("row", "<i4"),  # the tile's row in /tiles
        ("index", "<i4"),  # its planned index
        ("x_px", "<f8"),  # its top-left corner in the level-0 mosaic, pixels
        ("y_px", "<f8"),
        ("residual_px", "<f4"),  # how far the pairs disagree with the placement here
        ("source", "S12"),  # "registered" (placed by its overlaps) or "stage"
    ]
)
PAIR_DTYPE = np.dtype(
    [
        ("generation", "<i4"),
        ("row_a", "<i4"),
        ("row_b", "<i4"),
        ("dx_px", "<f8"),  # b's top-left minus a's, as the overlap says
        ("dy_px", "<f8"),
        ("ncc", "<f4"),  # normalised cross-correlation of the overlap at that shift
        ("weight", "<f4"),
        ("used", "?"),  # kept by the global placement (not rejected as an outlier)
    ]
)
STITCH_RUN_DTYPE = np.dtype(
    [
        ("generation", "<i4"),
        ("created", "S32"),
        ("software", "S16"),
        ("info", "S2048"),  # JSON: method, figures, white balance, flat-field source
    ]
)

_V2_DEFAULTS = {
    "fallback_reason": b"",
    "calibration": False,
    "image_source": b"",
    "made_kind": b"",
    "shot_first": -1,
    "shot_count": 0,
    "stage_x_um": math.nan,
    "stage_y_um": math.nan,
    "true_x_um": math.nan,
    "true_y_um": math.nan,
}
_V1_CALIBRATION_SUFFIX = b"+calibration"


@dataclass(frozen=True)
class Overview:
    """A low-resolution image of the whole slide (RGB uint8), taken before the scan: its
    pixel (i, j) covers x0 + [j, j + 1) * pixel, y0 + [i, i + 1) * pixel in stage um."""

    image: np.ndarray
    x0_um: float
    y0_um: float
    pixel_size_um: float

    def to_pixel(self, x_um: float, y_um: float) -> tuple[float, float]:
        """(column, row) of a stage position, in overview pixels (fractional)."""
        return (x_um - self.x0_um) / self.pixel_size_um, (y_um - self.y0_um) / self.pixel_size_um

    @property
    def bounds_um(self) -> tuple[float, float, float, float]:
        h, w = self.image.shape[:2]
        p = self.pixel_size_um
        return self.x0_um, self.y0_um, self.x0_um + w * p, self.y0_um + h * p


@dataclass
class TileRecord:
    """What the engine knows about one tile taken. NaN means unknown.

    `z_um` is the z the tile's image shows (NaN for an image a method made without measuring
    a z); `focus_z_um` the method's own answer; `fallback` what settled the tile instead of
    the method (another method's name, or `PREDICTED`) and `fallback_reason` why;
    `calibration` marks a per-slide calibration tile; `image_source` is `CAPTURE`, `MADE` or
    `PENDING` ("" for skipped glass) and `made_kind` how a made image was (or will be) made. `tile_hardware_s` and
    `tile_frames` cover the whole tile (XY move, quick look, focus, capture);
    `hardware_s`, `compute_s` and `frames` are the focus method's share.
    """

    index: int
    row: int
    col: int
    x_um: float
    y_um: float
    z_um: float
    hint_z_um: float = math.nan
    focus_z_um: float = math.nan
    true_focus_um: float = math.nan
    method: str = ""
    frames: int = 0
    confidence: float = math.nan
    ok: bool = True
    fallback: str = ""
    fallback_reason: str = ""
    calibration: bool = False
    hardware_s: float = 0.0
    compute_s: float = 0.0
    wall_time: float = 0.0
    hw_time: float = 0.0
    skipped: bool = False
    tissue_fraction: float = math.nan
    curve_kind: str = "metric"
    image_source: str = CAPTURE
    made_kind: str = ""
    stage_x_um: float = math.nan
    stage_y_um: float = math.nan
    true_x_um: float = math.nan
    true_y_um: float = math.nan
    tile_hardware_s: float = 0.0
    tile_frames: int = 0
    curve_z_um: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    curve_values: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def to_row(
        self, version: int, checksum: int, curve_len: int, shot_first: int = -1, shots: int = 0
    ) -> np.ndarray:
        row = np.zeros((), RECORD_DTYPE)
        for name, value in asdict(self).items():
            if name in RECORD_DTYPE.names:
                row[name] = _field(name, value)
        row["version"] = version
        row["checksum"] = checksum
        row["curve_len"] = curve_len
        row["shot_first"] = shot_first
        row["shot_count"] = shots
        return row


def holds_image(rec: np.void) -> bool:
    """Whether a stored record's image slot holds its image (not skipped glass, not a tile
    whose image the focus method has still to make)."""
    return not bool(rec["skipped"]) and _decode(rec["image_source"]) != PENDING


def is_pending(rec: np.void) -> bool:
    """Whether a stored record waits for its image to be made from its shots."""
    return _decode(rec["image_source"]) == PENDING


def _decode(v: object) -> str:
    return bytes(v).decode("utf-8", "replace").rstrip("\x00") if isinstance(v, bytes) else str(v)


def _field(name: str, value: object) -> object:
    if not isinstance(value, str):
        return value
    size = RECORD_DTYPE[name].itemsize
    data = value.encode("utf-8", "replace")
    return data[:size]


def as_current(rows: np.ndarray, version: int) -> np.ndarray:
    """Records of a file of format `version`, in this version's layout."""
    if version == FORMAT_VERSION:
        return rows
    if version != 1:
        raise ValueError(f"scan file format version {version} is not one this slidescan reads")
    out = np.zeros(rows.shape, RECORD_DTYPE)
    for name in RECORD_DTYPE_V1.names:
        out[name] = rows[name]
    for name, value in _V2_DEFAULTS.items():
        out[name] = value
    method = rows["method"]
    calibration = np.char.endswith(method, _V1_CALIBRATION_SUFFIX)
    out["calibration"] = calibration
    out["method"] = np.where(
        calibration, np.char.replace(method, _V1_CALIBRATION_SUFFIX, b""), method
    )
    out["image_source"] = np.where(rows["skipped"], b"", CAPTURE.encode())
    return out
