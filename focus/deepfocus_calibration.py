"""DeepFocus's per-instrument calibration: the curve of blur score against z for one objective on
one microscope, from one z-stack of any flat textured object (Shajkofci & Liebling).

The network is the same for every microscope; this file is what makes it this one's: the
median valid patch score per plane (every plane's noise first raised to a floor set by the
stack's own, `NOISE_FLOOR_FACTOR`), the paper's curve model fitted to it (`deepfocus_curve`),
centred so z = 0 is the fitted focus, and its FWHM (at half a fixed depth, `DIP_DEPTH`), which
scales the search (`DeepFocusParams.search_fwhm`). It records the optics it was made with; a
calibration for another objective, pixel size or NA is refused with a one-line error
(`check_matches`), as is a damaged file.

Stored as JSON per profile and objective in the config folder (`default_path`), with a PNG plot
beside it (`write_plot`). Torch-free: the scores come in from the network's caller.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slidescan.focus.deepfocus_curve import CurveModel, fit_curve
from slidescan.focus.learned.deepfocus_score import MAX_SIGMA_PX, WAVELENGTH_UM
from slidescan.focus.naming import objective_slug
from slidescan.focus.protocol import FocusError, OpticsLike

FORMAT = "slidescan-deepfocus-calibration"
#: 2: the noise floor (`noise_sigma`, `noise_floor`, `frame_dtype`); a version-1 file reads
#: with no floor.
VERSION = 2
#: Planes of a calibration stack on the microscope, and how far past saturation it reaches.
CALIBRATION_PLANES = 81
RANGE_PAST_SATURATION = 1.2
#: Tolerances of `check_matches`: the same objective name, pixel size within 2 %, NA 0.03.
PIXEL_TOLERANCE = 0.02
NA_TOLERANCE = 0.03


#: The noise floor every frame is raised to, in multiples of the calibration stack's own noise
#: (`deepfocus_score` module docstring): above 1.41, so a replayed frame blended half-way
#: between two planes (its noise averaged down by 1/1.41) reads as a plane does. Chosen on the
#: tuning stacks at 10x/0.30, hints within +/-40 um, 4 frames, fixed hint offsets (MAE um, our
#: simulator / the second renderer): no floor 0.753 / 1.457, 1.5 0.573 / 1.171, 1.75 0.597 /
#: 1.121, 2 0.611 / 1.064, 3 - / 1.251; at 20x/0.75 within +/-5 um 0.161 / 0.143 without and
#: 0.157 / 0.144 at 2.
NOISE_FLOOR_FACTOR = 2.0


#: The depth the FWHM is measured at, in score units (ln px): the score's design range, from a
#: one-pixel blur (ln 1 = 0) to where it is clipped (ln `MAX_SIGMA_PX` = ln 24).
#: The dip's own depth, from its least value to the ends of the stack, grows with how far the
#: calibration stack reaches (10x/0.30: FWHM 16.5 um over +/-25 um, 28.0 over +/-85 um); at a
#: fixed depth the width is the curve's alone (28.2-28.6 um over the same ranges, tuning set).
DIP_DEPTH = math.log(MAX_SIGMA_PX)


class CalibrationError(FocusError):
    """A calibration file that is missing, damaged, or made for other optics."""


@dataclass
class DeepFocusCalibration:
    objective: str
    na: float
    pixel_size_um: float
    z_um: list[float]  # planes, relative to the fitted focus
    median: list[float]  # median valid patch score per plane
    spread: list[float]  # half the inter-quartile range per plane
    valid_fraction: list[float]
    curve: CurveModel  # centred: focus at z = 0
    fit_rms: float
    source: str
    weights_checksum: str = ""
    made: str = ""
    focus_z_um: float = 0.0  # the stack's z of the fitted focus (where z = 0 was)
    extra: dict[str, Any] = field(default_factory=dict)
    #: the calibration stack's noise and the floor its planes, and every search frame, are
    #: raised to (grey levels of the frame's luminance; 0: none, a version-1 file)
    noise_sigma: float = 0.0
    noise_floor: float = 0.0
    #: the calibration frames' dtype ("uint8", "uint16", ...; "" unknown): the floor is in
    #: their grey levels, so frames of another bit depth are refused (`check_frame`)
    frame_dtype: str = ""

    @property
    def fwhm_um(self) -> float:
        """The fitted dip's full width at half of `DIP_DEPTH` (at half its own depth over the
        calibrated range where the curve does not rise that far)."""
        return self.curve.dip_width_um(min(self.z_um), max(self.z_um), DIP_DEPTH)

    # -- checks ------------------------------------------------------------------------------
    def check_matches(self, optics: OpticsLike) -> None:
        """A `CalibrationError` unless this calibration was made with these optics."""
        problems = []
        name = str(optics.objective_name)
        if name != self.objective:
            problems.append(f"objective {name} (calibrated: {self.objective})")
        px = float(optics.pixel_size_um)
        if abs(px - self.pixel_size_um) > PIXEL_TOLERANCE * self.pixel_size_um:
            problems.append(f"pixel size {px:.4g} um (calibrated: {self.pixel_size_um:.4g} um)")
        if abs(float(optics.na) - self.na) > NA_TOLERANCE:
            problems.append(f"NA {float(optics.na):.3g} (calibrated: {self.na:.3g})")
        if problems:
            raise CalibrationError(
                "the DeepFocus calibration does not match the objective in use: "
                + "; ".join(problems)
                + " (run `slidescan focus calibrate --mode deepfocus` for it)"
            )

    def check_frame(self, image: np.ndarray) -> None:
        """A `CalibrationError` when a frame's dtype is not the calibration frames' (the noise
        floor is in their grey levels: an 8-bit floor would do nothing to 16-bit frames, a
        16-bit one would bury 8-bit frames in noise)."""
        dtype = str(np.asarray(image).dtype)
        if self.noise_floor > 0 and self.frame_dtype and dtype != self.frame_dtype:
            raise CalibrationError(
                f"the DeepFocus calibration was made with {self.frame_dtype} frames and the "
                f"camera gives {dtype}: its noise floor is in other grey levels (run `slidescan "
                "focus calibrate --mode deepfocus` again)"
            )

    # -- file --------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "objective": self.objective,
            "na": self.na,
            "pixel_size_um": self.pixel_size_um,
            "z_um": [float(v) for v in self.z_um],
            "median": [float(v) for v in self.median],
            "spread": [float(v) for v in self.spread],
            "valid_fraction": [float(v) for v in self.valid_fraction],
            "curve": self.curve.to_dict(),
            "fwhm_um": self.fwhm_um,
            "fit_rms": self.fit_rms,
            "source": self.source,
            "weights_checksum": self.weights_checksum,
            "made": self.made,
            "focus_z_um": self.focus_z_um,
            "noise_sigma": self.noise_sigma,
            "noise_floor": self.noise_floor,
            "frame_dtype": self.frame_dtype,
            "extra": self.extra,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DeepFocusCalibration:
        path = Path(path)
        if not path.is_file():
            raise CalibrationError(
                f"DeepFocus calibration not found: {path} (make it with `slidescan focus "
                "calibrate --mode deepfocus`)"
            )
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CalibrationError(f"DeepFocus calibration {path} is unreadable ({exc})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise CalibrationError(f"{path} is not a DeepFocus calibration file")
        try:
            version = int(d.get("version", 1))
        except (TypeError, ValueError):
            raise CalibrationError(f"{path} has calibration version {d.get('version')!r}") from None
        if version > VERSION:
            raise CalibrationError(f"{path} has calibration version {version}")
        try:
            cal = cls(
                objective=str(d["objective"]),
                na=float(d["na"]),
                pixel_size_um=float(d["pixel_size_um"]),
                z_um=[float(v) for v in d["z_um"]],
                median=[float(v) for v in d["median"]],
                spread=[float(v) for v in d["spread"]],
                valid_fraction=[float(v) for v in d["valid_fraction"]],
                curve=CurveModel.from_dict(d["curve"]),
                fit_rms=float(d["fit_rms"]),
                source=str(d.get("source", "")),
                weights_checksum=str(d.get("weights_checksum", "")),
                made=str(d.get("made", "")),
                focus_z_um=float(d.get("focus_z_um", 0.0)),
                extra=dict(d.get("extra") or {}),
                noise_sigma=float(d["noise_sigma"] if version >= 2 else 0.0),
                noise_floor=float(d["noise_floor"] if version >= 2 else 0.0),
                frame_dtype=str(d.get("frame_dtype", "") if version >= 2 else ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"DeepFocus calibration {path} is incomplete ({exc})") from None
        noise = [cal.noise_sigma, cal.noise_floor]
        numbers = [cal.na, cal.pixel_size_um, cal.fit_rms, *noise, *cal.curve.params()]
        if (
            len(cal.z_um) < 2
            or not all(math.isfinite(v) for v in numbers)
            or not cal.fwhm_um > 0
            or min(noise) < 0
        ):
            raise CalibrationError(f"DeepFocus calibration {path} holds invalid numbers")
        return cal


def build_calibration(
    z_um: Sequence[float],
    scores: Sequence[np.ndarray],
    valid: Sequence[np.ndarray],
    optics: OpticsLike,
    source: str,
    weights_checksum: str = "",
    noise_sigma: float = 0.0,
    noise_floor: float = 0.0,
    frame_dtype: str = "",
) -> DeepFocusCalibration:
    """A calibration from per-plane patch scores and validity (absolute z of each plane),
    scored at `noise_floor` (the stack's noise: `noise_sigma`)."""
    z = np.asarray(z_um, dtype=np.float64)
    if len(scores) != z.size or len(valid) != z.size:
        raise ValueError("one score array and one validity array per plane")
    med, spread, frac = [], [], []
    for s, v in zip(scores, valid, strict=True):
        s, v = np.asarray(s, dtype=np.float64), np.asarray(v, dtype=bool)
        use = s[v] if v.any() else s
        med.append(float(np.median(use)))
        q1, q3 = np.percentile(use, [25, 75])
        spread.append(float(q3 - q1) / 2.0)
        frac.append(float(v.mean()) if v.size else 0.0)
    if float(np.mean(frac)) < 0.25:
        raise ValueError(
            f"only {100 * np.mean(frac):.0f} % of the calibration patches show texture: "
            "calibrate on a textured object"
        )
    try:
        fit = fit_curve(z, med)
    except ValueError as exc:
        raise ValueError(f"calibration: {exc}") from None
    focus = fit.model.z0
    return DeepFocusCalibration(
        objective=str(optics.objective_name),
        na=float(optics.na),
        pixel_size_um=float(optics.pixel_size_um),
        z_um=[float(v) for v in z - focus],
        median=med,
        spread=spread,
        valid_fraction=frac,
        curve=fit.model.centred(),
        fit_rms=fit.rms,
        source=source,
        weights_checksum=weights_checksum,
        made=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        focus_z_um=float(focus),
        noise_sigma=float(noise_sigma),
        noise_floor=float(noise_floor),
        frame_dtype=str(frame_dtype),
    )


def saturation_defocus_um(optics: OpticsLike) -> float:
    """The defocus at which the score saturates for these optics (the blur width's cap)."""
    sigma_um = MAX_SIGMA_PX * float(optics.pixel_size_um)
    diffraction = 0.21 * WAVELENGTH_UM / float(optics.na)
    theta = math.asin(min(float(optics.na) / float(optics.immersion_n), 0.999))
    return math.sqrt(max(sigma_um**2 - diffraction**2, 0.0)) * 2.0 / math.tan(theta)


def calibration_planes(
    optics: OpticsLike, centre_um: float, limits: tuple[float, float]
) -> np.ndarray:
    """The z planes of a calibration stack on the microscope: `CALIBRATION_PLANES` planes over
    +/- 1.2 x the saturation defocus around `centre_um`, inside the soft limits."""
    half = RANGE_PAST_SATURATION * saturation_defocus_um(optics)
    lo, hi = max(centre_um - half, limits[0]), min(centre_um + half, limits[1])
    if hi - lo < half:
        raise ValueError(
            f"the soft limits leave {hi - lo:.1f} um around {centre_um:.1f} um; a DeepFocus "
            f"calibration needs +/-{half:.1f} um"
        )
    return np.linspace(lo, hi, CALIBRATION_PLANES)


def calibration_dir() -> Path:
    """The config folder's calibrations (scans look here for one matching their optics)."""
    import platformdirs

    return Path(platformdirs.user_config_dir("slidescan", appauthor=False)) / "calibrations"


def default_path(profile: str, objective: str) -> Path:
    """Where the calibration of `objective` on microscope `profile` is kept."""
    root = calibration_dir()
    safe_profile = "".join(c if c.isalnum() or c in "-_" else "_" for c in profile) or "default"
    return root / f"deepfocus_{safe_profile}_{objective_slug(objective)}.json"


def write_plot(cal: DeepFocusCalibration, path: str | os.PathLike[str], size=(720, 440)) -> Path:
    """A PNG of the calibration: the median score per plane with its spread, the fitted
    curve, and the +/- 2 FWHM search interval."""
    import cv2

    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    left, right, top, bottom = 64, 20, 36, 48
    z = np.asarray(cal.z_um)
    med, spr = np.asarray(cal.median), np.asarray(cal.spread)
    zs = np.linspace(z.min(), z.max(), 400)
    fit = cal.curve(zs)
    ymin = float(min((med - spr).min(), fit.min()))
    ymax = float(max((med + spr).max(), fit.max()))
    pad = 0.05 * max(ymax - ymin, 1e-6)
    ymin, ymax = ymin - pad, ymax + pad

    def px(zv, bv):
        x = left + (np.asarray(zv) - z.min()) / max(np.ptp(z), 1e-9) * (w - left - right)
        y = top + (ymax - np.asarray(bv)) / (ymax - ymin) * (h - top - bottom)
        return np.stack([x, y], -1).round().astype(np.int32)

    grey, dark, blue, red = (200, 200, 200), (40, 40, 40), (200, 90, 30), (40, 40, 210)
    cv2.rectangle(img, (left, top), (w - right, h - bottom), dark, 1)
    for zline in (-2 * cal.fwhm_um, 2 * cal.fwhm_um, 0.0):
        if z.min() <= zline <= z.max():
            x = int(px([zline], [ymin])[0, 0])
            cv2.line(img, (x, top), (x, h - bottom), grey, 1)
    for p, s in zip(px(z, med), spr, strict=True):
        dy = int(round(s / (ymax - ymin) * (h - top - bottom)))
        cv2.line(img, (p[0], p[1] - dy), (p[0], p[1] + dy), (230, 180, 140), 1)
        cv2.circle(img, (int(p[0]), int(p[1])), 2, blue, -1)
    cv2.polylines(img, [px(zs, fit)], False, red, 2, cv2.LINE_AA)
    font = cv2.FONT_HERSHEY_SIMPLEX
    title = (
        f"DeepFocus calibration {cal.objective}: FWHM {cal.fwhm_um:.2f} um, "
        f"fit rms {cal.fit_rms:.3f}"
    )
    cv2.putText(img, title, (left, 22), font, 0.5, dark, 1, cv2.LINE_AA)
    for zv in np.linspace(z.min(), z.max(), 5):
        x = int(px([zv], [ymin])[0, 0])
        cv2.putText(img, f"{zv:.1f}", (x - 14, h - bottom + 18), font, 0.4, dark, 1, cv2.LINE_AA)
    cv2.putText(img, "z - focus (um)", (w // 2 - 50, h - 8), font, 0.45, dark, 1, cv2.LINE_AA)
    for bv in np.linspace(ymin + pad, ymax - pad, 4):
        y = int(px([z.min()], [bv])[0, 1])
        cv2.putText(img, f"{bv:.2f}", (8, y + 4), font, 0.4, dark, 1, cv2.LINE_AA)
    cv2.putText(img, "score", (8, top - 8), font, 0.4, dark, 1, cv2.LINE_AA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise OSError(f"could not encode the calibration plot for {path}")
    path.write_bytes(buf.tobytes())
    return path
