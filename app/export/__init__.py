"""Exports of what a scan made, Qt-free; the GUI's review and the CLI call them.

- `tiles`: one tile (TIFF/PNG) and the tile table (CSV).
- `slide.export_slide`: the whole stitched slide (any `MosaicSource`) as a pyramid file:
  OME-TIFF (`ometiff`, `omexml`), Aperio-compatible SVS (`svs`) or OME-Zarr (`omezarr`),
  streamed tile by tile (`pyramid`, its disk scratch `scratch`), compressed per `codec`;
  `scanslide` opens a scan file's stitched mosaic for it; `sources` and `benchmark` give
  slides that are not scans and measure export time and memory.
"""
