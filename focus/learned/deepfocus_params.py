"""DeepFocus's parameters: torch-free, so the CLI's --help and the GUI's form need no torch."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from slidescan.focus.learned.deepfocus_score import DRAWN_PATCHES, NOISE_DRAWS
from slidescan.focus.protocol import FocusParams


class DeepFocusParams(FocusParams):
    """See `slidescan.focus.learned.deepfocus.DeepFocusFocus` for what each one does.

    Defaults chosen on the tuning stacks (held-out specimens, seed 32; never the reported
    ones), 20x/0.75 with hints within +/-5 um and 10x/0.30 within +/-40 um, calibration from
    another specimen: mirror placement at 0.5 FWHM had the lowest MAE on both (20x 0.153 um,
    10x 1.08 um; golden section at the paper's 2 FWHM: 0.410 / 5.59 um, at its best width 1.25
    FWHM 0.193 / 1.62 um); a free offset was worse for mirror until it was drawn to the
    calibration's level (`level_spread`), which was also chosen on a second renderer's tuning
    stacks (README).
    """

    weights: Path | None = Field(
        default=None, description="sharpness network checkpoint (default: the shipped weights)"
    )
    calibration: Path | None = Field(
        default=None,
        description="calibration file (default: the newest one in the config folder that "
        "matches the objective in use)",
    )
    max_frames: int = Field(
        default=4,
        ge=2,
        le=20,
        description="most frames per tile, the final capture counted (a recovery adds its own)",
    )
    search_fwhm: float = Field(
        default=0.5, gt=0, le=6, description="search interval: the hint +/- this many FWHM"
    )
    placement: Literal["golden", "mirror"] = Field(
        default="mirror",
        description="search frames: the hint and the hint -/+ search_fwhm x FWHM, then golden "
        "section (the paper), or the hint and below it, then a third frame about their focus "
        "estimate (mirror_distance, far_beyond)",
    )
    mirror_distance: float = Field(
        default=0.35,
        ge=0,
        le=2,
        description="mirror placement: the third frame mirrors, about the first estimate, the "
        "frame whose distance from it is nearest this many FWHM (0 with far_beyond 0: the "
        "nearest frame, as before 2026-12-07, which can leave all three frames near the "
        "curve's flat bottom; a pair out "
        "on the curve's flanks fixes the shift best). Tuning sets, 4 frames, hints at 17 "
        "fixed offsets, MAE um (our simulator 10x +/-40 um / the second renderer 10x / ours "
        "20x +/-5 um / the second's 20x): 0 0.668 / 1.170 / 0.155 / 0.134, 0.25 0.658 / "
        "1.118 / 0.141 / 0.134, 0.35 0.626 / 1.007 / 0.161 / 0.122, 0.5 0.637 / 1.115 / "
        "0.155 / 0.131 (all with the noise floor)",
    )
    far_beyond: float = Field(
        default=0.75,
        ge=0,
        le=10,
        description="mirror placement: when both first frames lie more than this many FWHM "
        "from the first estimate (a hint far off), the third frame goes mirror_distance FWHM "
        "past the estimate on the other side, on the curve's flank, instead of mirroring a "
        "frame out onto the other wing (0: never). Tuning sets as for mirror_distance, 10x "
        "ours / second renderer: never 0.626 / 1.007, 0.5 0.498 / 0.752, 0.6 0.474 / 0.712, "
        "0.75 0.469 / 0.724, 1 0.459 / 0.798 (with 0.5 FWHM past it instead: 0.75 0.517 / "
        "0.690, 1 0.464 / 0.807); 20x at 0.75 0.160 / 0.127 (0.161 / 0.122 never)",
    )
    hint_mirror: float = Field(
        default=0.1,
        ge=0,
        le=2,
        description="mirror placement: when the first estimate lies within this many FWHM of "
        "the hint, the third frame mirrors the first frame about the hint instead (a pair "
        "symmetric about the hint, whose flank scores fix the shift whatever the specimen's "
        "curve shape; the two-frame estimate is biased by that shape: scikit-image's IHC "
        "image with the hint at focus was fitted 1.7-2.5 um off at 10x) (0: never). Tuning "
        "sets, 17 fixed hints per stack, 4 frames, MAE um (ours 10x +/-40 um / the second "
        "renderer 10x / ours 20x +/-5 um / the second's 20x): never 0.385 / 0.756 / 0.154 / "
        "0.093, 0.1 0.366 / 0.709 / 0.156 / 0.092, 0.15 0.357 / 0.720 / 0.157 / 0.098; 0.2 "
        "(an earlier search, ours 10x) 0.467 against 0.434 at 0.1",
    )
    refine: float = Field(
        default=0.15,
        ge=0,
        le=2,
        description="mirror placement with 5 frames or more: when the frame nearest the "
        "estimate is more than this many FWHM from it, one more frame this far past the "
        "estimate on the other side (0: never; tuning set, 5 frames: 0.15 gave 10x MAE 0.67 "
        "um against 1.09 without, 20x 0.152 against 0.161; 0.1 / 0.25 / 0.35: 0.76 / 0.79 / "
        "0.76 at 10x)",
    )
    reach: Literal["interval", "calibration"] = Field(
        default="interval",
        description="where the focus may be found: the search interval +/- one FWHM, or as far "
        "as the calibration reaches around the frames (tuning set 10x: outliers at the stack's "
        "end, MAE 7.8 um against 1.08)",
    )
    recover: bool = Field(
        default=True,
        description="when the fit runs into the edge of its reach (focus far from the hint), "
        "a coarse pass over the calibrated reach and one more frame (extra frames)",
    )
    convexity_margin: float = Field(
        default=0.05, ge=0, le=1, description="R^2 by which the quadratic must beat the line"
    )
    free_offset: bool = Field(
        default=False, description="fit a vertical offset of the curve per region too"
    )
    free_offset_beyond: float = Field(
        default=0.0,
        ge=0,
        le=100,
        description="mirror placement: when the first estimate lies more than this many FWHM "
        "from the hint, the fits after it leave the curve's level (and depth) free (far from focus the "
        "first frames lie on the curve's wings, where specimens read a level apart); a value "
        "past the search's reach, such as 10: never (tuning set, 4 frames: 10x +/-40 um MAE "
        "0.966 um never, 0.813 at 0.5, 0.809 at 0.75, 0.824 at 1, 0.884 at 1.5; 20x +/-5 um "
        "0.152 never, 0.136 at 0.5, 0.146 at 0.75; with the level drawn to the "
        "calibration's, level_spread, 0 is better: see there)",
    )
    level_spread: float = Field(
        default=0.2,
        ge=0,
        le=10,
        description="wherever the fits leave the curve's level free, draw it to the "
        "calibration's by a prior of this spread, ln px (0: unbounded). Unbounded, a few "
        "frames on one side of focus can be fitted as far off with the curve read much "
        "sharper or blurrier than any specimen reads it (a second renderer's 10x trial: 14 um "
        "off). Tuning sets, 4 frames, with depth_spread 0.1 (MAE um; our simulator 10x +/-40 "
        "um hint seeds 0 / 1, 20x +/-5 um seeds 0 / 1; the second renderer 20x +/-5, 10x "
        "+/-40): level unbounded and free from 0.5 FWHM off (depth only) 0.661 / 0.505, 0.139 / "
        "0.167, 0.217, 1.640; 0.2 from 0.5 FWHM 0.649 / 0.510, 0.136 / 0.166, 0.218, 1.256; "
        "0.1 / 0.2 / 0.3 free at every fit (free_offset_beyond 0) 0.624 / 0.603 / 0.611 at "
        "10x seed 0, 0.139 / 0.143 / 0.145 at 20x, 0.136 / 0.126 / 0.128 and 1.194 / 1.136 / "
        "1.152 on the second renderer; with 0.2: 0.500 and 0.162 at seed 1",
    )
    depth_spread: float = Field(
        default=0.1,
        ge=0,
        le=10,
        description="wherever the fits leave the curve's level free, leave its depth free too, "
        "drawn to the calibration's by a prior of this spread; specimens' curves differ in "
        "depth, symmetrically about focus (0: never; tuning set, 4 frames, hint seeds 0 / 1: "
        "10x +/-40 um MAE 0.780 / 0.727 um never, 0.696 at 0.05, 0.661 / 0.505 at 0.1, 0.705 "
        "at 0.15, 0.761 at 0.2, 0.819 at 0.4; 20x +/-5 um 0.135 / 0.223 never, 0.139 / 0.167 "
        "at 0.1)",
    )
    width_spread: float = Field(
        default=0.2,
        ge=0,
        le=10,
        description="wherever the fits leave the curve's level free, leave its z stretch free "
        "too, drawn to the calibration's width by a prior of this spread on the stretch's ln "
        "(0: never); specimens' curves differ in width (10x tuning stacks: FWHM 25-36 um "
        "against the calibration's 27). Tuning sets, 17 fixed hints per stack, 4 frames, 3 "
        "noise draws (MAE um, our simulator 10x +/-40 um): 0.421 never, 0.400 at 0.1, 0.389 at "
        "0.2, 0.387 at 0.3, 0.392 at 1",
    )
    free_width: bool = Field(
        default=False,
        description="fit a z stretch of the curve per region too, at every fit and unbounded "
        "(within 0.7-1.45; width_spread is the bounded one)",
    )
    combine: Literal["joint", "median"] = Field(
        default="joint",
        description="the largest cluster's focus: one curve fit to all its regions' scores "
        "(joint) or the weighted median of their own fits",
    )
    max_patches: int = Field(default=16, ge=1, le=256, description="patches read per frame")
    noise_draws: int = Field(
        default=NOISE_DRAWS,
        ge=1,
        le=8,
        description="draws of the noise floor's noise per frame, their scores averaged "
        "(deepfocus_score.NOISE_DRAWS; tuning grids 10x MAE 0.458 um with 1, 0.421 with 3 and "
        "5). They cost network time: a 512 px frame's 16 patches take 28-35 ms with 1 and "
        "100-120 ms with 3 on one thread of this 2-core CPU (a 256 px frame's 4: 10-12 and "
        "18-30 ms); 1 where the CPU, not the stage, sets a scan's pace",
    )
    drawn_patches: int = Field(
        default=DRAWN_PATCHES,
        ge=1,
        le=1024,
        description="fewer noise draws where a frame has the patches to average the noise: "
        "draws until patches x draws reaches this (a 16-patch frame: 2 of 3). Tuning stacks "
        "of 512 px frames (16 patches), 17 fixed hints, 4 frames, MAE um (10x +/-40 um / "
        "20x +/-5 um): 1 draw 0.417 / 0.154, 2 0.383 / 0.151, 3 0.385 / 0.150",
    )
    final_capture: bool = Field(default=True, description="move to the focus and take a frame")
    threads: int | None = Field(default=1, ge=1, description="torch CPU threads for the network")
    device: Literal["cpu"] = Field(default="cpu", description="where the network runs")
