"""`slidescan stack synth | info | sheet`: make, summarise and look at focus-stack files."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from slidescan.app.cli import CliError, print_json
from slidescan.hardware.stackfile import StackFile, StackFileError, open_stacks

SPECIMEN_HELP = "specimen: a tissue image path, or a built-in name (he, ihc); default: simulator's"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "stack",
        help="focus-stack files: synthesise, summarise, look at",
        description="Make, summarise and look at focus-stack files (HDF5; see README).",
    )
    p.set_defaults(func=_no_action)
    sub = p.add_subparsers(dest="stack_action", metavar="ACTION", parser_class=type(p))

    s = sub.add_parser(
        "synth",
        help="render focus stacks with the optical simulator",
        description=(
            "Render focus stacks at N slide positions spread over the tissue (empty glass is "
            "skipped). Each stack's z is its position's true focus plus the offsets "
            "z-min..z-max, so defocus is known exactly. The file appears only when complete."
        ),
    )
    s.add_argument("--out", required=True, type=Path, help="focus-stack file to write (.h5)")
    s.add_argument("--objective", default="20x/0.75", help="objective (default 20x/0.75)")
    s.add_argument("--positions", type=int, default=8, help="slide positions (default 8)")
    s.add_argument("--z-min", type=float, default=-10.0, help="lowest defocus, um (default -10)")
    s.add_argument("--z-max", type=float, default=10.0, help="highest defocus, um (default 10)")
    s.add_argument("--z-step", type=float, default=0.25, help="plane spacing, um (default 0.25)")
    s.add_argument("--size", type=int, default=512, help="image width and height, px (512)")
    s.add_argument("--specimen", default=None, help=SPECIMEN_HELP)
    s.add_argument("--seed", type=int, default=0, help="simulator seed (default 0)")
    s.add_argument("--stage-preset", default=None, help="simulated stage preset (see the sim)")
    s.add_argument(
        "--compression",
        choices=("gzip", "lzf", "none"),
        default="gzip",
        help="image compression (default gzip)",
    )
    s.add_argument("--json", action="store_true", help="print a JSON summary")
    s.set_defaults(func=_synth)

    i = sub.add_parser(
        "info",
        help="summarise a focus-stack file",
        description="Summarise a focus-stack file: stacks, shapes, z, optics, true focus.",
    )
    i.add_argument("file", type=Path, help="focus-stack file (.h5)")
    i.add_argument("--json", action="store_true", help="print JSON (with every stack)")
    i.set_defaults(func=_info)

    h = sub.add_parser(
        "sheet",
        help="contact sheet PNG of one stack",
        description=(
            "Write a contact sheet: K planes of one stack side by side, each labelled with its z "
            "and defocus. Tiles are a centre crop at full resolution (so blur is not hidden by "
            "resampling) unless --fit."
        ),
    )
    h.add_argument("file", type=Path, help="focus-stack file (.h5)")
    h.add_argument("--out", required=True, type=Path, help="PNG to write")
    h.add_argument("--stack", default=None, help="stack id or index (default: the first)")
    h.add_argument("--planes", type=int, default=9, help="planes on the sheet (default 9)")
    h.add_argument("--tile", type=int, default=256, help="tile size, px (default 256)")
    h.add_argument("--fit", action="store_true", help="shrink the whole field into each tile")
    h.set_defaults(func=_sheet)


def _no_action(args: argparse.Namespace) -> int:
    raise CliError("stack: choose an action: synth, info or sheet (see slidescan stack --help)")


def _open(path: Path) -> StackFile:
    try:
        return open_stacks(path)
    except StackFileError as exc:
        raise CliError(str(exc), code=1) from None


# -- info ------------------------------------------------------------------------------------


def summarise(f: StackFile) -> dict[str, Any]:
    """A JSON-ready summary of an open focus-stack file (metadata only; no images read)."""
    stacks = []
    for sid in f.ids:
        z = f.z_um(sid)
        steps = np.abs(np.diff(z)) if len(z) > 1 else np.zeros(0)
        tf = f.true_focus_um(sid)
        g = f._h5["stacks"][sid].attrs  # metadata only
        stacks.append(
            {
                "id": sid,
                "shape": list(f.shape(sid)),
                "dtype": str(f.dtype(sid)),
                "planes": len(z),
                "z_min_um": float(z.min()),
                "z_max_um": float(z.max()),
                "z_step_um": float(np.median(steps)) if steps.size else None,
                "uniform_step": bool(steps.size == 0 or np.ptp(steps) <= 1e-6),
                "true_focus_um": tf,
                "defocus_min_um": None if tf is None else float(z.min() - tf),
                "defocus_max_um": None if tf is None else float(z.max() - tf),
                "x_um": float(g["x_um"]) if "x_um" in g else None,
                "y_um": float(g["y_um"]) if "y_um" in g else None,
            }
        )
    o = f.optics
    truths = np.array([s["true_focus_um"] for s in stacks if s["true_focus_um"] is not None])
    cfg = f.source_config
    return {
        "file": str(f.path),
        "source": f.source,
        "source_config": cfg,
        "created": f.attrs.get("created"),
        "software_version": f.attrs.get("software_version"),
        "optics": {
            "na": o.na,
            "magnification": o.magnification,
            "immersion_n": o.immersion_n,
            "pixel_size_um": o.pixel_size_um,
            "wavelengths_um": list(o.wavelengths_um),
            "depth_of_field_um": o.depth_of_field_um,
        },
        "stacks": len(stacks),
        "shapes": sorted({tuple(s["shape"]) for s in stacks}),
        "dtypes": sorted({s["dtype"] for s in stacks}),
        "planes": sorted({s["planes"] for s in stacks}),
        "z_steps_um": sorted({round(s["z_step_um"], 6) for s in stacks if s["z_step_um"]}),
        "true_focus": None
        if truths.size == 0
        else {
            "known": int(truths.size),
            "min_um": float(truths.min()),
            "max_um": float(truths.max()),
            "mean_um": float(truths.mean()),
            "std_um": float(truths.std()),
        },
        "per_stack": stacks,
    }


def _info(args: argparse.Namespace) -> int:
    with _open(args.file) as f:
        info = summarise(f)
    if args.json:
        print_json(info)
        return 0
    o = info["optics"]
    lines = [
        f"file        {info['file']}",
        f"source      {info['source']}" + _source_note(info["source_config"]),
        f"optics      {o['magnification']:g}x / NA {o['na']:g} (n {o['immersion_n']:g}), "
        f"{o['pixel_size_um']:.4f} um/px, DOF {o['depth_of_field_um']:.3f} um",
        f"stacks      {info['stacks']}",
        f"shape       {', '.join(' x '.join(map(str, s)) for s in info['shapes'])}  "
        f"({', '.join(info['dtypes'])})",
        f"planes      {', '.join(map(str, info['planes']))}, "
        f"step {', '.join(f'{s:g}' for s in info['z_steps_um'])} um",
    ]
    tf = info["true_focus"]
    if tf:
        lines.append(
            f"true focus  {tf['known']} known: {tf['min_um']:.3f} .. {tf['max_um']:.3f} um "
            f"(mean {tf['mean_um']:.3f}, std {tf['std_um']:.3f})"
        )
    else:
        lines.append("true focus  not recorded")
    lines += ["", f"{'id':<10}{'planes':>7}{'z range um':>22}{'defocus um':>20}{'x, y um':>20}"]
    for s in info["per_stack"]:
        z_range = f"{s['z_min_um']:.3f} .. {s['z_max_um']:.3f}"
        defocus = (
            f"{s['defocus_min_um']:+.2f} .. {s['defocus_max_um']:+.2f}"
            if s["true_focus_um"] is not None
            else "?"
        )
        xy = f"{s['x_um']:.0f}, {s['y_um']:.0f}" if s["x_um"] is not None else "-"
        lines.append(f"{s['id']:<10}{s['planes']:>7}{z_range:>22}{defocus:>20}{xy:>20}")
    print("\n".join(lines))
    return 0


def _source_note(cfg: dict[str, Any] | None) -> str:
    if not cfg:
        return ""
    parts = [f"{k}={cfg[k]}" for k in ("objective", "seed") if k in cfg]
    spec = cfg.get("specimen")
    if isinstance(spec, dict):
        if spec.get("kind") == "image" and spec.get("image_path"):
            parts.append(f"specimen={Path(str(spec['image_path'])).name}")
        elif "stain" in spec:
            parts.append(f"specimen={spec.get('kind', '')} {spec['stain']}".rstrip())
    return f" ({', '.join(parts)})" if parts else ""


# -- sheet -----------------------------------------------------------------------------------


def choose_planes(z_um: np.ndarray, true_focus_um: float | None, k: int) -> list[int]:
    """Indices of `k` planes for a contact sheet, in increasing z.

    With a known true focus the planes sit at defocus values symmetric about 0 (so the middle
    tile of an odd `k` is the in-focus plane); otherwise they are spread evenly over the stack.
    """
    order = np.argsort(z_um)
    zs = z_um[order]
    if true_focus_um is not None and zs[0] <= true_focus_um <= zs[-1]:
        reach = min(true_focus_um - zs[0], zs[-1] - true_focus_um)
        targets = true_focus_um + np.linspace(-reach, reach, k)
    else:
        targets = np.linspace(zs[0], zs[-1], k)
    picked = [int(order[np.argmin(np.abs(zs - t))]) for t in targets]
    return list(dict.fromkeys(picked))  # a short stack may give repeats


def _to_bgr8(image: np.ndarray) -> np.ndarray:
    import cv2

    img = image
    if img.dtype == np.uint16:
        img = np.rint(img / 257.0).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_RGBA2BGR)
    return cv2.cvtColor(img, cv2.COLOR_RGB2BGR)


def _tile(image: np.ndarray, size: int, fit: bool) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    if fit:
        scale = size / max(h, w)
        image = cv2.resize(
            image,
            (max(1, round(w * scale)), max(1, round(h * scale))),
            interpolation=cv2.INTER_AREA,
        )
    else:
        y0, x0 = max(0, (h - size) // 2), max(0, (w - size) // 2)
        image = image[y0 : y0 + size, x0 : x0 + size]
    canvas = np.full((size, size, 3), 255, np.uint8)
    ih, iw = image.shape[:2]
    canvas[(size - ih) // 2 : (size - ih) // 2 + ih, (size - iw) // 2 : (size - iw) // 2 + iw] = (
        image
    )
    return canvas


def render_sheet(
    f: StackFile, stack_key: int | str, planes: int, tile: int, fit: bool
) -> tuple[np.ndarray, dict[str, Any]]:
    """The contact sheet (BGR uint8) and what is on it."""
    import cv2

    stack = f[stack_key]
    picked = choose_planes(stack.z_um, stack.true_focus_um, planes)
    font, label_h, gap = cv2.FONT_HERSHEY_SIMPLEX, 44, 6
    title_h = 30
    width = len(picked) * tile + (len(picked) + 1) * gap
    sheet = np.full((title_h + label_h + tile + gap, width, 3), 255, np.uint8)
    tf = stack.true_focus_um
    title = f"{f.path.name}  stack {stack.id}  " + (
        f"true focus {tf:.2f} um" if tf is not None else "true focus unknown"
    )
    title += "  (centre crop)" if not fit else "  (whole field)"
    cv2.putText(sheet, title, (gap, 21), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    for n, idx in enumerate(picked):
        x = gap + n * (tile + gap)
        z = float(stack.z_um[idx])
        cv2.putText(
            sheet, f"z {z:.2f} um", (x, title_h + 16), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA
        )
        if tf is not None:
            d = z - tf
            colour = (0, 128, 0) if abs(d) <= f.optics.depth_of_field_um / 2 else (0, 0, 160)
            cv2.putText(
                sheet, f"defocus {d:+.2f}", (x, title_h + 36), font, 0.45, colour, 1, cv2.LINE_AA
            )
        y = title_h + label_h
        sheet[y : y + tile, x : x + tile] = _tile(_to_bgr8(stack.images[idx]), tile, fit)
    info = {
        "stack": stack.id,
        "planes": [int(i) for i in picked],
        "z_um": [float(stack.z_um[i]) for i in picked],
        "true_focus_um": tf,
    }
    return sheet, info


def _sheet(args: argparse.Namespace) -> int:
    import cv2

    if args.planes < 1:
        raise CliError("stack sheet: --planes must be at least 1")
    if args.tile < 16:
        raise CliError("stack sheet: --tile must be at least 16 px")
    if args.out.suffix.lower() != ".png":
        raise CliError(f"stack sheet: --out must be a .png file, got {args.out}")
    if not args.out.parent.is_dir():
        raise CliError(f"stack sheet: folder {args.out.parent} does not exist")
    with _open(args.file) as f:
        if len(f) == 0:
            raise CliError(f"{args.file} holds no stacks", code=1)
        key: int | str = 0
        if args.stack is not None:
            key = args.stack
            if key not in f.ids:
                if not key.lstrip("-").isdigit():
                    raise CliError(f"no stack {key!r} in {args.file}", code=1)
                key = int(key)
        try:
            sheet, info = render_sheet(f, key, args.planes, args.tile, args.fit)
        except (KeyError, IndexError) as exc:
            raise CliError(str(exc.args[0] if exc.args else exc), code=1) from None
    if not cv2.imwrite(str(args.out), sheet):
        raise CliError(f"could not write {args.out}", code=1)
    print(
        f"wrote {args.out}: stack {info['stack']}, {len(info['planes'])} planes, "
        f"z {info['z_um'][0]:.2f} .. {info['z_um'][-1]:.2f} um",
        file=sys.stderr,
    )
    return 0


# -- synth -----------------------------------------------------------------------------------


def defocus_offsets(z_min: float, z_max: float, z_step: float) -> np.ndarray:
    """Offsets z_min, z_min + step, ..., z_max; the range must be a whole number of steps."""
    if not all(math.isfinite(v) for v in (z_min, z_max, z_step)):
        raise CliError("stack synth: --z-min, --z-max and --z-step must be finite numbers")
    if z_step <= 0:
        raise CliError(f"stack synth: --z-step must be positive, got {z_step:g}")
    if z_max <= z_min:
        raise CliError(f"stack synth: --z-max ({z_max:g}) must exceed --z-min ({z_min:g})")
    steps = (z_max - z_min) / z_step
    n = round(steps)
    if abs(steps - n) > 1e-6 * max(1.0, steps):
        raise CliError(
            f"stack synth: z range {z_min:g}..{z_max:g} um is not a whole number of "
            f"{z_step:g} um steps"
        )
    return z_min + z_step * np.arange(n + 1)


#: A synthesised stack's field must be at least this fraction tissue (the rest is glass).
MIN_TISSUE_FRACTION = 0.6
#: Tissue is sampled on this many points per field side when choosing positions.
_LOOK = 8
#: At most this many candidate fields per side of the tissue area.
_MAX_CANDIDATES = 60


def sim_config_from_args(args: argparse.Namespace) -> Any:
    """The `SimConfig` for `stack synth`, with one-line errors for bad choices."""
    from pydantic import ValidationError

    try:
        from slidescan.hardware.sim import SimCameraConfig, SimConfig, SpecimenConfig
    except ImportError as exc:
        raise CliError(f"stack synth: the simulator is not available ({exc})", code=1) from None

    fields: dict[str, Any] = {
        "objective": args.objective,
        "seed": args.seed,
        "camera": SimCameraConfig(width=args.size, height=args.size),
    }
    spec = args.specimen
    try:
        if spec is not None:
            if spec in ("he", "ihc"):
                fields["specimen"] = SpecimenConfig(kind="procedural", stain=spec)
            else:
                path = Path(spec).expanduser()
                if not path.is_file():
                    raise CliError(
                        f"stack synth: specimen image not found: {spec} (or use he, ihc)", code=1
                    )
                fields["specimen"] = SpecimenConfig(kind="image", image_path=path.resolve())
        if args.stage_preset is not None:
            fields["stage"] = args.stage_preset
        return SimConfig(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "setting"
        msg = str(err.get("msg", exc)).removeprefix("Value error, ")
        raise CliError(f"stack synth: {where}: {msg}") from None


def replay_timing_of(config: Any) -> dict[str, Any]:
    """The `ReplayTiming` fields that reproduce the simulated stage's Z and camera timing."""
    stage, camera = config.stage, config.camera
    return {
        "z_speed_um_per_s": stage.z_speed_um_s,
        "z_accel_um_per_s2": stage.z_accel_um_s2,
        "z_settle_s": stage.z_settle_ms / 1000.0,
        "exposure_ms": camera.exposure_ms,
        "strobe_ms": stage.strobe_ms,
        "readout_s": camera.readout_ms / 1000.0,
    }


