"""`slidescan bench`: scan speed and focus accuracy on the simulator, and writer throughput."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from slidescan.app.cli import CliError, print_json

#: Options each benchmark takes from the command line. A new benchmark (e.g. "render") adds an
#: entry in app/bench.py BENCHMARKS and, if it has options, a line here.
_OPTIONS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "scan": lambda a: {
        "methods": _names(a.methods, "--methods"),
        "profiles": _names(a.profiles, "--profiles"),
        "n_tiles": a.tiles,
        "objective": a.objective,
        "camera_shape": _shape(a.camera),
    },
    "writer": lambda a: {"n_tiles": a.writer_tiles},
    "memory": lambda a: {"tile_counts": (a.memory_tiles // 10, a.memory_tiles)},
    "render": lambda a: {"objective": a.objective, "size": a.render_size, "repeats": 10},
}


def register(subparsers: argparse._SubParsersAction) -> None:
    from slidescan.app.tools.bench import BENCHMARKS

    p = subparsers.add_parser(
        "bench",
        help="benchmark scans on the simulator (speed, focus error) and the file writer",
        description=(
            "Benchmarks. scan: per focus method and stage timing profile, a simulated scan: "
            "tiles/s in hardware time and its ratio to the profile's physical bound (one XY "
            "move plus one exposure per tile), hardware time over the three-exposure bound "
            "(XY move, three exposures, two Z steps of the pair spacing; 'backlash' adds the Z "
            "reversal that takes up the play within the XY move, 'play' the take-up as a move "
            "of its own), compute per tile, focus MAE, frames per tile, "
            "peak memory. writer: MB/s writing uncompressed tiles through the scan file "
            "writer, fsync'd. memory: peak memory of a short and a 10x longer scan. "
            "render: milliseconds per simulated RGB frame (cold, new field, new z, same z) "
            "and CPU time per frame."
        ),
    )
    p.add_argument(
        "what",
        nargs="?",
        default="all",
        choices=[*BENCHMARKS, "all"],
        help="which benchmark (default all)",
    )
    p.add_argument("--tiles", type=int, default=36, help="tiles per scan benchmark (36)")
    p.add_argument("--methods", default="zsweep,brent,none", help="focus methods, comma-separated")
    p.add_argument(
        "--profiles", default="commercial,lowcost", help="stage timing profiles, comma-separated"
    )
    p.add_argument("--objective", default="20x/0.75")
    p.add_argument(
        "--camera",
        default="256x256",
        help="simulator camera WxH for the scan benchmark (256x256). It sets the field of view, "
        "hence the XY step between tiles: a longer XY move hides more of the Z travel to a "
        "method's approach point, so hardware-time ratios depend on it a little",
    )
    p.add_argument("--writer-tiles", type=int, default=48, help="2048x2048 RGB tiles to write (48)")
    p.add_argument(
        "--memory-tiles", type=int, default=500, help="longer memory-benchmark scan (500)"
    )
    p.add_argument(
        "--render-size", type=int, default=1024, help="frame side for the render benchmark (1024)"
    )
    p.add_argument("--json", action="store_true", help="print every result as JSON")
    p.set_defaults(func=run)


def _names(text: str, flag: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise CliError(f"bench: {flag} is empty")
    return names


def _shape(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    w, sep, h = text.lower().partition("x")
    try:
        shape = (int(h), int(w))
    except ValueError:
        raise CliError(f"bench: --camera expects WxH, e.g. 256x256, got {text!r}") from None
    if not sep or min(shape) < 16:
        raise CliError(f"bench: --camera expects WxH of at least 16x16, got {text!r}")
    return shape


def run(args: argparse.Namespace) -> int:
    from slidescan.app.tools.bench import BENCHMARKS

    if args.tiles < 1 or args.writer_tiles < 1 or args.memory_tiles < 10:
        raise CliError("bench: --tiles and --writer-tiles must be >= 1, --memory-tiles >= 10")
    names = list(BENCHMARKS) if args.what == "all" else [args.what]
    results: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        options = _OPTIONS.get(name, lambda a: {})(args)
        if not args.json:
            print(f"running {name} benchmark ...", file=sys.stderr)
            options_progress = {"progress": _progress} if name == "scan" else {}
        else:
            options_progress = {}
        try:
            results[name] = BENCHMARKS[name](**options, **options_progress)
        except (ValueError, KeyError) as exc:
            raise CliError(f"bench {name}: {exc}") from None
    if args.json:
        print_json(results)
    else:
        for name, rows in results.items():
            _print_rows(name, rows)
    return 0


def _progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "x".join(map(str, v))
    return str(v)


def _print_rows(name: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    keys = [k for k in rows[0] if k != "benchmark"]
    table = [[_fmt(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(k), *(len(row[i]) for row in table)) for i, k in enumerate(keys)]
    print(f"\n[{name}]")
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)))
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
