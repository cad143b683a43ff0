"""What a scan file's tile record says, in words, for review: why a tile looks out of focus
(its flags) and, for an unflagged tile, what is worth knowing (its note).

A tile is flagged when its focus failed (not ok), fell back to the predicted z, has a
confidence below the plan's minimum, or, where the true focus is known (simulator), lies more
than half the objective's depth of field from it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slidescan.app.records import MADE, PENDING, PREDICTED
from slidescan.hardware.optics import OBJECTIVES


def text_of(v: Any) -> str:
    """A record field as text (HDF5 gives fixed-length bytes)."""
    if isinstance(v, np.ndarray):
        v = v.item()
    if isinstance(v, bytes | np.bytes_):
        return bytes(v).decode("utf-8", "replace").rstrip("\x00")
    return str(v)


def is_made(rec: np.void) -> bool:
    """The tile's image was made by its focus method from raw shots (not captured)."""
    return text_of(rec["image_source"]) == MADE


def is_pending(rec: np.void) -> bool:
    """The tile's image is still to be made from its raw shots (the scan stopped first, or
    making it failed): its first shot stands in."""
    return text_of(rec["image_source"]) == PENDING


def image_text(rec: np.void) -> str:
    """Where the tile's image came from, in a word or two: captured, made (and how), still
    to be made, or nothing (empty glass)."""
    if rec["skipped"]:
        return ""
    if is_pending(rec):
        return "pending"
    if is_made(rec):
        return f"made ({text_of(rec['made_kind']) or 'made'})"
    return "captured"


def takes(records: np.ndarray) -> dict[int, int]:
    """How many times each planned tile was taken (1, or more when rescanned). An image made
    after the tile is a new version of its record, not a new take: a made version that
    follows its pending one does not count."""
    out: dict[int, int] = {}
    last: dict[int, str] = {}
    for rec in records:
        index, source = int(rec["index"]), text_of(rec["image_source"])
        if not (source == MADE and last.get(index) == PENDING):
            out[index] = out.get(index, 0) + 1
        last[index] = source
    return out


def note(rec: np.void) -> str:
    """What the flags column says of an unflagged tile: empty glass, a tile the focus method
    spent on its per-slide calibration (more frames, by design), an image the method made from
    raw shots (a virtual focus), or another method that settled the tile."""
    if rec["skipped"]:
        return "empty glass"
    notes = []
    if rec["calibration"]:
        notes.append("per-slide calibration")
    if is_made(rec):
        kind = text_of(rec["made_kind"]) or "made"
        notes.append(f"virtual focus: {kind} from {int(rec['shot_count'])} shots")
    elif is_pending(rec):
        notes.append(f"image still to be made from {int(rec['shot_count'])} shots")
    fallback = text_of(rec["fallback"])
    if fallback and fallback != PREDICTED:
        notes.append(f"settled by {fallback}")
    return "; ".join(notes)


def half_depth_of_field(objective: str) -> float | None:
    o = OBJECTIVES.get(objective)
    return o.depth_of_field_um / 2 if o is not None else None


def flag_reasons(rec: np.void, min_confidence: float, half_dof: float | None) -> list[str]:
    """Why a tile record looks out of focus (empty: it looks fine)."""
    if rec["skipped"]:
        return []
    reasons = []
    if not rec["ok"]:
        reasons.append("focus failed")
    if text_of(rec["fallback"]) == PREDICTED:
        reasons.append("taken at the predicted z")
    conf = float(rec["confidence"])
    if np.isfinite(conf) and conf < min_confidence:
        reasons.append(f"confidence {conf:.2f}")
    truth = float(rec["true_focus_um"])
    if half_dof is not None and np.isfinite(truth):
        err = float(rec["z_um"]) - truth
        if abs(err) > half_dof:
            reasons.append(f"|error| {abs(err):.2f} > {half_dof:.2f} µm")
    return reasons