def _field_centres(lo: float, hi: float, size: float) -> np.ndarray:
    """Centres of up to `_MAX_CANDIDATES` non-overlapping fields of `size` inside [lo, hi]."""
    step = max(size, (hi - lo) / _MAX_CANDIDATES)
    n = int((hi - lo - size) // step) + 1 if hi - lo >= size else 0
    return lo + size / 2.0 + step * np.arange(n)


def choose_positions(sim: Any, n: int, seed: int) -> list[tuple[float, float, float]]:
    """`n` non-overlapping fields over the slide's tissue, spread out: (x, y, tissue fraction).

    Candidate fields lie on a grid over the tissue area (at most `_MAX_CANDIDATES` per side);
    each one's tissue fraction is sampled from the simulator's tissue mask on a `_LOOK` x
    `_LOOK` grid inside the field; fields below `MIN_TISSUE_FRACTION` (empty or mostly glass)
    are skipped. The first field is drawn with `seed`, the rest by farthest-point sampling, so
    the stacks cover the slide (and its focus surface) widely.
    """
    x0, y0, x1, y1 = sim.slide_bounds_um
    fw, fh = sim.field_of_view_um
    cx, cy = _field_centres(x0, x1, fw), _field_centres(y0, y1, fh)
    if cx.size == 0 or cy.size == 0:
        raise CliError("stack synth: the field of view is larger than the tissue area", code=1)
    inner = (np.arange(_LOOK) + 0.5) / _LOOK - 0.5
    xs = (cx[:, None] + fw * inner[None, :]).ravel()
    ys = (cy[:, None] + fh * inner[None, :]).ravel()
    mask = np.asarray(sim.tissue_mask(xs, ys), dtype=np.float64)
    frac = mask.reshape(cy.size, _LOOK, cx.size, _LOOK).mean(axis=(1, 3))
    jj, ii = np.nonzero(frac >= MIN_TISSUE_FRACTION)
    if len(ii) < n:
        raise CliError(
            f"stack synth: only {len(ii)} candidate fields are at least "
            f"{MIN_TISSUE_FRACTION:.0%} tissue; ask for at most {len(ii)} positions",
            code=1,
        )
    px, py = cx[ii], cy[jj]
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(len(ii)))]
    dist = np.hypot(px - px[chosen[0]], py - py[chosen[0]])
    while len(chosen) < n:
        k = int(np.argmax(dist))
        chosen.append(k)
        dist = np.minimum(dist, np.hypot(px - px[k], py - py[k]))
    return [(float(px[k]), float(py[k]), float(frac[jj[k], ii[k]])) for k in chosen]


