"""Before the scan: the whole slide at low resolution (`overview`), where the tissue is on it
(`tissue`), and the tile plan that covers the tissue (`ScanPlan` with a `PolygonsRegion`)."""
