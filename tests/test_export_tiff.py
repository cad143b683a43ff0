"""The TIFF exports checked by real readers: OpenSlide (openslide-python + openslide-bin) opens
the SVS as an Aperio slide with its levels, pixel size, objective, thumbnail and macro, and
reads level 0 as the source; tifffile reads the OME-TIFF's levels from SubIFDs; ome-types
validates its OME-XML against the schema."""

from __future__ import annotations

import numpy as np
import openslide
import pytest
import tifffile
from ome_types import from_tiff, from_xml

from slidescan.app.export import tiffwrite
from slidescan.app.export.errors import ExportError
from slidescan.app.export.slide import export_slide
from slidescan.app.export.sources import ArraySlide, PatternSlide
from slidescan.app.records import Overview
from slidescan.app.stitch.source import SlideInfo

INFO = SlideInfo(
    pixel_size_um=0.3251,
    objective="20x/0.75",
    magnification=20.0,
    na=0.75,
    origin_um=(12500.0, 8300.5),
    name="slide-7",
)
#: A 10 x 10 scan's mosaic: 1024 px tiles, 10 % overlap.
TEN_BY_TEN = 1024 + 9 * 922


def overview() -> Overview:
    rng = np.random.default_rng(5)
    return Overview(rng.integers(0, 256, (180, 520, 3), dtype=np.uint8), 0.0, 0.0, 50.0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def rgb(region) -> np.ndarray:
    return np.asarray(region.convert("RGB"))


def area_mean(image: np.ndarray, k: int, glass: float = 255.0) -> np.ndarray:
    """The 2^k block mean of `image` padded with glass, rounded half up."""
    f = 2**k
    h, w, c = image.shape
    hp, wp = -(-h // f) * f, -(-w // f) * f
    padded = np.full((hp, wp, c), glass)
    padded[:h, :w] = image
    return np.floor(padded.reshape(hp // f, f, wp // f, f, c).mean(axis=(1, 3)) + 0.5)


# --- SVS ---


def test_openslide_opens_a_ten_by_ten_scan_sized_svs(tmp_path):
    source = PatternSlide(TEN_BY_TEN, TEN_BY_TEN, info=INFO)
    path = tmp_path / "slide.svs"
    result = export_slide(source, path, overview=overview())  # JPEG, the default
    assert result.format == "svs" and result.compression == "jpeg Q=90"
    with openslide.OpenSlide(path) as slide:
        props = slide.properties
        assert props["openslide.vendor"] == "aperio"
        assert slide.level_count >= 3
        assert slide.level_dimensions[0] == (TEN_BY_TEN, TEN_BY_TEN)
        for k, (w, h) in enumerate(slide.level_dimensions):
            assert (w, h) == (-(-TEN_BY_TEN // 2**k),) * 2
            assert slide.level_downsamples[k] == pytest.approx(2**k, rel=1e-3)
        assert abs(float(props["openslide.mpp-x"]) / INFO.pixel_size_um - 1) < 0.01
        assert abs(float(props["openslide.mpp-y"]) / INFO.pixel_size_um - 1) < 0.01
        assert float(props["openslide.objective-power"]) == 20
        assert set(slide.associated_images) == {"thumbnail", "macro"}
        thumb = slide.associated_images["thumbnail"]
        assert max(thumb.size) <= 1024 and thumb.size[0] == thumb.size[1]
        macro = rgb(slide.associated_images["macro"])
        assert macro.shape == (180, 520, 3)
        # level 0 equals the source within JPEG error
        x, y, w, h = 3000, 4100, 700, 500
        region = rgb(slide.read_region((x, y), 0, (w, h)))
        truth = source.read(y, x, h, w)
        assert psnr(region, truth) > 30
        assert np.abs(region.astype(int) - truth).mean() < 3
    # ... and the JPEG tiles decode the same through tifffile/imagecodecs (an RGB/YCbCr
    # mix-up would put OpenSlide tens of grey levels off)
    with tifffile.TiffFile(path) as tf:
        assert tf.is_svs and tf.pages[0].compression == 7 and tf.pages[0].photometric == 6
        decoded = tf.pages[0].asarray()[y : y + h, x : x + w]
    assert np.abs(region.astype(int) - decoded).max() <= 3


@pytest.mark.parametrize("compression", ["zstd", "deflate", "none"])
def test_openslide_reads_lossless_svs_exactly(tmp_path, compression):
    source = PatternSlide(1900, 2600, info=INFO)
    path = tmp_path / "slide.svs"
    export_slide(source, path, compression=compression, overview=overview(), top_max=700)
    whole = source.read(0, 0, 1900, 2600)
    with openslide.OpenSlide(path) as slide:
        assert slide.properties["openslide.vendor"] == "aperio"
        assert slide.level_count == 3
        np.testing.assert_array_equal(rgb(slide.read_region((0, 0), 0, (2600, 1900))), whole)
        np.testing.assert_array_equal(
            rgb(slide.read_region((0, 0), 1, (1300, 950))), area_mean(whole, 1)
        )
        np.testing.assert_array_equal(rgb(slide.associated_images["macro"]), overview().image)


def test_svs_layout_descriptions_and_subfile_types(tmp_path):
    path = tmp_path / "slide.svs"
    export_slide(
        PatternSlide(1500, 1300, info=INFO), path, compression="zstd",
        overview=overview(), top_max=400,
    )  # fmt: skip
    with tifffile.TiffFile(path) as tf:
        pages = tf.pages
        tiled = [p.is_tiled for p in pages]
        assert tiled == [True, False, True, True, False]  # level 0, thumbnail, 1, 2, macro
        assert all(p.description.startswith("Aperio Image Library") for p in pages)
        assert [p.subfiletype for p in pages] == [0, 0, 0, 0, 9]
        # written out, not left to the default: Bio-Formats reads a missing NewSubfileType as
        # -1 and takes those directories for the label and the macro
        assert all("NewSubfileType" in p.tags for p in pages)
        assert pages[4].description.splitlines()[1].startswith("macro 520x180")
        meta = tf.pages[0].description
        assert "|MPP = 0.325100|" in meta and "|AppMag = 20|" in meta
        assert [s.name for s in tf.series] == ["Baseline", "Thumbnail", "Macro"]
        assert [lv.shape[-3:-1] for lv in tf.series[0].levels] == [
            (1500, 1300), (750, 650), (375, 325)
        ]  # fmt: skip


def test_a_grey_slide_is_written_as_rgb_svs(tmp_path):
    grey = np.random.default_rng(3).integers(0, 256, (700, 900), dtype=np.uint8)
    path = tmp_path / "grey.svs"
    export_slide(ArraySlide(grey, INFO), path, compression="none", top_max=300)
    with openslide.OpenSlide(path) as slide:
        region = rgb(slide.read_region((0, 0), 0, (900, 700)))
    np.testing.assert_array_equal(region, np.repeat(grey[:, :, None], 3, axis=2))


def test_svs_and_jpeg_refuse_16_bit(tmp_path):
    slide = ArraySlide(np.zeros((64, 64, 3), np.uint16), INFO)
    with pytest.raises(ExportError, match="SVS holds 8-bit"):
        export_slide(slide, tmp_path / "a.svs", compression="zstd")
    with pytest.raises(ExportError, match="JPEG holds 8-bit"):
        export_slide(slide, tmp_path / "a.ome.tif", compression="jpeg")
    assert not any(tmp_path.iterdir())


def test_a_large_slide_becomes_bigtiff_and_openslide_still_reads_it(tmp_path, monkeypatch):
    monkeypatch.setattr(tiffwrite, "BIGTIFF_RAW_BYTES", 1_000_000)
    source = PatternSlide(900, 1200, info=INFO)
    path = tmp_path / "big.svs"
    export_slide(source, path, compression="zstd", top_max=300)
    with tifffile.TiffFile(path) as tf:
        assert tf.is_bigtiff
    with openslide.OpenSlide(path) as slide:
        assert slide.properties["openslide.vendor"] == "aperio"
        np.testing.assert_array_equal(
            rgb(slide.read_region((0, 0), 0, (1200, 900))), source.read(0, 0, 900, 1200)
        )


# --- OME-TIFF ---


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_tifffile_reads_the_ome_tiff_levels_exactly(tmp_path, compression):
    source = PatternSlide(1900, 2600, info=INFO)
    path = tmp_path / "slide.ome.tif"
    result = export_slide(source, path, compression=compression, overview=overview(), top_max=700)
    whole = source.read(0, 0, 1900, 2600)
    with tifffile.TiffFile(path) as tf:
        assert tf.is_ome and len(tf.pages) == 2  # the slide and the macro; levels in SubIFDs
        assert len(tf.pages[0].subifds) == 2
        series = tf.series[0]
        shapes = [lv.shape for lv in series.levels]
        assert shapes == [(1900, 2600, 3), (950, 1300, 3), (475, 650, 3)]
        assert result.levels == [list(s[:2]) for s in shapes]
        for k, lv in enumerate(series.levels):
            np.testing.assert_array_equal(lv.asarray(), area_mean(whole, k), err_msg=f"level {k}")
        for k, lv in enumerate(series.levels):
            page = lv.pages[0]
            assert page.is_tiled and page.tilewidth == 512
            x_res = page.tags["XResolution"].value
            assert 1e4 * x_res[1] / x_res[0] == pytest.approx(INFO.pixel_size_um * 2**k)
        np.testing.assert_array_equal(tf.series[1].asarray(), overview().image)


def test_ome_xml_is_valid_and_carries_pixel_size_and_objective(tmp_path):
    path = tmp_path / "slide.ome.tiff"
    export_slide(PatternSlide(600, 800, info=INFO), path, overview=overview(), top_max=300)
    with tifffile.TiffFile(path) as tf:
        xml = tf.pages[0].description
    # UTF-8 with "µm" written out: Bio-Formats strips '&' before parsing, so a character
    # reference ("&#181;m") would make it refuse the OME-XML and read a plain TIFF
    assert "&" not in xml and 'PhysicalSizeXUnit="\u00b5m"' in xml
    ome = from_xml(xml, validate=True)  # against the OME 2016-06 schema
    assert ome == from_tiff(path, validate=True)
    slide, macro = ome.images
    px = slide.pixels
    assert (px.size_x, px.size_y, px.size_c, px.type.value) == (800, 600, 3, "uint8")
    assert px.physical_size_x == pytest.approx(INFO.pixel_size_um)
    assert px.physical_size_y == pytest.approx(INFO.pixel_size_um)
    assert px.physical_size_x_unit.value == "\u00b5m"
    assert px.planes[0].position_x == pytest.approx(12500.0)
    assert px.planes[0].position_y == pytest.approx(8300.5)
    objective = ome.instruments[0].objectives[0]
    assert objective.nominal_magnification == 20.0 and objective.lens_na == 0.75
    assert slide.instrument_ref.id == ome.instruments[0].id
    assert slide.objective_settings.id == objective.id
    assert slide.name == "slide-7" and macro.name == "macro"
    assert macro.pixels.physical_size_x == pytest.approx(50.0)
    assert macro.pixels.tiff_data_blocks[0].ifd == 1


def test_ome_tiff_jpeg_is_within_jpeg_error(tmp_path):
    source = PatternSlide(1200, 1500, info=INFO)
    path = tmp_path / "slide.ome.tif"
    export_slide(source, path, quality=95, top_max=600)
    with tifffile.TiffFile(path) as tf:
        levels = [lv.asarray() for lv in tf.series[0].levels]
    assert psnr(levels[0], source.read(0, 0, 1200, 1500)) > 32
    assert psnr(levels[1], area_mean(source.read(0, 0, 1200, 1500), 1)) > 32


def test_a_16_bit_grey_slide_round_trips_through_ome_tiff(tmp_path):
    image = np.random.default_rng(4).integers(0, 65536, (700, 1000), dtype=np.uint16)
    path = tmp_path / "grey.ome.tif"
    export_slide(ArraySlide(image, INFO), path, compression="zstd", top_max=300)
    with tifffile.TiffFile(path) as tf:
        levels = tf.series[0].levels
        np.testing.assert_array_equal(levels[0].asarray(), image)
        np.testing.assert_array_equal(
            levels[2].asarray(), area_mean(image[:, :, None], 2, 65535.0)[:, :, 0]
        )
        ome = from_xml(tf.pages[0].description, validate=True)
    assert ome.images[0].pixels.type.value == "uint16" and ome.images[0].pixels.size_c == 1


def test_the_objective_name_gives_power_and_na_when_the_numbers_are_missing(tmp_path):
    info = SlideInfo(pixel_size_um=0.25, objective="40X / 0.95 oil")
    path = tmp_path / "s.svs"
    export_slide(ArraySlide(np.zeros((64, 64, 3), np.uint8), info), path, compression="none")
    with openslide.OpenSlide(path) as slide:
        assert float(slide.properties["openslide.objective-power"]) == 40
        assert float(slide.properties["aperio.NA"]) == 0.95
    path = tmp_path / "s.ome.tif"
    export_slide(ArraySlide(np.zeros((64, 64, 3), np.uint8), info), path, compression="none")
    objective = from_tiff(path, validate=True).instruments[0].objectives[0]
    assert (objective.nominal_magnification, objective.lens_na) == (40.0, 0.95)
    bare = SlideInfo(pixel_size_um=0.25)
    path = tmp_path / "bare.ome.tif"
    export_slide(ArraySlide(np.zeros((64, 64, 3), np.uint8), bare), path, compression="none")
    assert from_tiff(path, validate=True).instruments == []
