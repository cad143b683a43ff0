"""Scan files across format versions: a version 1 file (written by slidescan 0.1's own writer,
tests/data/make_v1_scan.py) reads in the current layout and resumes after an in-place upgrade;
the repair functions keep what they must and leave the rest."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_runner import FixedMethod, fake_scope

from slidescan.app import repair
from slidescan.app.events import FinishReason
from slidescan.app.records import RECORD_DTYPE, RECORD_DTYPE_V1, as_current
from slidescan.app.runner import ScanRunner
from slidescan.app.store import DamagedScanFile, ScanReader, ScanWriter

V1 = Path(__file__).resolve().parent / "data" / "scan_v1.h5"


def test_a_version_1_file_reads_in_the_current_layout():
    with ScanReader(V1) as r:
        assert r.format_version == 1 and r.n_tiles == 4 and r.n_planned == 6
        t = r.tiles
        assert t.dtype.names[: len(RECORD_DTYPE.names)] == RECORD_DTYPE.names
        assert [m.decode() for m in t["method"]] == ["zsweep", "diffcnn", "skipped", "zsweep"]
        assert t["calibration"].tolist() == [False, True, False, False]
        assert [s.decode() for s in t["image_source"]] == ["capture", "capture", "", "capture"]
        assert t["fallback"].tolist() == [b"", b"", b"", b"predicted"]
        assert np.isnan(t["stage_x_um"]).all() and (t["shot_count"] == 0).all()
        assert r.shots(0) == [] and r.image(2) is None and r.verify() == []
        assert r.survey().size == 1


def test_resuming_a_version_1_file_upgrades_it_in_place_and_finishes(tmp_path):
    path = tmp_path / "old.h5"
    shutil.copy(V1, path)
    with ScanReader(V1) as r:
        before = [r.image(i) for i in range(r.n_tiles)]
    scope = fake_scope(hw=(48, 64))
    fin = ScanRunner.for_resume(path, scope, method=FixedMethod(scope))
    fin.start()
    result = fin.wait(60)
    assert result.reason is FinishReason.COMPLETED, result.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.h5"]  # no leftovers
    with ScanReader(path) as r:
        assert r.format_version == 2 and r.status == "completed" and r.verify() == []
        t = r.tiles
        assert sorted(t["index"]) == list(range(6))
        assert t["calibration"].tolist()[:4] == [False, True, False, False]
        for i, image in enumerate(before):
            if image is None:
                assert r.image(i) is None
            else:
                np.testing.assert_array_equal(r.image(i), image)
        assert r.survey().size == 1


def test_v1_rows_convert_field_by_field():
    rows = np.zeros(2, RECORD_DTYPE_V1)
    rows["method"] = [b"diffcnn+calibration", b"brent"]
    rows["skipped"] = [False, True]
    rows["z_um"] = [1.5, 2.5]
    out = as_current(rows, 1)
    assert out.dtype == RECORD_DTYPE
    assert out["method"].tolist() == [b"diffcnn", b"brent"]
    assert out["calibration"].tolist() == [True, False]
    assert out["image_source"].tolist() == [b"capture", b""]
    assert out["z_um"].tolist() == [1.5, 2.5] and (out["shot_first"] == -1).all()
    with pytest.raises(ValueError, match="version 9"):
        as_current(rows, 9)


def test_a_damaged_file_is_never_opened_for_writing(tmp_path):
    path = tmp_path / "cut.h5"
    data = V1.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with ScanReader(path) as r:
        assert r.damage is not None and "cut short" in r.damage
    with pytest.raises(DamagedScanFile, match="salvages"):
        ScanWriter.open(path)
    assert path.read_bytes() == data[: len(data) // 2]


def test_salvage_keeps_only_tiles_whose_image_matches_its_checksum(tmp_path):
    path = tmp_path / "bitrot.h5"
    shutil.copy(V1, path)
    with h5py.File(path, "r+") as f:  # one flipped byte in tile 1's image
        image = f["tiles/images"][1]
        image[0, 0, 0] ^= 0xFF
        f["tiles/images"][1] = image
    rebuilt = repair.salvage(path)
    assert rebuilt.path == tmp_path / "bitrot.salvaged.h5"
    assert (rebuilt.kept, rebuilt.lost) == (3, 1) and "row 1" in rebuilt.reasons[0]
    with ScanReader(rebuilt.path) as r:
        assert r.tiles["index"].tolist() == [0, 2, 3] and r.verify() == []
        assert r.format_version == 2
    assert repair.salvage(path).path == tmp_path / "bitrot.salvaged-2.h5"  # never overwritten
