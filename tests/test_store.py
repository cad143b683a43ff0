"""Scan file (app/store.py): layout, SWMR reading while writing, rescans, errors."""

from __future__ import annotations

import contextlib
import errno
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from slidescan.app.plan import RectRegion, ScanPlan
from slidescan.app.records import CURVE_MAX
from slidescan.app.repair import recover
from slidescan.app.store import (
    ScanFileError,
    ScanReader,
    ScanWriter,
    StorageError,
    TileRecord,
    check_writable,
    estimate_bytes,
    summarize,
)

SHAPE = (48, 64, 3)


def _plan(tmp_path, **kw) -> ScanPlan:
    return ScanPlan(
        region=RectRegion(x0=0, y0=0, x1=200, y1=150), output=str(tmp_path / "s.h5"), **kw
    )


def _image(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 255, SHAPE, dtype=np.uint8)


def _record(t, z=1.0, **kw) -> TileRecord:
    return TileRecord(t.index, t.row, t.col, t.x_um, t.y_um, z, **kw)


def _writer(tmp_path, **kw) -> tuple[ScanWriter, list]:
    plan = _plan(tmp_path, **kw)
    tiles = plan.tiles(64, 48)
    w = ScanWriter.create(
        plan.output, plan, tiles, SHAPE, np.uint8, pixel_size_um=1.0, profile={"name": "fake"}
    )
    return w, tiles


def test_layout_and_round_trip(tmp_path):
    w, tiles = _writer(tmp_path, compression="gzip")
    assert len(tiles) == 16
    curve = np.linspace(-3, 3, 200)  # longer than CURVE_MAX: truncated, never an error
    for t in tiles[:3]:
        w.append(
            _record(
                t,
                z=0.5 * t.index,
                true_focus_um=0.5 * t.index + 0.1,
                method="zsweep",
                frames=21,
                confidence=0.9,
                curve_z_um=curve,
                curve_values=curve**2,
            ),
            _image(t.index),
        )
    w.close("cancelled", "stopped")
    with ScanReader(tmp_path / "s.h5") as r:
        assert r.status == "cancelled" and r.message == "stopped"
        assert r.n_tiles == 3 and r.n_planned == 16
        assert r.plan == _plan(tmp_path, compression="gzip")
        assert r.profile == {"name": "fake"}
        assert [t.index for t in r.planned_tiles] == list(range(16))
        np.testing.assert_array_equal(r.image(2), _image(2))
        assert r.thumbnail(0).dtype == np.uint8 and max(r.thumbnail(0).shape) <= 64
        z, v = r.curve(1)
        assert z.size == CURVE_MAX
        np.testing.assert_allclose(z, curve[:CURVE_MAX], rtol=1e-6)
        rows = r.tile_dicts()
        assert rows[1]["method"] == "zsweep" and rows[1]["frames"] == 21
        assert r.verify() == []
        s = summarize(r)
        assert s["tiles_done"] == 3 and s["focus_mae_um"] == pytest.approx(0.1)
    with h5py.File(tmp_path / "s.h5", "r") as f:  # cleanly closed: plain HDF5 opens it
        ds = f["tiles/images"]
        assert ds.chunks == (1, *SHAPE) and ds.compression == "gzip"
        assert f.attrs["format"] == "slidescan-scan"
        assert "software_version" in f.attrs and "plan" in f.attrs and "profile" in f.attrs


def test_reader_follows_a_file_being_written(tmp_path):
    w, tiles = _writer(tmp_path)
    r = ScanReader(tmp_path / "s.h5")
    assert r.status == "running" and r.n_tiles == 0
    for i, t in enumerate(tiles[:4]):
        w.append(_record(t), _image(i))
        assert r.refresh() == i + 1
        np.testing.assert_array_equal(r.image(i), _image(i))
    w.close("completed")
    r.close()


