"""OME-Zarr export (NGFF 0.4): zarr reads every level exactly, ome-zarr-models validates the
multiscales metadata, and the physical scale doubles level by level."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from ome_zarr_models.v04.image import Image

from slidescan.app.export.errors import ExportError
from slidescan.app.export.slide import export_slide
from slidescan.app.export.sources import ArraySlide, PatternSlide
from slidescan.app.stitch.source import SlideInfo

INFO = SlideInfo(0.5, "20x/0.75", 20.0, 0.75, origin_um=(10.0, 20.0), name="z")


@pytest.mark.parametrize("compression", ["zstd", "deflate", "none"])
def test_zarr_reads_every_level_exactly(tmp_path, compression):
    source = PatternSlide(900, 1300, info=INFO)
    path = tmp_path / "slide.ome.zarr"
    result = export_slide(source, path, compression=compression, tile=256, top_max=400)
    assert result.format == "ome-zarr" and len(result.levels) == 3
    whole = source.read(0, 0, 900, 1300).astype(np.float64)
    group = zarr.open_group(str(path), mode="r")
    for k, (h, w) in enumerate(result.levels):
        level = group[str(k)]
        assert level.shape == (3, h, w) and level.chunks == (3, 256, 256)
        f = 2**k
        hp, wp = h * f, w * f
        padded = np.full((hp, wp, 3), 255.0)
        padded[:900, :1300] = whole
        mean = np.floor(padded.reshape(h, f, w, f, 3).mean(axis=(1, 3)) + 0.5)
        np.testing.assert_array_equal(level[:].transpose(1, 2, 0), mean, err_msg=f"level {k}")


def test_multiscales_metadata_is_valid_ngff_0_4_with_the_physical_scale(tmp_path):
    path = tmp_path / "slide.ome.zarr"
    export_slide(PatternSlide(700, 900, info=INFO), path, tile=256, top_max=300)  # zstd default
    image = Image.from_zarr(zarr.open_group(str(path), mode="r"))
    ms = image.attributes.multiscales[0]
    assert ms.version == "0.4"
    assert [(a.name, a.type, a.unit) for a in ms.axes] == [
        ("c", "channel", None),
        ("y", "space", "micrometer"),
        ("x", "space", "micrometer"),
    ]
    scales = [d.coordinateTransformations[0].scale for d in ms.datasets]
    assert scales == [[1.0, 0.5, 0.5], [1.0, 1.0, 1.0], [1.0, 2.0, 2.0]]
    assert ms.datasets[0].coordinateTransformations[1].translation == [0.0, 20.0, 10.0]
    zarray = json.loads((path / "0" / ".zarray").read_text())
    assert zarray["compressor"]["id"] == "zstd"


def test_jpeg_is_refused_for_zarr(tmp_path):
    with pytest.raises(ExportError, match="OME-Zarr is written lossless"):
        export_slide(
            ArraySlide(np.zeros((64, 64, 3), np.uint8), INFO),
            tmp_path / "s.ome.zarr",
            compression="jpeg",
        )
    assert not any(tmp_path.iterdir())


def test_an_existing_zarr_folder_is_replaced_when_asked(tmp_path):
    path = tmp_path / "s.ome.zarr"
    source = ArraySlide(np.full((64, 80, 3), 9, np.uint8), INFO)
    export_slide(source, path)
    with pytest.raises(ExportError, match="exists"):
        export_slide(source, path)
    export_slide(ArraySlide(np.full((64, 80, 3), 3, np.uint8), INFO), path, overwrite=True)
    assert (zarr.open_group(str(path), mode="r")["0"][:] == 3).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.ome.zarr"]
