"""Mending scan files: a killed writer's file, a version 1 file, a damaged file.

- `recover(path)`: a SWMR writer killed mid-scan leaves the file's "open for writing" flags
  set. The committed part is copied (raw chunks, no recompression) into `<name>.recover`,
  flushed, fsync'd and atomically renamed over the original, which stays untouched until the
  copy is complete.
- `upgrade(path)`: a version 1 file is rewritten in the current layout the same way (records
  converted by `records.as_current`), so a scan made by slidescan 0.1 can be resumed.
- `find_damage(file, path)`: HDF5 reads data that lie beyond the end of a file cut short (a
  copy interrupted, a full disk under another program) as zeros, without an error, so the
  file's size is checked against the end-of-file address HDF5 recorded. (Walking the chunk
  index of such a file can hang inside HDF5, so nothing here does.) `check_intact` raises
  `DamagedScanFile`.
- `salvage(path)`: every tile a damaged file still holds intact (its record matching the plan,
  its image and raw shots matching their CRC-32) is copied into a new file beside it,
  `<stem>.salvaged.h5`, which a scan can then finish. Thumbnails are made again from the
  images. The damaged file is never written to.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from slidescan.app.records import (
    FORMAT,
    FORMAT_VERSION,
    PLAN_TILE_DTYPE,
    RECORD_DTYPE,
    SURVEY_DTYPE,
    as_current,
    holds_image,
)
from slidescan.app.store import (
    SHOT_DATASETS,
    TILE_DATASETS,
    DamagedScanFile,
    ScanFileError,
    StorageError,
    build_skeleton,
    image_checksum,
    publish,
    shots_end,
)

#: Attributes a rebuilt file gets fresh (the writer's own).
_WRITER_ATTRS = ("status", "message", "writer_pid", "writer_host", "format_version")


def file_version(path: str | os.PathLike[str]) -> int:
    """The scan format version of the file at `path`."""
    try:
        with h5py.File(path, "r", swmr=True) as f:
            return int(f.attrs.get("format_version", 1))
    except OSError as exc:
        raise ScanFileError(f"{path}: not a readable scan file ({exc})") from exc


# -- damage ----------------------------------------------------------------------------------------
def find_damage(f: h5py.File, path: Path) -> str | None:
    """What is wrong with an open scan file, in one line; None when it is whole."""
    size = path.stat().st_size
    try:
        end = int(f.id.get_filesize())
    except (OSError, RuntimeError) as exc:
        return f"HDF5 cannot tell its size ({exc})"
    if end > size:
        return f"it was cut short: it ends at {size} bytes, HDF5 recorded {end}"
    return None


def check_intact(path: str | os.PathLike[str]) -> None:
    """Raise `DamagedScanFile` (one line, with what to do) if the file is damaged."""
    path = Path(path)
    try:
        with h5py.File(path, "r", swmr=True) as f:
            damage = find_damage(f, path)
    except OSError as exc:
        raise DamagedScanFile(f"{path} is damaged: HDF5 cannot open it ({exc})") from exc
    if damage:
        raise DamagedScanFile(
            f"{path} is damaged: {damage}; `slidescan scan --resume` salvages its intact "
            "tiles into a new file beside it"
        )


# -- killed writer ---------------------------------------------------------------------------------
def recover(path: str | os.PathLike[str]) -> int:
    """Rebuild a file whose writer was killed: copy its committed tiles into a fresh file and
    atomically replace the original. Returns the number of tiles kept."""
    path = Path(path)
    tmp = path.with_name(path.name + ".recover")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        with h5py.File(path, "r", swmr=True) as src, h5py.File(tmp, "w", libver="latest") as dst:
            n = int(src["committed"][()])
            version = int(src.attrs.get("format_version", 1))
            for k, v in src.attrs.items():
                dst.attrs.create(k, v, dtype=src.attrs.get_id(k).dtype)
            for name in ("plan_tiles", "committed", "survey"):
                src.copy(src[name], dst, name)
            if "stitch" in src:  # stitching results stay with the tiles they place
                src.copy(src["stitch"], dst, "stitch")
            if "overview" in src:
                src.copy(src["overview"], dst, "overview")
            dst.create_group("tiles")
            keep = {name: n for name in TILE_DATASETS}
            if version >= 2:
                records = src["tiles/records"][:n]
                keep.update({name: shots_end(records) for name in SHOT_DATASETS})
            for name, rows in keep.items():
                src.copy(src[f"tiles/{name}"], dst["tiles"], name)
                ds = dst[f"tiles/{name}"]
                if ds.shape[0] > rows:
                    ds.resize(rows, axis=0)
            dst["committed"][()] = n
        publish(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageError(f"cannot recover {path}: {exc}") from exc
    return n


# -- rebuilding into the current layout ---------------------------------------------------------
@dataclass
class Rebuilt:
    """What a rebuild kept: tiles copied, and the committed rows it could not keep."""

    path: Path
    kept: int
    lost: int
    reasons: list[str]


def _copy_attrs(src: h5py.File, dst: h5py.File) -> None:
    from slidescan.app.store import write_status_attrs

    for k, v in src.attrs.items():
        if k not in _WRITER_ATTRS:
            dst.attrs[k] = v
    dst.attrs["format_version"] = FORMAT_VERSION
    write_status_attrs(dst, "cancelled", "")


def _rebuild(src_path: Path, dst_path: Path | None, tolerant: bool) -> Rebuilt:
    """Write every committed tile of `src_path` that is intact into a new current-layout file
    at `dst_path` (through `<dst>.partial`, atomically); `dst_path` None: only check (a dry
    run). `tolerant`: leave out what cannot be read or does not check out, instead of
    failing."""
    partial = None if dst_path is None else dst_path.with_name(dst_path.name + ".partial")
    if partial is not None:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    reasons: list[str] = []
    kept = lost = 0
    try:
        with h5py.File(src_path, "r", swmr=True) as src:
            if src.attrs.get("format") != FORMAT:
                raise ScanFileError(f"{src_path} is not a slidescan scan file")
            version = int(src.attrs.get("format_version", 1))
            damaged = find_damage(src, src_path) is not None
            tile_shape = tuple(int(s) for s in src.attrs["tile_shape"])
            dtype = np.dtype(str(src.attrs["tile_dtype"]))
            compression = str(src.attrs.get("compression", "none"))
            planned = np.asarray(src["plan_tiles"][:], PLAN_TILE_DTYPE)
            plan_rc = {int(p["index"]): (int(p["row"]), int(p["col"])) for p in planned}
            n = int(src["committed"][()])
            with contextlib.ExitStack() as stack:
                dst = None
                if partial is not None:
                    dst = stack.enter_context(h5py.File(partial, "w", libver="latest"))
                    _copy_attrs(src, dst)
                    build_skeleton(dst, planned, tile_shape, dtype, compression)
                    if "overview" in src and not damaged:
                        src.copy(src["overview"], dst, "overview")
                    _copy_survey(src, dst, damaged)
                copier = _TileCopier(src, dst, version, plan_rc)
                for i in range(n):
                    why = copier.copy(i)
                    if why is None:
                        kept += 1
                        continue
                    if not tolerant:
                        raise ScanFileError(f"{src_path}: tile row {i} {why}")
                    lost += 1
                    reasons.append(f"row {i}: {why}")
                if dst is not None:
                    dst["committed"][()] = copier.rows
        if partial is not None and dst_path is not None:
            publish(partial, dst_path)
    except (OSError, KeyError, ValueError) as exc:
        if partial is not None:
            with contextlib.suppress(OSError):
                partial.unlink()
        raise ScanFileError(f"cannot rebuild {src_path}: {exc}") from exc
    except BaseException:
        if partial is not None:
            with contextlib.suppress(OSError):
                partial.unlink()
        raise
    return Rebuilt(dst_path or src_path, kept, lost, reasons)


def _copy_survey(src: h5py.File, dst: h5py.File, damaged: bool) -> None:
    if damaged:
        return  # survey rows have no checksum: a resumed scan measures them again
    rows = np.asarray(src["survey"][:], SURVEY_DTYPE)
    dst["survey"].resize(rows.shape[0], axis=0)
    dst["survey"][:] = rows


class _TileCopier:
    """Copies one committed row at a time (record, image, curve, shots) into `dst` (None: only
    checks), keeping a row only when its record matches the plan and its image and shots match
    their CRC-32. Data a cut-short file lost read back as zeros, which fail those checks."""

    def __init__(
        self,
        src: h5py.File,
        dst: h5py.File | None,
        version: int,
        plan_rc: dict[int, tuple[int, int]],
    ) -> None:
        self.src, self.dst, self.version = src, dst, version
        self.plan_rc = plan_rc
        self.rows = 0
        self.shots = 0
        self.versions: dict[int, int] = {}

    def copy(self, i: int) -> str | None:
        """Copy row `i`; None when done, else why it was left out."""
        src = self.src["tiles"]
        try:
            rec = as_current(np.asarray(src["records"][i : i + 1]), self.version)[0]
            index = int(rec["index"])
            if self.plan_rc.get(index) != (int(rec["row"]), int(rec["col"])):
                return "its record does not match the plan (unreadable)"
            shots = self._shots(rec) if self.version >= 2 else []
            image = None
            if not rec["skipped"]:
                image = src["images"][i] if holds_image(rec) else None
                if image_checksum(image, [s for _, s in shots]) != int(rec["checksum"]):
                    return "its image fails its checksum (lost or damaged)"
            elif int(rec["checksum"]) != 0 or int(rec["version"]) < 0:
                return "its record is not plausible"
            curves = [src[name][i] for name in ("curve_z_um", "curve_values")]
        except (OSError, RuntimeError, ValueError, IndexError) as exc:
            return f"cannot be read ({exc})"
        if self.dst is not None:
            self._write(self.dst, rec, image, curves, shots)
        return None

    def _shots(self, rec: np.void) -> list[tuple[float, np.ndarray]]:
        first, count = int(rec["shot_first"]), int(rec["shot_count"])
        if count <= 0:
            return []
        src = self.src["tiles"]
        z = src["shot_z_um"][first : first + count]
        return [(float(z[k]), src["shots"][first + k]) for k in range(count)]

    def _write(
        self,
        out: h5py.File,
        rec: np.void,
        image: np.ndarray | None,
        curves: list[np.ndarray],
        shots: list[tuple[float, np.ndarray]],
    ) -> None:
        from slidescan.app.tissue import thumbnail as make_thumbnail

        dst = out["tiles"]
        n = self.rows
        row = np.zeros((), RECORD_DTYPE)
        for name in RECORD_DTYPE.names:
            row[name] = rec[name]
        index = int(rec["index"])
        row["version"] = self.versions.get(index, 0)
        self.versions[index] = row["version"] + 1
        if shots:
            row["shot_first"], row["shot_count"] = self.shots, len(shots)
            end = self.shots + len(shots)
            for name in SHOT_DATASETS:
                dst[name].resize(end, axis=0)
            for k, (z, shot) in enumerate(shots):
                dst["shots"][self.shots + k] = shot
                dst["shot_z_um"][self.shots + k] = z
            self.shots = end
        else:
            row["shot_first"], row["shot_count"] = -1, 0
        for name in TILE_DATASETS:
            dst[name].resize(n + 1, axis=0)
        if image is not None:
            dst["images"][n] = image
            dst["thumbnails"][n] = make_thumbnail(image)
        elif shots and not rec["skipped"]:  # a pending tile: its first shot stands in
            dst["thumbnails"][n] = make_thumbnail(shots[0][1])
        if int(rec["curve_len"]) > 0 and not np.any(curves[0][: int(rec["curve_len"])]):
            row["curve_len"] = 0  # an all-zero curve is one the file lost
        else:
            dst["curve_z_um"][n] = curves[0]
            dst["curve_values"][n] = curves[1]
        dst["records"][n] = row
        self.rows = n + 1


def upgrade(path: str | os.PathLike[str]) -> Rebuilt:
    """Rewrite a version 1 file in the current layout, atomically in place (the original
    stays untouched until the new file is complete)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".upgrade")
    rebuilt = _rebuild(path, tmp, tolerant=False)
    with h5py.File(path, "r", swmr=True) as f:
        status, message = f.attrs.get("status", b"cancelled"), f.attrs.get("message", b"")
    with h5py.File(tmp, "r+", libver="latest") as f:
        f.attrs.modify("status", status)
        f.attrs.modify("message", message)
    publish(tmp, path)
    return Rebuilt(path, rebuilt.kept, rebuilt.lost, rebuilt.reasons)