_WRITER_PROCESS = """
import sys, time, pathlib
import numpy as np
from slidescan.app.plan import RectRegion, ScanPlan
from slidescan.app.store import ScanWriter, TileRecord

path, compression, gate = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
plan = ScanPlan(region=RectRegion(x0=0, y0=0, x1=200, y1=150), output=path,
                compression=compression)
tiles = plan.tiles(64, 48)
w = ScanWriter.create(path, plan, tiles, (48, 64), np.uint8, pixel_size_um=1.0, profile={})
def image(i):
    return np.full((48, 64), 20 * (i + 1), np.uint8) + np.arange(64, dtype=np.uint8)
for i, t in enumerate(tiles[:6]):
    if i == 3:
        pathlib.Path(str(gate) + ".ready").touch()
        while not gate.exists():
            time.sleep(0.02)
    w.append(TileRecord(t.index, t.row, t.col, t.x_um, t.y_um, 1.0), image(i))
w.close("completed")
"""


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_refresh_reads_every_tile_of_a_file_another_process_writes(tmp_path, compression):
    """HDF5 2.0 / h5py 3.16: refreshing a fresh handle of a dataset while an older handle is
    open makes every read return the first chunk. The reader keeps one handle per dataset;
    this reads every image and thumbnail back after refreshes while another process writes."""
    path, gate = tmp_path / "live.h5", tmp_path / "go"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER_PROCESS, str(path), compression, str(gate)]
    )
    try:
        deadline = time.monotonic() + 60
        while not Path(str(gate) + ".ready").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "writer did not start"
            time.sleep(0.02)
        with ScanReader(path) as r:
            for expected in (3, 6):
                assert r.refresh() == expected
                firsts = [int(r.image(i)[0, 0]) for i in range(expected)]
                assert firsts == [20 * (i + 1) for i in range(expected)]
                means = [float(r.thumbnail(i).mean()) for i in range(expected)]
                assert means == sorted(means) and len(set(means)) == expected
                if expected == 3:
                    gate.touch()
                    assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_skipped_tiles_store_no_image(tmp_path):
    w, tiles = _writer(tmp_path)
    w.append(_record(tiles[0], skipped=True, tissue_fraction=0.0), None)
    with pytest.raises(ValueError):
        w.append(_record(tiles[1]), None)  # not skipped but no image
    w.append(_record(tiles[1]), _image(1))
    w.close("cancelled")
    with ScanReader(tmp_path / "s.h5") as r:
        assert r.image(0) is None and r.image(1) is not None
        assert summarize(r)["tiles_skipped"] == 1


def test_rescan_appends_versions_and_supersedes(tmp_path):
    w, tiles = _writer(tmp_path)
    for i, t in enumerate(tiles[:3]):
        w.append(_record(t, z=1.0), _image(i))
    w.close("cancelled")
    w = ScanWriter.open(tmp_path / "s.h5")
    assert w.done_indices() == {0, 1, 2}
    w.append(_record(tiles[1], z=9.0), _image(99))
    w.close("cancelled")
    with ScanReader(tmp_path / "s.h5") as r:
        t = r.tiles
        assert list(t["index"]) == [0, 1, 2, 1]
        assert list(t["version"]) == [0, 0, 0, 1]
        assert list(t["superseded"]) == [False, True, False, False]
        cur = r.current()
        assert sorted(cur["index"]) == [0, 1, 2]
        assert cur[cur["index"] == 1]["z_um"][0] == 9.0
        np.testing.assert_array_equal(r.image(3), _image(99))


def test_refuses_to_overwrite_and_rejects_foreign_files(tmp_path):
    w, tiles = _writer(tmp_path)
    w.close("cancelled")
    plan = _plan(tmp_path)
    with pytest.raises(ScanFileError, match="exists"):
        ScanWriter.create(plan.output, plan, tiles, SHAPE, np.uint8, pixel_size_um=1.0)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w", libver="latest") as f:
        f["x"] = 1
    with pytest.raises(ScanFileError, match="not a slidescan scan file"):
        ScanReader(other)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(ScanFileError):
        ScanReader(tmp_path / "junk.h5")


def test_check_writable_before_a_scan(tmp_path):
    check_writable(tmp_path / "a.h5", 1000)
    with pytest.raises(StorageError, match="does not exist"):
        check_writable(tmp_path / "missing" / "a.h5", 1000)
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="does not exist"):
        check_writable(tmp_path / "file" / "a.h5", 1000)
    with pytest.raises(StorageError, match="not enough free space"):
        check_writable(tmp_path / "a.h5", 1 << 62)
    # estimate: 100 uncompressed 2k x 2k RGB tiles are about 1.26 GB
    assert 1.2e9 < estimate_bytes(100, (2048, 2048, 3), np.uint8, "none") < 1.4e9


