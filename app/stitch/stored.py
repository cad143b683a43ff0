"""The stitching result in the scan file: written crash-safe, read back for the mosaic.

Writing (`save`) follows the scan file's own rule (app/store.py): the file must be intact and
not open in another live writer; it is opened in SWMR mode, after which only appends and
in-place writes of existing datasets happen, which HDF5 keeps consistent at every instant.
The run's rows are tagged with a new generation, 1 + the largest generation present anywhere
(a run killed earlier may have left rows of a generation never committed), appended and
flushed; the flat-field image is appended with its generation and flushed; and only then is
`/stitch/generation` set to the new number and flushed. Readers take only rows of the
committed generation, so a run killed at any point leaves the previous one in force. The
scan's status is not touched; `writer_pid` names this process while it writes, so a scan
resume (or another stitch) waits. The mosaic takes the flat-field from the committed run's
info (its coefficients: a smooth model of a few numbers); the stored image is for others.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from slidescan.app import __version__
from slidescan.app.records import PAIR_DTYPE, PLACEMENT_DTYPE, STITCH_RUN_DTYPE
from slidescan.app.stitch.geometry import StageToMosaic, TileLayout
from slidescan.app.stitch.placement import pair_weight
from slidescan.app.stitch.stitcher import METHOD, StitchResult

INFO_BYTES = STITCH_RUN_DTYPE["info"].itemsize
_STITCH_ROWS = ("placement", "pairs", "runs")


class StitchStoreError(Exception):
    """The stitching result cannot be written to (or read from) the scan file."""


# -- writing ---------------------------------------------------------------------------------
def run_info(result: StitchResult) -> dict[str, Any]:
    """What the run row says of itself (JSON, at most INFO_BYTES)."""
    figures = result.figures()
    return {
        "method": METHOD,
        "transform": result.layout.transform.to_json(),
        "origin_um": [round(v, 4) for v in result.origin_um],
        "stage": result.tolerance.to_json(),
        "figures": figures,
        "flatfield": result.flatfield.to_json(),
        "white_balance": result.white_balance.to_json(),
    }


def _encode_info(info: dict[str, Any]) -> bytes:
    text = json.dumps(info, separators=(",", ":"), sort_keys=True).encode()
    if len(text) > INFO_BYTES - 1 and "pairs_refused" in info.get("figures", {}):
        info = {**info, "figures": {**info["figures"]}}
        del info["figures"]["pairs_refused"]
        text = json.dumps(info, separators=(",", ":"), sort_keys=True).encode()
    if len(text) > INFO_BYTES - 1:
        raise StitchStoreError(
            f"the stitch run's description is {len(text)} bytes, more than the {INFO_BYTES} "
            "the scan file has room for"
        )
    return text


def _rows(result: StitchResult, generation: int) -> tuple[np.ndarray, np.ndarray]:
    layout, p = result.layout, result.placement
    placement = np.zeros(layout.n, PLACEMENT_DTYPE)
    placement["generation"] = generation
    placement["row"] = layout.rows
    placement["index"] = layout.index
    placement["x_px"] = result.xy[:, 0]
    placement["y_px"] = result.xy[:, 1]
    placement["residual_px"] = p.residual_px
    placement["source"] = np.char.encode(p.source.astype(str), "ascii")
    pr = result.pairs
    pairs = np.zeros(len(pr.pairs), PAIR_DTYPE)
    pairs["generation"] = generation
    if len(pr.pairs):
        pairs["row_a"] = layout.rows[pr.pairs[:, 0]]
        pairs["row_b"] = layout.rows[pr.pairs[:, 1]]
    pairs["dx_px"] = pr.shifts[:, 0]
    pairs["dy_px"] = pr.shifts[:, 1]
    pairs["ncc"] = pr.ncc
    pairs["weight"] = np.where(pr.registered, pair_weight(pr.ncc), 0.0)
    pairs["used"] = p.used
    return placement, pairs


def next_generation(f: h5py.File) -> int:
    """1 + the largest generation in any stitching dataset or committed."""
    top = int(f["stitch/generation"][()])
    for name in _STITCH_ROWS:
        ds = f[f"stitch/{name}"]
        if ds.shape[0]:
            top = max(top, int(ds["generation"].max()))
    return top + 1


def _append(ds: h5py.Dataset, rows: np.ndarray) -> None:
    n = ds.shape[0]
    ds.resize(n + rows.shape[0], axis=0)
    if rows.shape[0]:
        ds[n:] = rows


def check_can_write(path: str | os.PathLike[str]) -> None:
    """Before a long run: the file exists, is intact, no live process writes it and no other
    program holds it open (HDF5 locks an open file: a review window's reader would make the
    write fail after all the work). Raises StitchStoreError."""
    from slidescan.app import repair
    from slidescan.app.store import ScanFileError, refuse_live_writer

    path = Path(path)
    if not path.is_file():
        raise StitchStoreError(f"{path}: no such scan file")
    try:
        refuse_live_writer(path)
        repair.check_intact(path)
    except ScanFileError as exc:
        raise StitchStoreError(str(exc)) from None
    if _locked_elsewhere(path):
        raise StitchStoreError(
            f"{path} is open in another program (a review window?): close it there and stitch again"
        )


def _locked_elsewhere(path: Path) -> bool:
    """Whether another open file handle holds HDF5's lock on `path` (POSIX flock; False
    where it cannot be told)."""
    try:
        import fcntl
    except ImportError:  # Windows: HDF5's own open will say so
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _open_for_stitch(path: Path) -> h5py.File:
    from slidescan.app import repair

    check_can_write(path)
    try:
        f = h5py.File(path, "r+", libver="latest")
    except OSError as exc:
        if "unable to lock file" in str(exc):
            raise StitchStoreError(
                f"{path} is open in another program (a review window?): close it there and "
                "stitch again"
            ) from None
        if "already open for write" not in str(exc):
            raise StitchStoreError(f"{path}: cannot open for writing: {exc}") from None
        repair.recover(path)  # a killed writer (scan or stitch) left its flags set
        f = h5py.File(path, "r+", libver="latest")
    return f


def save(
    path: str | os.PathLike[str],
    result: StitchResult,
    on_step: Callable[[str], None] | None = None,
) -> int:
    """Store `result` in the scan file as a new generation and commit it; returns the
    generation. `on_step(name)` is called after each flushed step (tests kill there)."""
    path = Path(path)
    step = on_step or (lambda name: None)
    info = _encode_info(run_info(result))
    f = _open_for_stitch(path)
    try:
        if "stitch" not in f:
            raise StitchStoreError(
                f"{path} has no room for stitching results (a version 1 file: resume or "
                "upgrade it with this slidescan first)"
            )
        flat_ds = f["stitch/flatfields"]
        flat = result.flatfield.image()
        if flat.shape != flat_ds.shape[1:]:
            raise StitchStoreError(
                f"{path}: flat-field {flat.shape} does not fit the file's {flat_ds.shape[1:]}"
            )
        f.swmr_mode = True
        f.attrs.modify("writer_pid", np.int64(os.getpid()))
        f.flush()
        generation = next_generation(f)
        placement, pairs = _rows(result, generation)
        _append(f["stitch/placement"], placement)
        _append(f["stitch/pairs"], pairs)
        f.flush()
        step("rows")
        _append(flat_ds, flat[None].astype(np.float32))
        _append(f["stitch/flatfield_generation"], np.array([generation], np.int32))
        f.flush()
        step("flatfield")
        run = np.zeros(1, STITCH_RUN_DTYPE)
        run["generation"] = generation
        run["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").encode()
        run["software"] = __version__.encode()[:16]
        run["info"] = info
        _append(f["stitch/runs"], run)
        f.flush()
        step("run")
        f["stitch/generation"][()] = np.int64(generation)
        f.flush()
        step("committed")
    except OSError as exc:
        raise StitchStoreError(f"writing the stitch result to {path} failed: {exc}") from None
    finally:
        with contextlib.suppress(OSError, ValueError):
            if f.swmr_mode:
                f.attrs.modify("writer_pid", np.int64(0))
                f.flush()
        f.close()
    return generation


# -- reading ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MosaicInputs:
    """What a mosaic needs from the scan file: tile rows and top-left positions (mosaic px),
    the run's flat-field and white balance (their JSON; None when never stitched)."""

    rows: np.ndarray
    xy: np.ndarray
    flatfield: dict[str, Any] | None
    white_balance: dict[str, Any] | None
    origin_um: tuple[float, float]
    generation: int
    magnification: float | None
    na: float | None


