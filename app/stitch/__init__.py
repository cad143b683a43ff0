"""After the scan: registration of neighbouring tiles, global placement, flat-field and colour,
blending, and the stitched mosaic read region by region (`MosaicSource`), which the slide
export and the viewer draw from. Nothing here holds the whole mosaic in memory."""