def test_disk_full_during_a_write_keeps_committed_tiles(tmp_path, monkeypatch):
    w, tiles = _writer(tmp_path)
    for i, t in enumerate(tiles[:3]):
        w.append(_record(t), _image(i))
    real_setitem = h5py.Dataset.__setitem__

    def full_disk(self, key, value):
        if self.name == "/tiles/records":  # image already written, record not: half a tile
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_setitem(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", full_disk)
    with pytest.raises(StorageError, match="disk full"):
        w.append(_record(tiles[3]), _image(3))
    monkeypatch.undo()
    w.close("error", "disk full")
    with ScanReader(tmp_path / "s.h5") as r:
        assert r.n_tiles == 3 and r.status == "error"
        assert r.verify() == []
    w = ScanWriter.open(tmp_path / "s.h5")  # and the scan can go on from there
    w.append(_record(tiles[3]), _image(3))
    w.close("cancelled")
    with ScanReader(tmp_path / "s.h5") as r:
        assert r.n_tiles == 4 and list(r.tiles["index"]) == [0, 1, 2, 3]
        np.testing.assert_array_equal(r.image(3), _image(3))


def test_recover_copies_only_committed_rows(tmp_path):
    w, tiles = _writer(tmp_path)
    for i, t in enumerate(tiles[:5]):
        w.append(_record(t), _image(i))
    # half a tile: rows grown and image written, but never committed
    for ds in ("records", "images", "thumbnails", "curve_z_um", "curve_values"):
        w._f[f"tiles/{ds}"].resize(6, axis=0)
    w._f["tiles/images"][5] = _image(5)
    w._f.flush()
    w._f.close()  # (a real crash leaves the SWMR flags set; the kill test covers that)
    assert recover(tmp_path / "s.h5") == 5
    assert not (tmp_path / "s.h5.recover").exists()
    with ScanReader(tmp_path / "s.h5") as r:
        assert r.n_tiles == 5 and r.verify() == []
        with h5py.File(tmp_path / "s.h5", "r") as f:
            assert f["tiles/images"].shape[0] == 5


def test_an_overview_and_an_empty_stitch_come_with_a_new_file(tmp_path):
    from slidescan.app.records import Overview

    plan = _plan(tmp_path)
    tiles = plan.tiles(64, 48)
    image = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    w = ScanWriter.create(
        plan.output, plan, tiles, SHAPE, np.uint8, pixel_size_um=1.0,
        overview=Overview(image, -100.0, -50.0, 10.0),
    )  # fmt: skip
    w.append(_record(tiles[0]), _image(0))
    w.close("completed")
    with ScanReader(plan.output) as r:
        o = r.overview()
        np.testing.assert_array_equal(o.image, image)
        assert o.bounds_um == (-100.0, -50.0, 300.0, 250.0) and o.to_pixel(0.0, 0.0) == (10, 5)
        assert r.stitch_generation == 0 and r.placement() is None and r.flatfield() is None
        assert r.stitch_run() is None
    with pytest.raises(ValueError, match="RGB uint8"):
        ScanWriter.create(
            tmp_path / "x.h5", plan, tiles, SHAPE, np.uint8, pixel_size_um=1.0,
            overview=Overview(image.astype(float), 0, 0, 1),
        )  # fmt: skip
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "x.h5.partial").exists()


@contextlib.contextmanager
def _held_open(path: Path, seconds: float):
    """Another process holding `path` open for reading for `seconds` (from when this yields)."""
    code = (
        f"import time, h5py\nf = h5py.File({str(path)!r}, 'r')\n"
        f"print('held', flush=True)\ntime.sleep({seconds})\n"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as p:
        try:
            assert p.stdout.readline().strip() == "held"
            yield
        finally:
            p.kill()


def test_opening_for_writing_waits_for_a_reader_to_let_go(tmp_path, monkeypatch):
    # Another process that holds the file open (a viewer, a script polling it) blocks the
    # writer's open until SWMR mode is on; the scan waits a moment instead of failing to start.
    w, tiles = _writer(tmp_path)
    w.append(_record(tiles[0]), _image(0))
    w.close()
    path = Path(w.path)
    with _held_open(path, 0.6):
        t0 = time.monotonic()
        w2 = ScanWriter.open(path)
        assert time.monotonic() - t0 > 0.2  # it did have to wait
        assert w2.done_indices() == {0}
        w2.close()
    # a reader that does not let go within the wait: one clear error
    monkeypatch.setattr("slidescan.app.store.LOCK_WAIT_S", 0.2)
    with _held_open(path, 5), pytest.raises(ScanFileError, match="cannot open for writing"):
        ScanWriter.open(path)
