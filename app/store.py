"""The scan file: one HDF5 file per scan, crash-safe, readable while it is being written.

Layout (format "slidescan-scan", version 2; `app/records.py` has the per-tile record)::

    /                        attributes:
        format               "slidescan-scan"
        format_version       2 (version 1 files are read, and upgraded when resumed)
        software_version     slidescan version that created the file
        created              ISO-8601 creation time (UTC)
        plan                 the ScanPlan as JSON (app/plan.py)
        profile              the hardware profile as JSON ("{}" when unknown)
        status               running | completed | cancelled | error (16-byte string)
        message              last status message (256-byte string, for error/cancelled)
        writer_pid, writer_host  process writing the file (to refuse a second writer)
        objective, pixel_size_um, fov_um (w, h), tile_shape, tile_dtype, n_planned,
        compression, curve_max
    /plan_tiles              (n_planned,) compound: index, row, col, x_um, y_um
                             every planned tile in visiting order (fixed when the scan starts)
    /committed               scalar int64: how many rows of /tiles/* are complete
    /tiles/records           (n,) compound, one row per tile taken (records.RECORD_DTYPE);
                             its `checksum` is the CRC-32 of the image bytes followed by the
                             raw shots' (just the image for a capture)
    /tiles/images            (n, H, W[, C]) camera dtype, one tile per chunk, compression
                             none | gzip | lzf: the tile's image, captured at its z or made by
                             its focus method (record `image_source`); rows of skipped tiles
                             are never written (no storage, read back as None)
    /tiles/thumbnails        (n, h, w[, C]) uint8, about 64 px on the long side
    /tiles/curve_z_um        (n, curve_max) float32, NaN-padded: the focus curve's z
    /tiles/curve_values      (n, curve_max) float32, NaN-padded: its metric/prediction values
    /tiles/shots             (m, H, W[, C]) the raw shots a made image came from (record
                             `shot_first`, `shot_count`); one per chunk
    /tiles/shot_z_um         (m,) float64: the z of each shot
    /survey                  (k,) compound x_um, y_um, z_um, confidence, ok: focus-map survey
    /overview                (h, w, 3) uint8, when the scan had one: the whole slide at low
                             resolution, attributes x0_um, y0_um, pixel_size_um (records.Overview)
    /stitch/placement        (m,) records.PLACEMENT_DTYPE: every tile's place in the mosaic
    /stitch/pairs            (p,) records.PAIR_DTYPE: the registered overlaps
    /stitch/runs             (r,) records.STITCH_RUN_DTYPE: one row per stitching run
    /stitch/flatfields       (g, H, W, C) float32, one per stitching run, and
    /stitch/flatfield_generation (g,) int32 naming its run: the illumination the images
                             are divided by
    /stitch/generation       scalar int64: the latest complete stitching run (0: none); rows
                             of other generations are history. Written by app/stitch, with the
                             same commit-last rule as the tiles, so a stitch run killed half
                             way leaves the previous one in force.

Crash safety. HDF5 is not crash-safe by default: a kill in the middle of a metadata write can
leave a file no library opens. Scan files are written in SWMR mode (libver="latest"): every
object is created up front in a temporary file that is atomically renamed into place, then
`swmr_mode` is switched on and from then on the writer only appends along the tile axis and
modifies fixed-size values, which SWMR writes in an order that keeps the file consistent at
every instant. Each tile is committed in two steps: write its shots and rows, flush; then bump
/committed, flush. A reader trusts only the first `committed` rows, so a tile interrupted half
way is never counted. Readers open with `swmr=True` (ScanReader does), which works on a file
still being written and on one whose writer was killed.

A killed SWMR writer leaves the file's "open for writing" flags set, so HDF5 refuses to open it
for writing again: resuming recovers it (`app/repair.py`). A file that was closed cleanly is
reopened in place; a version 1 file is upgraded first; a damaged file (cut short, say) is never
written to: `app/repair.py` salvages what it still holds into a new file beside it.

Rescanning tiles appends new versions: a row whose planned index appears again later is
superseded by the later row (`ScanReader.tiles` marks it; `ScanReader.current()` hides it).
Nothing is ever overwritten in place, so a crash during a rescan loses nothing.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import shutil
import socket
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from slidescan.app import __version__
from slidescan.app.plan import ScanPlan, Tile
from slidescan.app.records import (
    CURVE_MAX,
    FORMAT,
    FORMAT_VERSION,
    MADE,
    PAIR_DTYPE,
    PENDING,
    PLACEMENT_DTYPE,
    PLAN_TILE_DTYPE,
    READABLE_VERSIONS,
    RECORD_DTYPE,
    STITCH_RUN_DTYPE,
    SURVEY_DTYPE,
    Overview,
    TileRecord,
    as_current,
    holds_image,
    is_pending,
)
from slidescan.app.tissue import thumbnail as make_thumbnail

STATUSES = ("running", "completed", "cancelled", "error")
_STATUS_DTYPE = "S16"
_MESSAGE_DTYPE = "S256"

#: Datasets with one row per record, and the shot datasets (one row per shot).
TILE_DATASETS = ("records", "images", "thumbnails", "curve_z_um", "curve_values")
SHOT_DATASETS = ("shots", "shot_z_um")

__all__ = [
    "RECORD_DTYPE",
    "ScanFileError",
    "ScanReader",
    "ScanWriter",
    "StorageError",
    "TileRecord",
    "check_writable",
    "estimate_bytes",
    "summarize",
]


class ScanFileError(Exception):
    """The file is not a scan file, is damaged beyond recovery, or cannot be written."""


class StorageError(ScanFileError):
    """Writing failed (disk full, I/O error). Everything committed before stays readable."""


class DamagedScanFile(ScanFileError):
    """The file opens but some of its data lie beyond its end or fail their checksums (a copy
    cut short, a failing disk). `app/repair.py` salvages what it still holds."""


def image_checksum(image: np.ndarray | None, shots: Sequence[np.ndarray] = ()) -> int:
    """CRC-32 of a tile's image bytes followed by its raw shots' (none for a capture; no
    image for a tile whose image is still to be made)."""
    crc = zlib.crc32(np.ascontiguousarray(image).data) if image is not None else 0
    for shot in shots:
        crc = zlib.crc32(np.ascontiguousarray(shot).data, crc)
    return crc & 0xFFFFFFFF


def thumbnail_shape(tile_shape: Sequence[int]) -> tuple[int, ...]:
    return make_thumbnail(np.zeros(tuple(tile_shape), np.uint8)).shape


def estimate_bytes(n_tiles: int, tile_shape: Sequence[int], dtype: Any, compression: str) -> int:
    """Conservative file-size estimate. Tissue compresses poorly (gzip: about 0.6-0.8)."""
    per_tile = int(np.prod(tile_shape)) * np.dtype(dtype).itemsize
    per_tile += int(np.prod(thumbnail_shape(tile_shape))) + RECORD_DTYPE.itemsize
    per_tile += 2 * CURVE_MAX * 4
    factor = 1.0 if compression == "none" else 0.6
    return int(n_tiles * per_tile * factor) + 1_000_000


def check_writable(path: str | os.PathLike[str], need_bytes: int) -> None:
    """Before a scan: the folder exists, is writable and has room. Raises StorageError."""
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise StorageError(f"output folder {folder} does not exist")
    probe = folder / f".slidescan-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"x")
    except OSError as exc:
        raise StorageError(f"output folder {folder} is not writable: {exc.strerror}") from exc
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise StorageError(
            f"not enough free space in {folder}: the scan needs about "
            f"{need_bytes / 1e9:.2f} GB, {free / 1e9:.2f} GB free"
        )


def fsync_path(path: Path, directory: bool = False) -> None:
    """Force `path` (a file, or a folder's entries) to stable storage; best effort."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if directory and hasattr(os, "O_DIRECTORY") else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _pad_curve(values: np.ndarray) -> np.ndarray:
    out = np.full(CURVE_MAX, np.nan, np.float32)
    v = np.asarray(values, np.float32).ravel()[:CURVE_MAX]
    out[: v.size] = v
    return out


def _as_status(text: str) -> np.bytes_:
    if text not in STATUSES:
        raise ValueError(f"status {text!r} is not one of {STATUSES}")
    return np.bytes_(text.encode())


def _message_bytes(text: str) -> np.bytes_:
    return np.bytes_(text.encode("utf-8", "replace")[:255])


def _compression(name: str) -> dict[str, Any]:
    if name == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": False}
    if name == "lzf":
        return {"compression": "lzf"}
    return {}


def build_skeleton(
    f: h5py.File,
    planned: np.ndarray,
    tile_shape: tuple[int, ...],
    tile_dtype: Any,
    compression: str,
) -> None:
    """Every dataset of an empty version-2 scan file (attributes are the caller's)."""
    thumb_shape = thumbnail_shape(tile_shape)
    packed = _compression(compression)
    f.create_dataset("plan_tiles", data=np.asarray(planned, PLAN_TILE_DTYPE))
    f.create_dataset("committed", data=np.int64(0))
    g = f.create_group("tiles")
    g.create_dataset("records", (0,), RECORD_DTYPE, maxshape=(None,), chunks=(256,))
    for name in ("images", "shots"):
        g.create_dataset(
            name,
            (0, *tile_shape),
            np.dtype(tile_dtype),
            maxshape=(None, *tile_shape),
            chunks=(1, *tile_shape),
            fillvalue=0,
            **packed,
        )
    g.create_dataset("shot_z_um", (0,), np.float64, maxshape=(None,), chunks=(256,))
    g.create_dataset(
        "thumbnails",
        (0, *thumb_shape),
        np.uint8,
        maxshape=(None, *thumb_shape),
        chunks=(1, *thumb_shape),
    )
    for name in ("curve_z_um", "curve_values"):
        g.create_dataset(
            name,
            (0, CURVE_MAX),
            np.float32,
            maxshape=(None, CURVE_MAX),
            chunks=(64, CURVE_MAX),
            fillvalue=np.nan,
        )
    f.create_dataset("survey", (0,), SURVEY_DTYPE, maxshape=(None,), chunks=(64,))
    st = f.create_group("stitch")
    for name, dtype in (
        ("placement", PLACEMENT_DTYPE),
        ("pairs", PAIR_DTYPE),
        ("runs", STITCH_RUN_DTYPE),
    ):
        st.create_dataset(name, (0,), dtype, maxshape=(None,), chunks=(256,))
    flat_shape = tile_shape if len(tile_shape) == 3 else (*tile_shape, 1)
    st.create_dataset(
        "flatfields",
        (0, *flat_shape),
        np.float32,
        maxshape=(None, *flat_shape),
        chunks=(1, *flat_shape),
    )
    st.create_dataset("flatfield_generation", (0,), np.int32, maxshape=(None,), chunks=(64,))
    st.create_dataset("generation", data=np.int64(0))


def write_overview(f: h5py.File, overview: Overview) -> None:
    """The slide's overview image (before the file goes SWMR: it never changes)."""
    image = np.asarray(overview.image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"an overview is an RGB uint8 image, got {image.dtype} {image.shape}")
    ds = f.create_dataset("overview", data=image, compression="gzip", compression_opts=4)
    ds.attrs["x0_um"] = float(overview.x0_um)
    ds.attrs["y0_um"] = float(overview.y0_um)
    ds.attrs["pixel_size_um"] = float(overview.pixel_size_um)


def write_status_attrs(f: h5py.File, status: str = "running", message: str = "") -> None:
    """The fixed-size attributes a writer modifies later (created here, at full size)."""
    a = f.attrs
    a.create("status", _as_status(status), dtype=_STATUS_DTYPE)
    a.create("message", _message_bytes(message), dtype=_MESSAGE_DTYPE)
    a["writer_pid"] = np.int64(0)
    a["writer_host"] = np.bytes_(socket.gethostname().encode()[:64].ljust(64))


def publish(partial: Path, path: Path) -> None:
    """Make a completely written `partial` file `path`, atomically and durably."""
    fsync_path(partial)
    os.replace(partial, path)
    fsync_path(path.parent, directory=True)


def shots_end(records: np.ndarray) -> int:
    """Rows of /tiles/shots that committed records refer to."""
    if records.size == 0:
        return 0
    ends = np.where(records["shot_count"] > 0, records["shot_first"] + records["shot_count"], 0)
    return int(ends.max())


#: How long opening a scan file for writing waits for a reader that holds it (a viewer, a
#: file browser's preview, a script polling the file) to let go before it gives up.
LOCK_WAIT_S = 5.0


def _open_for_writing(path: Path) -> h5py.File:
    """`h5py.File(path, "r+")`, retried while another process holds the file's lock: until the
    writer is in SWMR mode a reader's open blocks it, and a scan must not fail to start (or
    resume) because something looked at its file at that moment."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            return h5py.File(path, "r+", libver="latest")
        except OSError as exc:
            if "unable to lock file" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


class ScanWriter:
    """Appends tiles to a scan file in SWMR mode. Not thread-safe: one writer thread owns it.

    Create a new file with `ScanWriter.create(...)`, continue one with `ScanWriter.open(path)`.
    """

    def __init__(self, path: Path, f: h5py.File) -> None:
        self.path = path
        self._f = f
        self._records = f["tiles/records"]
        self._images = f["tiles/images"]
        self._thumbs = f["tiles/thumbnails"]
        self._curve_z = f["tiles/curve_z_um"]
        self._curve_v = f["tiles/curve_values"]
        self._shots = f["tiles/shots"]
        self._shot_z = f["tiles/shot_z_um"]
        self._committed = f["committed"]
        self._survey = f["survey"]
        self.n_committed = int(self._committed[()])
        records = self._records[: self.n_committed]
        self._versions: dict[int, int] = {}
        #: each tile's latest row, and the tiles whose latest row waits for its image
        self._latest: dict[int, int] = {}
        self._pending: set[int] = set()
        for row, rec in enumerate(records):
            idx = int(rec["index"])
            self._versions[idx] = self._versions.get(idx, 0) + 1
            self._note_latest(idx, row, is_pending(rec))
        # Shot rows past those committed records refer to are leftovers of an interrupted
        # tile: the next tile's shots overwrite them.
        self._n_shots = shots_end(records)
        self.tile_shape = tuple(int(s) for s in self._images.shape[1:])
        # Without filters a tile is its chunk's bytes: write them straight to the file
        # (write_direct_chunk), which skips h5py's selection and conversion machinery and is
        # several times faster for large frames.
        self._direct = self._images.id.get_create_plist().get_nfilters() == 0
        self.tile_dtype = self._images.dtype
        self.plan = ScanPlan.from_json(f.attrs["plan"])
        self.n_planned = int(f.attrs["n_planned"])
        self.closed = False

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        plan: ScanPlan,
        tiles: Sequence[Tile],
        tile_shape: Sequence[int],
        tile_dtype: Any,
        *,
        pixel_size_um: float,
        profile: dict[str, Any] | None = None,
        overwrite: bool = False,
        extra_attrs: dict[str, Any] | None = None,
        overview: Overview | None = None,
    ) -> ScanWriter:
        """Build the whole skeleton in `<path>.partial`, rename it into place, go SWMR."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise ScanFileError(f"{path} exists (use --overwrite to replace it)")
        tile_shape = tuple(int(s) for s in tile_shape)
        if len(tile_shape) not in (2, 3):
            raise ValueError(f"tile shape {tile_shape} must be (H, W) or (H, W, C)")
        partial = path.with_name(path.name + ".partial")
        fov = (tile_shape[1] * pixel_size_um, tile_shape[0] * pixel_size_um)
        planned = np.zeros(len(tiles), PLAN_TILE_DTYPE)
        for i, t in enumerate(tiles):
            planned[i] = (t.index, t.row, t.col, t.x_um, t.y_um)
        try:
            with h5py.File(partial, "w", libver="latest") as f:
                a = f.attrs
                a["format"] = FORMAT
                a["format_version"] = FORMAT_VERSION
                a["software_version"] = __version__
                a["created"] = _now_iso()
                a["plan"] = plan.to_json()
                a["profile"] = json.dumps(profile or {}, default=str)
                write_status_attrs(f)
                a["objective"] = plan.objective
                a["pixel_size_um"] = float(pixel_size_um)
                a["fov_um"] = np.asarray(fov, np.float64)
                a["tile_shape"] = np.asarray(tile_shape, np.int64)
                a["tile_dtype"] = np.dtype(tile_dtype).str
                a["n_planned"] = len(tiles)
                a["compression"] = plan.compression
                a["curve_max"] = CURVE_MAX
                for k, v in (extra_attrs or {}).items():
                    a[k] = v
                build_skeleton(f, planned, tile_shape, tile_dtype, plan.compression)
                if overview is not None:
                    write_overview(f, overview)
            publish(partial, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                partial.unlink()
            if isinstance(exc, OSError):
                raise StorageError(f"cannot create {path}: {exc}") from exc
            raise
        return cls.open(path)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> ScanWriter:
        """Open an existing scan file for appending: a file whose writer was killed is
        recovered, a version 1 file upgraded, a damaged one refused (`DamagedScanFile`: salvage
        it with `app.repair.salvage`)."""
        from slidescan.app import repair

        path = Path(path)
        if not path.is_file():
            raise ScanFileError(f"{path}: no such scan file")
        refuse_live_writer(path)
        repair.check_intact(path)
        if repair.file_version(path) < FORMAT_VERSION:
            repair.upgrade(path)
        try:
            f = _open_for_writing(path)
        except OSError as exc:
            if "already open for write" not in str(exc):
                raise ScanFileError(f"{path}: cannot open for writing: {exc}") from exc
            repair.recover(path)
            f = _open_for_writing(path)
        try:
            if f.attrs.get("format") != FORMAT:
                raise ScanFileError(f"{path} is not a slidescan scan file")
            # SWMR first: from here on every change is one the SWMR writer makes crash-safe.
            f.swmr_mode = True
            f.attrs.modify("status", _as_status("running"))
            f.attrs.modify("writer_pid", np.int64(os.getpid()))
            f.flush()
            return cls(path, f)
        except BaseException:
            f.close()
            raise

    # -- state -------------------------------------------------------------------------------
    def done_indices(self) -> set[int]:
        return set(self._versions)

    def pending_indices(self) -> list[int]:
        """Tiles whose latest version waits for its image to be made from its shots, in the
        order they were taken."""
        return sorted(self._pending, key=self._latest.__getitem__)

    def is_pending(self, index: int) -> bool:
        return index in self._pending

    def _note_latest(self, index: int, row: int, pending: bool) -> None:
        self._latest[index] = row
        if pending:
            self._pending.add(index)
        else:
            self._pending.discard(index)

    def read_shots(self, index: int) -> list[tuple[float, np.ndarray]]:
        """The raw (z, image) shots of tile `index`'s latest version ([] for a capture)."""
        row = self._latest.get(index)
        if row is None:
            raise KeyError(f"tile {index} has not been taken")
        rec = self._records[row]
        first, count = int(rec["shot_first"]), int(rec["shot_count"])
        if count <= 0 or first < 0:
            return []
        z = self._shot_z[first : first + count]
        return [(float(z[k]), self._shots[first + k]) for k in range(count)]

    def versions(self, index: int) -> int:
        return self._versions.get(index, 0)

    # -- writing -----------------------------------------------------------------------------
    def append(
        self,
        record: TileRecord,
        image: np.ndarray | None,
        thumb: np.ndarray | None = None,
        shots: Sequence[tuple[float, np.ndarray]] = (),
    ) -> int:
        """Write one tile and commit it; returns its row. Raises StorageError on I/O failure.

        `image` None (skipped tile): no image chunk is written. `thumb` None: computed.
        `shots`: the raw (z, image) exposures a made image came from.
        """
        if self.closed:
            raise StorageError(f"{self.path} is closed")
        n = self.n_committed
        pending = record.image_source == PENDING
        if pending and (image is not None or not shots):
            raise ValueError("a pending tile has raw shots and no image yet")
        if (image is None) != (record.skipped or pending):
            raise ValueError("a skipped tile has no image, and every other tile has one")
        if image is not None:
            image = self._as_tile(image)
        shot_images = [self._as_tile(im) for _, im in shots]
        if thumb is None:
            shown = image if image is not None else (shot_images[0] if shot_images else None)
            thumb = (
                make_thumbnail(shown)
                if shown is not None
                else np.zeros(self._thumbs.shape[1:], np.uint8)
            )
        checksum = image_checksum(image, shot_images) if not record.skipped else 0
        curve_len = min(int(np.asarray(record.curve_z_um).size), CURVE_MAX)
        first = self._n_shots if shots else -1
        row = record.to_row(self.versions(record.index), checksum, curve_len, first, len(shots))
        try:
            if shots:
                self._write_shots(shot_images, [float(z) for z, _ in shots])
            for ds in (self._records, self._images, self._thumbs, self._curve_z, self._curve_v):
                if ds.shape[0] < n + 1:
                    ds.resize(n + 1, axis=0)
            if image is not None:
                self._write_image(self._images, n, image)
            self._thumbs[n] = thumb
            self._curve_z[n] = _pad_curve(record.curve_z_um)
            self._curve_v[n] = _pad_curve(record.curve_values)
            self._records[n] = row
            self._f.flush()
            self._committed[()] = n + 1
            self._f.flush()
        except OSError as exc:
            raise StorageError(_storage_message(self.path, exc)) from exc
        self.n_committed = n + 1
        self._n_shots += len(shots)
        self._versions[record.index] = self.versions(record.index) + 1
        self._note_latest(record.index, n, pending)
        return n

    def append_made(
        self,
        index: int,
        image: np.ndarray,
        kind: str,
        *,
        compute_s: float = 0.0,
        shots: Sequence[np.ndarray] | None = None,
        thumb: np.ndarray | None = None,
    ) -> int:
        """Commit the image a focus method made from tile `index`'s raw shots as the tile's
        next version: the latest version's record, now with this image, sharing its shots
        (not copied). `compute_s` (the making's seconds) is added to the record's compute
        time; `shots`: the shot images, when the caller has them (else read back for the
        checksum). Returns the new row."""
        if self.closed:
            raise StorageError(f"{self.path} is closed")
        latest = self._latest.get(index)
        if latest is None:
            raise KeyError(f"tile {index} has not been taken")
        rec = self._records[latest]
        if int(rec["shot_count"]) <= 0:
            raise ValueError(f"tile {index} has no raw shots to make an image from")
        image = self._as_tile(image)
        if shots is None:
            shots = [im for _, im in self.read_shots(index)]
        shot_images = [self._as_tile(im) for im in shots]
        row = rec.copy()
        row["version"] = self.versions(index)
        row["image_source"] = MADE.encode()
        row["made_kind"] = kind.encode()[: RECORD_DTYPE["made_kind"].itemsize]
        row["compute_s"] = float(rec["compute_s"]) + float(compute_s)
        row["checksum"] = image_checksum(image, shot_images)
        n = self.n_committed
        try:
            for ds in (self._records, self._images, self._thumbs, self._curve_z, self._curve_v):
                if ds.shape[0] < n + 1:
                    ds.resize(n + 1, axis=0)
            self._write_image(self._images, n, image)
            self._thumbs[n] = make_thumbnail(image) if thumb is None else thumb
            self._curve_z[n] = self._curve_z[latest]
            self._curve_v[n] = self._curve_v[latest]
            self._records[n] = row
            self._f.flush()
            self._committed[()] = n + 1
            self._f.flush()
        except OSError as exc:
            raise StorageError(_storage_message(self.path, exc)) from exc
        self.n_committed = n + 1
        self._versions[index] = self.versions(index) + 1
        self._note_latest(index, n, False)
        return n

    def _as_tile(self, image: np.ndarray) -> np.ndarray:
        image = np.ascontiguousarray(image)
        if image.shape != self.tile_shape:
            raise ValueError(f"tile image shape {image.shape} != file's {self.tile_shape}")
        return image.astype(self.tile_dtype, copy=False)

    def _write_image(self, ds: h5py.Dataset, row: int, image: np.ndarray) -> None:
        if self._direct:
            ds.id.write_direct_chunk((row,) + (0,) * len(self.tile_shape), image)
        else:
            ds[row] = image

    def _write_shots(self, images: list[np.ndarray], z_um: list[float]) -> None:
        start, end = self._n_shots, self._n_shots + len(images)
        for ds in (self._shots, self._shot_z):
            if ds.shape[0] < end:
                ds.resize(end, axis=0)
        for k, image in enumerate(images):
            self._write_image(self._shots, start + k, image)
        self._shot_z[start:end] = np.asarray(z_um, np.float64)

    def add_survey_point(
        self, x_um: float, y_um: float, z_um: float, confidence: float, ok: bool
    ) -> None:
        n = self._survey.shape[0]
        try:
            self._survey.resize(n + 1, axis=0)
            self._survey[n] = (x_um, y_um, z_um, confidence, ok)
            self._f.flush()
        except OSError as exc:
            raise StorageError(_storage_message(self.path, exc)) from exc

    def survey(self) -> np.ndarray:
        return self._survey[:]

    def set_status(self, status: str, message: str = "") -> None:
        try:
            self._f.attrs.modify("status", _as_status(status))
            self._f.attrs.modify("message", _message_bytes(message))
            self._f.flush()
        except OSError as exc:
            raise StorageError(_storage_message(self.path, exc)) from exc

    def close(self, status: str | None = None, message: str = "") -> None:
        """Set the final status (best effort after a storage error) and close."""
        if self.closed:
            return
        try:
            if status is not None:
                with contextlib.suppress(StorageError, OSError):
                    self.set_status(status, message)
            with contextlib.suppress(OSError):
                self._f.attrs.modify("writer_pid", np.int64(0))
            self._f.close()
        except OSError as exc:
            raise StorageError(_storage_message(self.path, exc)) from exc
        finally:
            self.closed = True

    def fsync(self) -> None:
        """Force the file to stable storage (power-loss safety; a kill needs only flush)."""
        self._f.flush()
        fsync_path(self.path)


def _storage_message(path: Path, exc: OSError) -> str:
    text = str(exc)
    if exc.errno == errno.ENOSPC or "No space left" in text:
        return f"disk full while writing {path}; every tile written before is kept"
    return f"writing {path} failed: {text}"


def refuse_live_writer(path: Path) -> None:
    """Refuse to open a file another live process on this host is writing."""
    try:
        with h5py.File(path, "r", swmr=True) as f:
            pid = int(f.attrs.get("writer_pid", 0))
            host = bytes(f.attrs.get("writer_host", b"")).strip().decode(errors="replace")
    except OSError as exc:
        raise ScanFileError(f"{path}: not a readable scan file ({exc})") from exc
    if pid <= 0 or pid == os.getpid() or host != socket.gethostname():
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    except PermissionError:
        pass
    raise ScanFileError(f"{path} is being written by process {pid}; stop that scan first")


class ScanReader:
    """Read a scan file: finished, still being written (call `refresh()`), or crashed.

    Rows are in the order tiles were taken; `index` is the planned tile's index. Only the first
    `/committed` rows are ever returned, in the current record layout whatever the file's
    version. `damage` says what is wrong with a damaged file (None when intact): its rows may
    then read as zeros, so trust nothing but `app.repair.salvage`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from slidescan.app import repair

        self.path = Path(path)
        if not self.path.is_file():
            raise ScanFileError(f"{self.path}: no such file")
        try:
            self._f = h5py.File(self.path, "r", swmr=True)
        except OSError as exc:
            raise ScanFileError(f"{self.path}: cannot open as a scan file ({exc})") from exc
        try:
            if self._f.attrs.get("format") != FORMAT:
                raise ScanFileError(f"{self.path} is not a slidescan scan file")
            self.format_version = int(self._f.attrs.get("format_version", 1))
            if self.format_version not in READABLE_VERSIONS:
                raise ScanFileError(
                    f"{self.path} has scan format version {self.format_version}; this "
                    f"slidescan reads versions {', '.join(map(str, READABLE_VERSIONS))}"
                )
            self.plan = ScanPlan.from_json(self._f.attrs["plan"])
            self.profile: dict[str, Any] = json.loads(self._f.attrs["profile"])
            self.n_planned = int(self._f.attrs["n_planned"])
            self.tile_shape = tuple(int(s) for s in self._f.attrs["tile_shape"])
            self.pixel_size_um = float(self._f.attrs["pixel_size_um"])
            self.fov_um = tuple(float(v) for v in self._f.attrs["fov_um"])
            self.software_version = str(self._f.attrs["software_version"])
            self.damage = repair.find_damage(self._f, self.path)
            self._n = 0
            self.refresh()
        except (KeyError, ValueError, OSError) as exc:
            self._f.close()
            raise ScanFileError(f"{self.path}: not a readable scan file ({exc})") from exc
        except BaseException:
            self._f.close()
            raise

    def __enter__(self) -> ScanReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    def refresh(self) -> int:
        """See tiles written since opening (SWMR); returns the committed count.

        Each dataset is opened ONCE and the same handle is refreshed every time: with HDF5 2.0
        and h5py 3.16, refreshing a second handle of a dataset while an older one is open makes
        every read of it return the first chunk (tests/test_store.py guards this).
        """
        if not hasattr(self, "_ds"):
            names = TILE_DATASETS + (SHOT_DATASETS if self.format_version >= 2 else ())
            self._ds = {name: self._f[f"tiles/{name}"] for name in names}
            self._committed_ds = self._f["committed"]
            self._survey_ds = self._f["survey"]
            self._images = self._ds["images"]
            self._thumbs = self._ds["thumbnails"]
            self._curve_z = self._ds["curve_z_um"]
            self._curve_v = self._ds["curve_values"]
        self._committed_ds.refresh()
        for ds in self._ds.values():
            ds.refresh()
        self._survey_ds.refresh()
        n = int(self._committed_ds[()])
        self._n = min(n, *(self._ds[name].shape[0] for name in TILE_DATASETS))
        rows = self._ds["records"][: self._n]  # small: read once per refresh
        self._rec = as_current(rows, self.format_version)
        return self._n

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._f.attrs)

    @property
    def status(self) -> str:
        return _decode(self._f.attrs["status"])

    @property
    def message(self) -> str:
        return _decode(self._f.attrs.get("message", b""))

    @property
    def n_tiles(self) -> int:
        """Rows committed (tiles taken, counting rescanned versions)."""
        return self._n

    @property
    def planned_tiles(self) -> list[Tile]:
        p = self._f["plan_tiles"][:]
        return [
            Tile(int(r["index"]), int(r["row"]), int(r["col"]), float(r["x_um"]), float(r["y_um"]))
            for r in p
        ]

    @property
    def tiles(self) -> np.ndarray:
        """Committed records (structured array) plus a computed boolean `superseded`."""
        rec = self._rec
        out = np.zeros(rec.shape, np.dtype(RECORD_DTYPE.descr + [("superseded", "?")]))
        for name in RECORD_DTYPE.names:
            out[name] = rec[name]
        last: dict[int, int] = {}
        for i, idx in enumerate(rec["index"]):
            last[int(idx)] = i
        out["superseded"] = [last[int(idx)] != i for i, idx in enumerate(rec["index"])]
        return out

    def tile_dicts(self) -> list[dict[str, Any]]:
        t = self.tiles
        return [
            {k: (_decode(r[k]) if t.dtype[k].kind == "S" else r[k].item()) for k in t.dtype.names}
            for r in t
        ]

    def current(self) -> np.ndarray:
        """The latest version of every tile taken."""
        t = self.tiles
        return t[~t["superseded"]]

    def done_indices(self) -> set[int]:
        return {int(i) for i in self._rec["index"]}

    def _row(self, i: int) -> int:
        if not 0 <= i < self._n:
            raise IndexError(f"tile row {i} out of range (0..{self._n - 1})")
        return i

    def image(self, i: int) -> np.ndarray | None:
        """Full image of row `i` (captured, or made by its focus method); None for a skipped
        (empty glass) tile. For a tile whose image is still to be made (`pending`), its first
        raw shot stands in."""
        rec = self._rec[self._row(i)]
        if rec["skipped"]:
            return None
        if is_pending(rec):
            shots = self.shots(i)
            return shots[0][1] if shots else None
        return self._images[i]

    def pending(self) -> list[int]:
        """Planned indices whose latest version waits for its image to be made."""
        return [int(r["index"]) for r in self.current() if is_pending(r)]

    def shots(self, i: int) -> list[tuple[float, np.ndarray]]:
        """The raw (z, image) shots row `i`'s image was made from ([] for a capture)."""
        rec = self._rec[self._row(i)]
        first, count = int(rec["shot_first"]), int(rec["shot_count"])
        if count <= 0 or first < 0:
            return []
        z = self._ds["shot_z_um"][first : first + count]
        return [(float(z[k]), self._ds["shots"][first + k]) for k in range(count)]

    def thumbnail(self, i: int) -> np.ndarray:
        return self._thumbs[self._row(i)]

    def curve(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        n = int(self._rec[self._row(i)]["curve_len"])
        return self._curve_z[i, :n], self._curve_v[i, :n]

    def survey(self) -> np.ndarray:
        return self._survey_ds[:]

    def overview(self) -> Overview | None:
        """The slide's overview image taken before the scan, if the scan had one."""
        if "overview" not in self._f:
            return None
        ds = self._f["overview"]
        a = ds.attrs
        return Overview(ds[()], float(a["x0_um"]), float(a["y0_um"]), float(a["pixel_size_um"]))

    @property
    def stitch_generation(self) -> int:
        """The latest complete stitching run (0: the file was never stitched)."""
        if "stitch" not in self._f:  # a version 1 file
            return 0
        ds = self._f["stitch/generation"]
        ds.refresh()
        return int(ds[()])

    def placement(self) -> np.ndarray | None:
        """Every tile's place in the mosaic from the latest stitching run (PLACEMENT_DTYPE
        rows), None when the file was never stitched."""
        return self._stitch_rows("placement")

    def pairs(self) -> np.ndarray | None:
        """The overlaps the latest stitching run registered (PAIR_DTYPE rows)."""
        return self._stitch_rows("pairs")

    def stitch_run(self) -> dict[str, Any] | None:
        """What the latest stitching run says of itself (its `info` JSON, with `generation`
        and `created`), None when never stitched."""
        rows = self._stitch_rows("runs")
        if rows is None or rows.size == 0:
            return None
        row = rows[-1]
        return {
            **json.loads(_decode(row["info"]) or "{}"),
            "generation": int(row["generation"]),
            "created": _decode(row["created"]),
            "software": _decode(row["software"]),
        }

    def flatfield(self) -> np.ndarray | None:
        """The flat-field the latest stitching run estimated ((H, W, C) float32), or None."""
        generation = self.stitch_generation
        if generation == 0:
            return None
        tags, images = self._f["stitch/flatfield_generation"], self._f["stitch/flatfields"]
        tags.refresh()
        images.refresh()
        rows = np.flatnonzero(tags[:] == generation)
        return None if rows.size == 0 else images[int(rows[-1])]

    def _stitch_rows(self, name: str) -> np.ndarray | None:
        generation = self.stitch_generation
        if generation == 0:
            return None
        ds = self._f[f"stitch/{name}"]
        ds.refresh()
        rows = ds[:]
        return rows[rows["generation"] == generation]

    def verify(self) -> list[int]:
        """Rows whose stored image and shots do not match their checksum (should be empty)."""
        bad = []
        for i, r in enumerate(self._rec):
            if r["skipped"]:
                continue
            shots = [image for _, image in self.shots(i)]
            image = self._images[i] if holds_image(r) else None
            if image_checksum(image, shots) != r["checksum"]:
                bad.append(i)
        return bad

    @property
    def file_size(self) -> int:
        return self.path.stat().st_size


def _decode(v: Any) -> str:
    if isinstance(v, bytes | np.bytes_):
        return bytes(v).decode("utf-8", "replace").rstrip("\x00 ").strip()
    return str(v)


def summarize(reader: ScanReader) -> dict[str, Any]:
    """Figures for `info`, the CLI summary and the bench, over the latest version of each tile.

    Focus error is |z - true focus| over tiles that were focused (not skipped) and whose true
    focus is known (simulator). `fallbacks` counts tiles another method or the predicted z
    settled; `made_images` tiles whose image the focus method made; `calibration_tiles`
    per-slide calibration tiles.
    """
    cur = reader.current()
    taken = cur[~cur["skipped"]]
    out: dict[str, Any] = {
        "status": reader.status,
        "tiles_planned": reader.n_planned,
        "tiles_done": int(cur.size),
        "tiles_imaged": int(taken.size),
        "tiles_skipped": int(cur["skipped"].sum()),
        "rows_written": reader.n_tiles,
        "fallbacks": int((taken["fallback"] != b"").sum()),
        "made_images": int((taken["image_source"] == b"made").sum()),
        "calibration_tiles": int(taken["calibration"].sum()),
        "file_bytes": reader.file_size,
        "format_version": reader.format_version,
    }
    if cur.size:
        out["frames_per_tile"] = float(cur["tile_frames"].mean())
        out["hardware_s_per_tile"] = float(cur["tile_hardware_s"].mean())
        out["focus_hardware_s_per_tile"] = float(cur["hardware_s"].mean())
        out["compute_s_per_tile"] = float(cur["compute_s"].mean())
        out["focus_frames_per_tile"] = float(taken["frames"].mean()) if taken.size else 0.0
    err = np.abs(taken["z_um"] - taken["true_focus_um"])
    err = err[np.isfinite(err)]
    if err.size:
        out["focus_mae_um"] = float(err.mean())
        out["focus_max_err_um"] = float(err.max())
        out["focus_p95_err_um"] = float(np.percentile(err, 95))
    return out