def mosaic_inputs(reader) -> MosaicInputs:
    """The latest committed stitching run of the file `reader` reads; a file never stitched
    gets its tiles at their stage positions and no correction."""
    from slidescan.hardware.optics import OBJECTIVES

    objective = OBJECTIVES.get(reader.plan.objective)
    mag = None if objective is None else float(objective.magnification)
    na = None if objective is None else float(objective.na)
    placement = reader.placement()
    run = reader.stitch_run()
    if placement is not None and run is not None:
        origin = tuple(float(v) for v in run.get("origin_um", (0.0, 0.0)))
        return MosaicInputs(
            rows=placement["row"].astype(np.int64),
            xy=np.stack([placement["x_px"], placement["y_px"]], axis=1),
            flatfield=run.get("flatfield"),
            white_balance=run.get("white_balance"),
            origin_um=origin,  # type: ignore[arg-type]
            generation=int(run["generation"]),
            magnification=mag,
            na=na,
        )
    transform = StageToMosaic.from_pixel_size(reader.pixel_size_um)
    layout = TileLayout.from_records(reader.tiles, reader.tile_shape, transform)
    low = layout.stage_px.min(axis=0) if layout.n else np.zeros(2)
    origin = transform.to_um(low[None, :])[0]
    return MosaicInputs(
        rows=layout.rows,
        xy=layout.stage_px - low,
        flatfield=None,
        white_balance=None,
        origin_um=(float(origin[0]), float(origin[1])),
        generation=0,
        magnification=mag,
        na=na,
    )
