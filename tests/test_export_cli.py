"""`slidescan export`: from a stitched scan file to a pyramid file; one-line errors for a file
that is not a scan, one never stitched, an unknown format; the made image of a tile whose focus
method made it is what the slide shows.

Most tests use a stand-in mosaic that places the scan's tiles edge to edge through
`ScanReader.image` (as app/stitch's `ScanMosaic` reads a tile's pixels), so that they check
export, not stitching; one runs `slidescan stitch` and exports through the real mosaic."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import openslide
import pytest
import tifffile

from slidescan.app.cli import main
from slidescan.app.export import scanslide
from slidescan.app.export.sources import ArraySlide
from slidescan.app.plan import RectRegion, ScanPlan
from slidescan.app.records import MADE, Overview
from slidescan.app.stitch.source import SlideInfo
from slidescan.app.store import ScanReader, ScanWriter, TileRecord

TILE = (96, 128, 3)
PIXEL = 0.5
OVERVIEW = np.random.default_rng(9).integers(0, 256, (40, 60, 3), dtype=np.uint8)


def tile_image(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, TILE, dtype=np.uint8)


def make_scan(path: Path, stitched: bool = True) -> Path:
    """A 2 x 2 scan whose tile 3 was made by its focus method from two shots."""
    plan = ScanPlan(
        region=RectRegion(x0=0, y0=0, x1=2 * TILE[1] * PIXEL, y1=2 * TILE[0] * PIXEL),
        output=str(path),
        overlap=0.0,
    )
    tiles = plan.tiles(TILE[1] * PIXEL, TILE[0] * PIXEL)
    w = ScanWriter.create(
        path, plan, tiles, TILE, np.uint8, pixel_size_um=PIXEL,
        overview=Overview(OVERVIEW, -10.0, -10.0, 20.0),
    )  # fmt: skip
    for t in tiles:
        record = TileRecord(t.index, t.row, t.col, t.x_um, t.y_um, 1.0)
        shots = ()
        if t.index == 3:
            record.image_source = MADE
            shots = ((0.5, np.zeros(TILE, np.uint8)), (1.5, np.full(TILE, 255, np.uint8)))
        w.append(record, tile_image(t.index), shots=shots)
    w.close("completed")
    if stitched:
        with h5py.File(path, "r+") as f:
            f["stitch/generation"][()] = 1
    return path


def edge_to_edge(reader: ScanReader) -> ArraySlide:
    """Stand-in mosaic: the current tiles at their grid places, read via reader.image."""
    h, w = TILE[:2]
    current = reader.tiles
    rows = int(current["row"].max()) + 1
    cols = int(current["col"].max()) + 1
    image = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for i, rec in enumerate(current):
        if not rec["superseded"]:
            r, c = int(rec["row"]), int(rec["col"])
            image[r * h : (r + 1) * h, c * w : (c + 1) * w] = reader.image(i)
    return ArraySlide(image, SlideInfo(PIXEL, "20x/0.75", 20.0, 0.75, name=reader.path.stem))


@pytest.fixture
def stand_in_mosaic(monkeypatch):
    monkeypatch.setattr(scanslide, "default_mosaic", edge_to_edge)


def expected_slide(scan: Path) -> np.ndarray:
    h, w = TILE[:2]
    out = np.empty((2 * h, 2 * w, 3), np.uint8)
    with ScanReader(scan) as r:
        for rec in r.tiles:
            i = int(rec["index"])
            rr, cc = int(rec["row"]), int(rec["col"])
            out[rr * h : (rr + 1) * h, cc * w : (cc + 1) * w] = tile_image(i)
    return out


@pytest.fixture
def scan(tmp_path):
    return make_scan(tmp_path / "scan.h5")


def test_export_svs_from_a_stitched_scan(scan, tmp_path, stand_in_mosaic, capsys):
    out = tmp_path / "slide.svs"
    assert main(["export", str(scan), "--out", str(out), "--compression", "zstd", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["format"] == "svs" and result["path"] == str(out)
    assert result["associated"] == ["thumbnail", "macro"]
    assert "export" in captured.err  # the progress bar, on stderr
    with openslide.OpenSlide(out) as slide:
        assert slide.properties["openslide.vendor"] == "aperio"
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(PIXEL)
        region = np.asarray(slide.read_region((0, 0), 0, (256, 192)).convert("RGB"))
        macro = np.asarray(slide.associated_images["macro"].convert("RGB"))
    np.testing.assert_array_equal(region, expected_slide(scan))
    np.testing.assert_array_equal(macro, OVERVIEW)
    # tile 3's image is the one its method made, not either raw shot (all 0, all 255)
    with ScanReader(scan) as r:
        rec = r.tiles[r.tiles["index"] == 3][0]
        assert (
            rec["image_source"] == MADE.encode()
            and len(r.shots(int(np.argmax(r.tiles["index"] == 3)))) == 2
        )
    h, w = TILE[:2]
    made = region[rec["row"] * h : (rec["row"] + 1) * h, rec["col"] * w : (rec["col"] + 1) * w]
    assert 0 < made.mean() < 255 and np.array_equal(made, tile_image(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.h5", "slide.svs"]


def test_export_ome_tiff_prints_a_summary(scan, tmp_path, stand_in_mosaic, capsys):
    out = tmp_path / "slide.ome.tif"
    assert main(["export", str(scan), "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"wrote {out}: ome-tiff, jpeg Q=90, 1 level (256x192)")
    assert captured.err == ""
    with tifffile.TiffFile(out) as tf:
        assert tf.is_ome and tf.series[0].shape == (192, 256, 3)


def test_an_unstitched_scan_says_to_stitch_first(tmp_path, capsys):
    scan = make_scan(tmp_path / "raw.h5", stitched=False)
    assert main(["export", str(scan), "--out", str(tmp_path / "s.svs")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"is not stitched yet: run `slidescan stitch {scan}` first" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.h5"]


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["--out", "x.tif"], "cannot tell the format from 'x.tif'", 1),
        (["--out", "x.svs", "--format", "png"], "invalid choice: 'png'", 2),
        (["--out", "x.svs", "--quality", "101"], "JPEG quality 101 is not between 1 and 100", 1),
        (["--out", "x.svs", "--tile", "100"], "multiple of 16", 2),
    ],
)
def test_bad_arguments_are_one_line(scan, tmp_path, stand_in_mosaic, capsys, args, message, code):
    args = [a if a not in ("x.tif", "x.svs") else str(tmp_path / a) for a in args]
    assert main(["export", str(scan), *args]) == code
    err = capsys.readouterr().err
    assert err.startswith("slidescan: error: export") and err.count("\n") == 1
    assert message in err


def test_a_file_that_is_not_a_scan_is_one_line(tmp_path, capsys):
    bad = tmp_path / "notes.h5"
    bad.write_bytes(b"not hdf5")
    assert main(["export", str(bad), "--out", str(tmp_path / "s.svs")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot open as a scan file" in err
    assert main(["export", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "s.svs")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_export_reads_pixels_only_through_the_mosaic():
    """Nothing in export reads a tile's raw shots or its stored image directly: the mosaic is
    the one way in, so a made image is what every export shows."""
    folder = Path(scanslide.__file__).parent
    for module in folder.glob("*.py"):
        text = module.read_text(encoding="utf-8")
        assert ".shots(" not in text and ".image(i" not in text, module.name


def make_textured_scan(path: Path, made_index: int = 4) -> Path:
    """A 3 x 3 scan of a procedural slide (15 % overlap, tiles cut at their stage positions),
    whose centre tile was made by its focus method from two raw shots (all 0, all 255)."""
    from slidescan.app.export.sources import PatternSlide

    th, tw = 256, 320
    world = PatternSlide(3000, 3000)
    plan = ScanPlan.grid(
        3, 3, (700.0, 700.0), (tw * PIXEL, th * PIXEL), overlap=0.15, output=str(path)
    )
    tiles = plan.tiles(tw * PIXEL, th * PIXEL)
    w = ScanWriter.create(path, plan, tiles, (th, tw, 3), np.uint8, pixel_size_um=PIXEL)
    for t in tiles:
        y0, x0 = round(t.y_um / PIXEL - th / 2), round(t.x_um / PIXEL - tw / 2)
        record = TileRecord(t.index, t.row, t.col, t.x_um, t.y_um, 1.0)
        shots = ()
        if t.index == made_index:
            record.image_source = MADE
            shots = (
                (0.5, np.zeros((th, tw, 3), np.uint8)),
                (1.5, np.full((th, tw, 3), 255, np.uint8)),
            )
        w.append(record, world.read(y0, x0, th, tw), shots=shots)
    w.close("completed")
    return path


def test_stitch_then_export_reads_the_real_mosaic(tmp_path, capsys):
    """End to end with app/stitch: `slidescan stitch`, then `slidescan export` through the
    real mosaic reader; level 0 of the SVS is the mosaic, and the made tile shows its made
    image."""
    from slidescan.app.stitch.mosaic import ScanMosaic

    scan = make_textured_scan(tmp_path / "scan.h5")
    out = tmp_path / "slide.svs"
    assert main(["export", str(scan), "--out", str(out)]) == 1
    assert "not stitched yet" in capsys.readouterr().err
    assert main(["stitch", str(scan), "--no-flatfield", "--json"]) == 0
    capsys.readouterr()
    assert main(["export", str(scan), "--out", str(out), "--compression", "zstd", "--quiet"]) == 0
    with ScanReader(scan) as reader:
        mosaic = ScanMosaic(reader)
        h, w = mosaic.shape[:2]
        expected = mosaic.read(0, 0, h, w)
        placed = reader.placement()
        centre = placed[placed["index"] == 4][0]
        made = reader.image(int(centre["row"]))
    with openslide.OpenSlide(out) as slide:
        assert slide.dimensions == (w, h)
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(PIXEL)
        region = np.asarray(slide.read_region((0, 0), 0, (w, h)).convert("RGB"))
    np.testing.assert_array_equal(region, expected)
    y, x = round(centre["y_px"]), round(centre["x_px"])
    inner = region[y + 60 : y + 196, x + 60 : x + 260].astype(int)
    assert np.abs(inner - made[60:196, 60:260]).mean() < 3  # the made image ...
    assert inner.std() > 10  # ... not a raw shot (each is flat: all 0 or all 255)
