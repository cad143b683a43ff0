"""Export of a 400-tile slide against a 100-tile one (1024 px tiles, 10 % overlap; procedural
slides of the same size, each exported in a fresh process): four times the pixels, the same
memory. Slow (about a minute): `pytest -m slow tests/test_export_bench.py -s` prints the
figures."""

from __future__ import annotations

import pytest

from slidescan.app.export.benchmark import measure


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["svs", "ome-tiff"])
def test_export_memory_is_flat_from_100_to_400_tiles(tmp_path, fmt):
    small, large = (measure(n, fmt, folder=str(tmp_path)) for n in (100, 400))
    for r in (small, large):
        print(
            f"\n{r['tiles']} tiles {r['side_px']} px {r['format']} {r['compression']}: "
            f"{r['seconds']:.1f} s (source {r['source_seconds']:.1f} s), "
            f"{r['file_bytes'] / 1e6:.1f} MB, traced peak {r['traced_peak_bytes'] / 1e6:.1f} MB, "
            f"RSS {r['rss_before_bytes'] / 1e6:.0f} -> {r['rss_peak_bytes'] / 1e6:.0f} MB"
        )
    assert large["megapixels"] > 3.9 * small["megapixels"]
    assert large["traced_peak_bytes"] < 1.25 * small["traced_peak_bytes"] + 2e6
    grown = [r["rss_peak_bytes"] - r["rss_before_bytes"] for r in (small, large)]
    assert grown[1] < 1.25 * grown[0] + 16e6, grown
    assert large["traced_peak_bytes"] < large["raw_bytes"] / 40
