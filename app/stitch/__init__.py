"""After the scan: registration of neighbouring tiles, global placement, flat-field and colour,
blending, and the stitched mosaic read region by region (`MosaicSource`), which the slide
export and the viewer draw from. Nothing here holds the whole mosaic in memory.

One idea per module:

- `geometry`: stage um to mosaic pixels (`StageToMosaic`, where a camera calibration plugs in)
  and the tiles to stitch with their grid neighbours (`TileLayout`);
- `tolerance`: how far the stage may be off (its stated repeatability and play): the search
  radius;
- `overlap_ncc`: the NCC of the actual overlap of two windows at every shift of a box at once;
- `register`: one pair of neighbours: the shift, sub-pixel, or why there is none (glass, poor
  correlation);
- `pairs`: every neighbour pair of a scan, each tile read about once;
- `placement`: all positions at once, weighted least squares, outliers out, the stage where
  the overlaps say nothing;
- `flatfield`: the illumination and the white balance, from the tiles themselves;
- `blend`: feathering weights;
- `mosaic`: `TileMosaic` / `ScanMosaic`, the `MosaicSource` over a scan (`source` defines it);
- `stitcher`: a whole run in memory, and its figures; `stored`: the run in the scan file,
  crash-safe, and read back; `accuracy`: placement against the simulator's truth; `seams`:
  how visible tile boundaries are.
"""
