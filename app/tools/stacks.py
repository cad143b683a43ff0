"""Focus stacks from the simulator, and contact sheets of any stack file (the offline half of
`slidescan stack`): choose tissue fields, render each at defocus offsets around its true focus,
write them atomically (`slidescan.hardware.stackfile`). Bad input raises `ValueError` with a
one-line message.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from slidescan.hardware.stackfile import StackFile


def defocus_offsets(z_min: float, z_max: float, z_step: float) -> np.ndarray:
    """Offsets z_min, z_min + step, ..., z_max; the range must be a whole number of steps."""
    if not all(math.isfinite(v) for v in (z_min, z_max, z_step)):
        raise ValueError("--z-min, --z-max and --z-step must be finite numbers")
    if z_step <= 0:
        raise ValueError(f"--z-step must be positive, got {z_step:g}")
    if z_max <= z_min:
        raise ValueError(f"--z-max ({z_max:g}) must exceed --z-min ({z_min:g})")
    steps = (z_max - z_min) / z_step
    n = round(steps)
    if abs(steps - n) > 1e-6 * max(1.0, steps):
        raise ValueError(
            f"z range {z_min:g}..{z_max:g} um is not a whole number of {z_step:g} um steps"
        )
    return z_min + z_step * np.arange(n + 1)


#: A synthesised stack's field must be at least this fraction tissue (the rest is glass).
MIN_TISSUE_FRACTION = 0.6
#: Tissue is sampled on this many points per field side when choosing positions.
_LOOK = 8
#: At most this many candidate fields per side of the tissue area.
_MAX_CANDIDATES = 60


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
    x0, y0, x1, y1 = sim.truth.slide_bounds_um
    fw, fh = sim.field_of_view_um
    cx, cy = _field_centres(x0, x1, fw), _field_centres(y0, y1, fh)
    if cx.size == 0 or cy.size == 0:
        raise ValueError("the field of view is larger than the tissue area")
    inner = (np.arange(_LOOK) + 0.5) / _LOOK - 0.5
    xs = (cx[:, None] + fw * inner[None, :]).ravel()
    ys = (cy[:, None] + fh * inner[None, :]).ravel()
    mask = np.asarray(sim.tissue_mask(xs, ys), dtype=np.float64)
    frac = mask.reshape(cy.size, _LOOK, cx.size, _LOOK).mean(axis=(1, 3))
    jj, ii = np.nonzero(frac >= MIN_TISSUE_FRACTION)
    if len(ii) < n:
        raise ValueError(
            f"only {len(ii)} candidate fields are at least "
            f"{MIN_TISSUE_FRACTION:.0%} tissue; ask for at most {len(ii)} positions"
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
    from tqdm import tqdm

    from slidescan.app.tools.simdata import render_clean
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
                    raise ValueError(
                        f"the stack at ({x:.0f}, {y:.0f}) um would reach "
                        f"{z[0]:.1f}..{z[-1]:.1f} um, outside the stage's z limits"
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
                    images,
                    z,
                    true_focus_um=truth,
                    x_um=x,
                    y_um=y,
                    tissue_fraction=tissue,
                    reference=render_clean(sim, x, y, truth),
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