def salvaged_path(path: Path) -> Path:
    """Where `salvage` puts what it saves: `<stem>.salvaged.h5` beside the file, numbered
    when that exists already."""
    candidate = path.with_name(f"{path.stem}.salvaged{path.suffix or '.h5'}")
    k = 2
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}.salvaged-{k}{path.suffix or '.h5'}")
        k += 1
    return candidate


def salvage(path: str | os.PathLike[str]) -> Rebuilt:
    """Copy every intact tile of the damaged file at `path` into a new file beside it
    (`salvaged_path`); the damaged file is only read. Raises `ScanFileError` when not even
    the plan can be read."""
    path = Path(path)
    return _rebuild(path, salvaged_path(path), tolerant=True)


def inspect(path: str | os.PathLike[str]) -> dict[str, Any]:
    """For `slidescan info` on a damaged file: what is wrong and what is still readable,
    without writing anything (a dry run of `salvage`)."""
    path = Path(path)
    out: dict[str, Any] = {"path": str(path), "damaged": True}
    try:
        with h5py.File(path, "r", swmr=True) as f:
            out["damage"] = find_damage(f, path) or "parts of it cannot be read"
            out["tiles_committed"] = int(f["committed"][()])
            out["tiles_planned"] = int(f.attrs["n_planned"])
            out["plan"] = json.loads(f.attrs["plan"])
    except (OSError, KeyError, ValueError) as exc:
        out["damage"] = f"HDF5 cannot read it ({exc})"
        out["readable_tiles"] = 0
        return out
    try:
        rebuilt = _rebuild(path, None, tolerant=True)
    except ScanFileError as exc:
        out["readable_tiles"] = 0
        out["reasons"] = [str(exc)]
        return out
    out["readable_tiles"] = rebuilt.kept
    out["reasons"] = rebuilt.reasons[:10]
    return out
