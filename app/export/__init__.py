"""Exports of what a scan made: single tiles and the tile table (`tiles`). Qt-free; the GUI's
review and the CLI call them."""
