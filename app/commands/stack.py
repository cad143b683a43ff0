"""`slidescan stack synth | info | sheet`: make, summarise and look at focus-stack files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from slidescan.app.cli import CliError, print_json
from slidescan.app.tools import stacks as tool
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

    c = sub.add_parser(
        "crosscheck",
        help="render focus stacks with a second, independent renderer",
        description=(
            "Render focus stacks of real tissue images with a renderer written apart from the "
            "simulator (paraxial Born & Wolf PSF by quadrature, a thin specimen, a Bayer camera "
            "with Poisson noise), each with its noise-free in-focus reference, to check that "
            "methods made on the simulator carry over (`slidescan focus eval`). Each stack's z "
            "is a random focus plus the offsets z-min..z-max. The file appears only when "
            "complete."
        ),
    )
    c.add_argument("--out", required=True, type=Path, help="focus-stack file to write (.h5)")
    c.add_argument(
        "--tissue",
        required=True,
        nargs="+",
        metavar="PATH:PIXEL_UM",
        help="in-focus tissue images and their pixel size, um",
    )
    c.add_argument("--objective", default="20x/0.75", help="objective (default 20x/0.75)")
    c.add_argument("--fields", type=int, default=2, help="stacks per image (default 2)")
    c.add_argument("--size", type=int, default=256, help="image width and height, px (256)")
    c.add_argument("--z-min", type=float, default=-6.0, help="lowest defocus, um (default -6)")
    c.add_argument("--z-max", type=float, default=6.0, help="highest defocus, um (default 6)")
    c.add_argument("--z-step", type=float, default=0.25, help="plane spacing, um (default 0.25)")
    c.add_argument(
        "--spherical", type=float, default=0.0, help="Zernike spherical aberration, waves (0)"
    )
    c.add_argument(
        "--no-bayer",
        action="store_true",
        help="a three-chip camera (R, G, B at every pixel) instead of the Bayer mosaic",
    )
    c.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    c.add_argument("--json", action="store_true", help="print a JSON summary")
    c.set_defaults(func=_crosscheck)

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
            sheet, info = tool.render_sheet(f, key, args.planes, args.tile, args.fit)
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


def _check_new_stack_file(action: str, out: Path) -> None:
    """A one-line error unless `out` is an .h5 path in a folder that exists."""
    if out.suffix.lower() not in (".h5", ".hdf5"):
        raise CliError(f"stack {action}: --out must be an .h5 file, got {out}")
    if not out.parent.is_dir():
        raise CliError(f"stack {action}: folder {out.parent} does not exist")


def _crosscheck(args: argparse.Namespace) -> int:
    from slidescan.app.tools import crosscheck_render as cr

    try:
        offsets = tool.defocus_offsets(args.z_min, args.z_max, args.z_step)
        tissues = [cr.TissueImage.parse(t) for t in args.tissue]
    except ValueError as exc:
        raise CliError(f"stack crosscheck: {exc}") from None
    _check_new_stack_file("crosscheck", args.out)
    say = (lambda s: None) if args.json else (lambda s: print(s, file=sys.stderr))
    try:
        result = cr.write_crosscheck_stacks(
            args.out,
            args.objective,
            tissues,
            offsets,
            fields=args.fields,
            size=args.size,
            spherical_waves=args.spherical,
            bayer=not args.no_bayer,
            seed=args.seed,
            progress=say,
        )
    except ValueError as exc:
        raise CliError(f"stack crosscheck: {exc}", code=1) from None
    if args.json:
        print_json(result)
    else:
        print(
            f"wrote {result['file']}: {len(result['stacks'])} stacks x {result['planes']} planes "
            f"of {args.size} px ({args.objective}), defocus {offsets[0]:+g}..{offsets[-1]:+g} um"
        )
    return 0


def _synth(args: argparse.Namespace) -> int:
    try:
        offsets = tool.defocus_offsets(args.z_min, args.z_max, args.z_step)
    except ValueError as exc:
        raise CliError(f"stack synth: {exc}") from None
    if args.positions < 1:
        raise CliError("stack synth: --positions must be at least 1")
    if args.size < 16:
        raise CliError("stack synth: --size must be at least 16 px")
    _check_new_stack_file("synth", args.out)
    config = sim_config_from_args(args)
    try:
        result = tool.synthesise(
            args.out,
            config,
            args.positions,
            offsets,
            compression=None if args.compression == "none" else args.compression,
            progress=not args.json,
        )
    except ValueError as exc:
        raise CliError(f"stack synth: {exc}", code=1) from None
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
