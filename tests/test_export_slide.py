"""Slide export as a whole (app/export/slide.py): the format from the name, the file appears
only when complete (cancel, a failing source, a full disk leave nothing), progress, memory that
does not grow with the slide."""

from __future__ import annotations

import errno
import gc
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile

from slidescan.app.export import scratch, slide
from slidescan.app.export.errors import ExportCancelled, ExportError
from slidescan.app.export.slide import export_slide, format_for
from slidescan.app.export.sources import ArraySlide, PatternSlide
from slidescan.app.stitch.source import SlideInfo

INFO = SlideInfo(pixel_size_um=0.5, objective="10x/0.3", magnification=10, na=0.3)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_format_comes_from_the_name_or_the_flag():
    assert format_for("a/slide.ome.tif") == "ome-tiff"
    assert format_for("SLIDE.OME.TIFF") == "ome-tiff"
    assert format_for("x.svs") == "svs"
    assert format_for("x.ome.zarr") == "ome-zarr"
    assert format_for("x.tif", "svs") == "svs"
    with pytest.raises(ExportError, match="cannot tell the format from 'x.tif'"):
        format_for("x.tif")
    with pytest.raises(ExportError, match="unknown format 'jpeg2000'"):
        format_for("x.svs", "jpeg2000")


@pytest.mark.parametrize("suffix", [".svs", ".ome.tif", ".ome.zarr"])
def test_cancel_leaves_nothing_behind(tmp_path, suffix):
    seen = []
    with pytest.raises(ExportCancelled, match="nothing was written"):
        export_slide(
            PatternSlide(1500, 1500, info=INFO),
            tmp_path / f"slide{suffix}",
            compression="zstd",
            tile=256,
            top_max=300,
            progress=lambda done, total: seen.append(done),
            cancelled=lambda: len(seen) >= 30,  # in level 0's pass
        )
    assert len(seen) == 30
    assert leftovers(tmp_path) == []


def test_cancel_late_in_the_reduced_levels_leaves_nothing(tmp_path):
    seen = []
    total = []

    def progress(done, n):
        seen.append(done)
        total.append(n)

    with pytest.raises(ExportCancelled):
        export_slide(
            PatternSlide(1500, 1500, info=INFO),
            tmp_path / "slide.svs",
            compression="zstd",
            tile=256,
            top_max=200,
            progress=progress,
            cancelled=lambda: bool(total) and len(seen) >= total[0] - 2,
        )
    assert leftovers(tmp_path) == []


def test_a_failing_source_leaves_nothing_and_says_why(tmp_path):
    class Broken(ArraySlide):
        def read(self, y0, x0, height, width):
            if y0 >= 512:
                raise RuntimeError("tile 17 of the scan file is unreadable")
            return super().read(y0, x0, height, width)

    with pytest.raises(RuntimeError, match="unreadable"):
        export_slide(
            Broken(np.zeros((1200, 1200, 3), np.uint8), INFO), tmp_path / "s.ome.tif", tile=256
        )
    assert leftovers(tmp_path) == []


def test_a_disk_that_fills_up_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    real_put = scratch.BlockGrid.put
    count = [0]

    def put(self, i, j, values):
        count[0] += 1
        if count[0] > 10:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_put(self, i, j, values)

    monkeypatch.setattr(scratch.BlockGrid, "put", put)
    with pytest.raises(ExportError, match="is full: the export stopped and nothing was written"):
        export_slide(PatternSlide(1500, 1500, info=INFO), tmp_path / "s.svs", tile=256, top_max=300)
    assert leftovers(tmp_path) == []


def test_too_little_free_space_is_refused_up_front(tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(
        slide.shutil, "disk_usage", lambda p: usage._replace(free=1_000_000)
    )  # fmt: skip
    with pytest.raises(ExportError, match=r"not enough free space .* 1\.00 MB|GB free"):
        export_slide(
            PatternSlide(3000, 3000, info=INFO), tmp_path / "s.ome.tif", compression="none"
        )
    assert leftovers(tmp_path) == []


def test_an_existing_file_is_replaced_only_when_asked(tmp_path):
    out = tmp_path / "s.ome.tif"
    out.write_bytes(b"old")
    source = ArraySlide(np.full((100, 120, 3), 7, np.uint8), INFO)
    with pytest.raises(ExportError, match="exists .*--overwrite"):
        export_slide(source, out)
    assert out.read_bytes() == b"old"
    result = export_slide(source, out, compression="none", overwrite=True)
    assert tifffile.imread(out).shape == (100, 120, 3)
    assert result.file_bytes == out.stat().st_size and leftovers(tmp_path) == ["s.ome.tif"]


def test_a_partial_file_left_by_a_killed_export_is_cleared(tmp_path):
    (tmp_path / ".s.svs.partial").write_bytes(b"half a file")
    export_slide(ArraySlide(np.zeros((64, 64, 3), np.uint8), INFO), tmp_path / "s.svs")
    assert leftovers(tmp_path) == ["s.svs"]


def test_bad_choices_are_one_line_errors(tmp_path):
    source = ArraySlide(np.zeros((64, 64, 3), np.uint8), INFO)
    with pytest.raises(ExportError, match="unknown compression 'lzw'"):
        export_slide(source, tmp_path / "s.svs", compression="lzw")
    with pytest.raises(ExportError, match="quality 0 is not between 1 and 100"):
        export_slide(source, tmp_path / "s.svs", quality=0)
    with pytest.raises(ExportError, match="does not exist"):
        export_slide(source, tmp_path / "no" / "s.svs")
    with pytest.raises(ExportError, match="channels, not 4"):
        export_slide(ArraySlide(np.zeros((64, 64, 4), np.uint8), INFO), tmp_path / "s.ome.tif")


def test_progress_counts_every_step_once(tmp_path):
    seen = []
    export_slide(
        PatternSlide(1000, 1300, info=INFO),
        tmp_path / "s.svs",
        tile=128,
        top_max=150,
        progress=lambda done, total: seen.append((done, total)),
    )
    total = seen[0][1]
    assert [d for d, _ in seen] == list(range(1, total + 1))
    assert {t for _, t in seen} == {total}


def test_memory_does_not_grow_with_the_slide(tmp_path):
    """A 12k x 12k RGB slide (432 MB raw, 576 MB with its pyramid) exports with at most a few
    tens of MB of Python/numpy allocations, the same as a 3k x 3k one."""
    peaks = {}
    for side in (3072, 12288):
        source = PatternSlide(side, side, info=INFO)
        gc.collect()
        tracemalloc.start()
        try:
            export_slide(source, tmp_path / f"s{side}.svs", overwrite=True)
            peaks[side] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    raw = 12288 * 12288 * 3
    print({side: f"{peak / 1e6:.1f} MB" for side, peak in peaks.items()})
    assert peaks[12288] < raw / 15, peaks
    assert peaks[12288] < 1.3 * peaks[3072] + 4e6, peaks