def synthesise(
    out: Path,
    config: Any,
    positions: int,
    offsets_um: np.ndarray,
    *,
    compression: str | None = "gzip",
    progress: bool = True,
) -> dict[str, Any]:
    """Render `positions` focus stacks into `out` (written atomically); returns a summary."""
    import time

    from tqdm import tqdm

    from slidescan.hardware.sim import build_simulator
    from slidescan.hardware.stackfile import StackWriter

    t_start = time.perf_counter()
    sim = build_simulator(config)
    fields = choose_positions(sim, positions, config.seed)
    shape = (len(offsets_um), *config.camera.shape)
    lo, hi = config.stage.z_limits_um
    records = []
    render_s = 0.0
    bar = tqdm(
        total=positions * len(offsets_um),
        desc="synth",
        unit="plane",
        disable=not progress,
        file=sys.stderr,
    )
    try:
        with StackWriter(
            out,
            sim.optics,
            source="simulator",
            source_config=config.model_dump(mode="json"),
            compression=compression,  # type: ignore[arg-type]
            attrs={"replay_timing": replay_timing_of(config)},
        ) as writer:
            for x, y, tissue in fields:
                truth = float(sim.true_focus_um(x, y))
                z = truth + offsets_um
                if z[0] < lo or z[-1] > hi:
                    raise CliError(
                        f"stack synth: the stack at ({x:.0f}, {y:.0f}) um would reach "
                        f"{z[0]:.1f}..{z[-1]:.1f} um, outside the stage's z limits",
                        code=1,
                    )
                images = None
                t0 = time.perf_counter()
                for k, zk in enumerate(z):
                    plane = sim.render(x, y, float(zk))
                    if images is None:
                        images = np.empty(shape, dtype=plane.dtype)
                    images[k] = plane
                    bar.update(1)
                render_s += time.perf_counter() - t0
                sid = writer.append(
                    images, z, true_focus_um=truth, x_um=x, y_um=y, tissue_fraction=tissue
                )
                records.append(
                    {"id": sid, "x_um": x, "y_um": y, "true_focus_um": truth, "tissue": tissue}
                )
    finally:
        bar.close()
    return {
        "file": str(out),
        "stacks": len(records),
        "planes": len(offsets_um),
        "size": config.camera.width,
        "shape": list(shape),
        "objective": config.objective,
        "specimen": config.specimen.kind
        if config.specimen.kind == "image"
        else config.specimen.stain,
        "seed": config.seed,
        "defocus_um": [float(offsets_um[0]), float(offsets_um[-1])],
        "z_step_um": float(offsets_um[1] - offsets_um[0]) if len(offsets_um) > 1 else None,
        "positions": records,
        "wall_s": time.perf_counter() - t_start,
        "render_s_per_plane": render_s / max(1, positions * len(offsets_um)),
        "file_mb": out.stat().st_size / 1e6,
    }


def _synth(args: argparse.Namespace) -> int:
    offsets = defocus_offsets(args.z_min, args.z_max, args.z_step)
    if args.positions < 1:
        raise CliError("stack synth: --positions must be at least 1")
    if args.size < 16:
        raise CliError("stack synth: --size must be at least 16 px")
    if args.out.suffix.lower() not in (".h5", ".hdf5"):
        raise CliError(f"stack synth: --out must be an .h5 file, got {args.out}")
    if not args.out.parent.is_dir():
        raise CliError(f"stack synth: folder {args.out.parent} does not exist")
    config = sim_config_from_args(args)
    result = synthesise(
        args.out,
        config,
        args.positions,
        offsets,
        compression=None if args.compression == "none" else args.compression,
        progress=not args.json,
    )
    if args.json:
        print_json(result)
    else:
        print(
            f"wrote {result['file']}: {result['stacks']} stacks x {result['planes']} planes of "
            f"{args.size} px ({result['specimen']}, {result['objective']}), defocus "
            f"{offsets[0]:+g}..{offsets[-1]:+g} um, {result['file_mb']:.1f} MB, "
            f"{result['wall_s']:.1f} s ({1000 * result['render_s_per_plane']:.0f} ms/plane)"
        )
    return 0
