"""Export time and memory against slide size: a procedural slide the size of an n-tile scan
(1024 px tiles, 10 % overlap) exported in a fresh process, so that its peak memory is the
export's own.

    python -m slidescan.app.export.benchmark [--tiles 100 400] [--format svs] [--json]

Per run: wall time of the export and, separately, of reading level 0 from the source alone
(the source's share); peak traced Python/numpy allocations (tracemalloc, a second run); peak
resident memory (VmHWM) and what it was before the export began; file and scratch sizes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TILE_PX = 1024
OVERLAP = 0.1


def slide_side(n_tiles: int) -> int:
    """Side of the square mosaic of an n-tile (square) scan."""
    per_side = round(n_tiles**0.5)
    return TILE_PX + (per_side - 1) * round(TILE_PX * (1 - OVERLAP))


def measure(
    n_tiles: int, fmt: str = "svs", compression: str | None = None, folder: str | None = None
) -> dict[str, Any]:
    """One size, measured in child processes (time and RSS; then tracemalloc)."""
    runs = [_child(n_tiles, fmt, compression, folder, trace) for trace in (False, True)]
    out = runs[0]
    out["traced_peak_bytes"] = runs[1]["traced_peak_bytes"]
    return out


def _child(
    n_tiles: int, fmt: str, compression: str | None, folder: str | None, trace: bool
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "slidescan.app.export.benchmark",
        "--child",
        str(n_tiles),
        "--format",
        fmt,
    ]
    if compression:
        cmd += ["--compression", compression]
    if folder:
        cmd += ["--folder", folder]
    if trace:
        cmd.append("--trace")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _run_child(args: argparse.Namespace) -> dict[str, Any]:
    import tracemalloc

    from slidescan.app.export.slide import DEFAULT_COMPRESSION, SUFFIXES, export_slide
    from slidescan.app.export.sources import PatternSlide
    from slidescan.app.stitch.source import SlideInfo

    side = slide_side(args.child)
    info = SlideInfo(0.325, "20x/0.75", 20.0, 0.75, name=f"bench-{args.child}")
    source = PatternSlide(side, side, info=info)
    suffix = next(s for s, f in SUFFIXES.items() if f == args.format)
    compression = args.compression or DEFAULT_COMPRESSION[args.format]
    source_s = 0.0
    if not args.trace:
        t = time.perf_counter()
        for y in range(0, side, 512):
            for x in range(0, side, 512):
                source.read(y, x, 512, 512)
        source_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        _reset_rss_peak()
        rss_before = _rss_peak()
        if args.trace:
            tracemalloc.start()
        t = time.perf_counter()
        result = export_slide(source, Path(tmp) / f"slide{suffix}", compression=compression)
        seconds = time.perf_counter() - t
        traced = tracemalloc.get_traced_memory()[1] if args.trace else None
    return {
        "tiles": args.child,
        "side_px": side,
        "megapixels": side * side / 1e6,
        "format": args.format,
        "compression": result.compression,
        "levels": len(result.levels),
        "seconds": seconds,
        "source_seconds": source_s,
        "file_bytes": result.file_bytes,
        "scratch_bytes": result.scratch_bytes,
        "raw_bytes": side * side * 3,
        "rss_before_bytes": rss_before,
        "rss_peak_bytes": _rss_peak(),
        "traced_peak_bytes": traced,
    }


def _reset_rss_peak() -> None:
    """Start the peak over from the current resident size (Linux; elsewhere the peak stays
    the process's)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _rss_peak() -> int:
    """Peak resident set size of this process so far (bytes)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiles", type=int, nargs="+", default=[100, 400])
    p.add_argument("--format", default="svs", choices=("svs", "ome-tiff", "ome-zarr"))
    p.add_argument("--compression")
    p.add_argument("--folder", help="where the files go (default: the system temp folder)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_run_child(args)))
        return 0
    rows = [measure(n, args.format, args.compression, args.folder) for n in args.tiles]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(
            f"{r['tiles']:4d} tiles ({r['side_px']} px square, {r['megapixels']:.0f} MP) "
            f"{r['format']} {r['compression']}: {r['seconds']:.1f} s "
            f"(source alone {r['source_seconds']:.1f} s), "
            f"{r['file_bytes'] / 1e6:.1f} MB file, {r['levels']} levels, "
            f"traced peak {r['traced_peak_bytes'] / 1e6:.1f} MB, "
            f"RSS peak {r['rss_peak_bytes'] / 1e6:.0f} MB "
            f"(before export {r['rss_before_bytes'] / 1e6:.0f} MB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
