"""Configuration of the optical slide simulator: one validated pydantic model per part.

`SimConfig` is what a hardware profile stores (as a TOML table) and what `build_simulator`
takes. Every model forbids unknown keys, so a typo in a profile is a clear error rather than a
silently ignored setting. All lengths are in micrometres, times in milliseconds, speeds in
um/s and accelerations in um/s^2.

The stage may be given as a `SimStageConfig`, as the name of a preset in `STAGE_PRESETS`
("commercial", "lowcost"), or as a table with a `preset` key plus overrides, e.g.
``{"preset": "lowcost", "z_backlash_um": 4.0}``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from slidescan.hardware.optics import OBJECTIVES, RGB_WAVELENGTHS_UM
from slidescan.hardware.sim.bayer import BayerPattern

Range = tuple[float, float]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_range(name: str, value: Range) -> Range:
    lo, hi = value
    if not lo < hi:
        raise ValueError(f"{name}: lower value {lo} must be below upper value {hi}")
    return value


class SpecimenConfig(_Model):
    """The slide: procedural stained tissue, or a real in-focus image tiled by mirroring.

    Stain strengths are optical densities (OD, log10) of the whole section; the section is
    split into `layers` slabs spread over `thickness_um`, bottom (condenser side) first.
    """

    kind: Literal["procedural", "image"] = "procedural"
    #: Procedural stain: "he" (hematoxylin + eosin) or "ihc" (hematoxylin + DAB, nuclear marker).
    stain: Literal["he", "ihc"] = "he"
    #: Real in-focus RGB image used as the specimen (kind = "image").
    image_path: Path | None = None
    #: Pixel size of `image_path` at the specimen; parsed from a name like '..._0.227um.png'.
    image_pixel_size_um: float | None = Field(default=None, gt=0)
    #: Glass brightness of the image per RGB channel (0-255 scale for 8-bit images); None
    #: estimates it as the 99.5th percentile of each channel.
    image_white_level: tuple[float, float, float] | None = None
    #: x0, y0, x1, y1 of the tissue area on the slide (stage coordinates, um).
    bounds_um: tuple[float, float, float, float] = (20000.0, 6000.0, 30000.0, 14000.0)
    #: "blob": irregular tissue pieces inside the bounds with glass around them;
    #: "fill": tissue everywhere (with holes), for training data at any position.
    tissue_shape: Literal["blob", "fill"] = "blob"
    #: Fraction of the tissue area that is holes/tears (empty glass inside tissue).
    hole_fraction: float = Field(default=0.04, ge=0, le=0.5)
    #: Physical section thickness; the layers sit at the centres of equal slabs. 3 um spans
    #: 1.8 um of drive at 20x/0.75 (2.2 depths of field); at 4-5 um different focus metrics
    #: start to disagree by tenths of a um on small fields, as on real thick sections.
    thickness_um: float = Field(default=3.0, ge=0, le=30)
    layers: int = Field(default=4, ge=1, le=8)
    #: Refractive index of the mounting medium (and cover glass) around the section.
    medium_n: float = Field(default=1.52, ge=1.0, le=2.0)
    #: Drive travel per um of depth in the section is 1 / focal_shift_factor. None: the
    #: wavefront-balanced focal shift of the objective into the medium
    #: (`psf.focal_shift_factor`: medium_n / immersion_n at low NA, 1.70 for a dry 0.75).
    focal_shift_factor: float | None = Field(default=None, gt=0)
    #: Nuclei per 1000 um^2 in fully cellular tissue and in stroma.
    nuclei_density_cellular: float = Field(default=10.0, ge=0, le=60)
    nuclei_density_stroma: float = Field(default=2.5, ge=0, le=60)
    #: Glands (lumens lined with nuclei) per mm^2 in cellular tissue.
    lumen_density_per_mm2: float = Field(default=20.0, ge=0, le=500)
    #: Whole-section OD scale of every stain (1 = typical; 0.5 = pale slide).
    stain_strength: float = Field(default=1.0, gt=0, le=4)
    #: IHC: fraction of nuclei that are DAB positive.
    dab_positive_fraction: float = Field(default=0.3, ge=0, le=1)

    @field_validator("bounds_um")
    @classmethod
    def _bounds(cls, v: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = v
        if not (x0 < x1 and y0 < y1):
            raise ValueError(f"bounds_um must be (x0, y0, x1, y1) with x0 < x1, y0 < y1; got {v}")
        return v

    @model_validator(mode="after")
    def _image(self) -> SpecimenConfig:
        if self.kind != "image":
            return self
        if self.image_path is None:
            raise ValueError("specimen kind 'image' needs image_path")
        if self.image_pixel_size_um is None:
            m = re.search(r"_(\d+(?:\.\d+)?)um", self.image_path.name)
            if not m:
                raise ValueError(
                    "specimen image_pixel_size_um is not given and cannot be read from the file "
                    f"name {self.image_path.name!r} (expected e.g. 'tissue_0.25um.png')"
                )
            object.__setattr__(self, "image_pixel_size_um", float(m.group(1)))
        return self


class SimOpticsConfig(_Model):
    """Image formation: PSF model, aberrations, and render-cache settings."""

    #: "pupil": scalar pupil (Debye) model with the exact defocus phase, sign-aware with
    #: aberrations; "gaussian": fast Gaussian blur model, symmetric in defocus (sign-blind).
    psf: Literal["pupil", "gaussian"] = "pupil"
    #: Numerical aperture of this particular objective when it differs from its catalogue
    #: value (objectives of one class vary, and a stopped-down or aged lens has less); None:
    #: the catalogue NA of `objective`. Everything optical follows it: the PSF, the focal
    #: shift into the medium and the `optics.na` a focus method reads.
    na: float | None = Field(default=None, gt=0, lt=1.6)
    sensor_pixel_um: float = Field(default=6.5, gt=0, le=50)
    wavelengths_um: tuple[float, float, float] = RGB_WAVELENGTHS_UM
    #: Cover-glass thickness minus the thickness the objective is corrected for (um); adds
    #: spherical aberration (its best-focus defocus part is balanced out).
    coverslip_error_um: float = Field(default=0.0, ge=-100, le=100)
    coverslip_n: float = Field(default=1.523, ge=1.3, le=2.0)
    #: Axial chromatic shift per RGB channel (drive um): channel c is sharpest at truth + shift.
    chromatic_shift_um: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: Border rendered around the field so blur pulls in real neighbouring content (um).
    margin_um: float = Field(default=20.0, ge=0, le=200)
    #: Defocus lattice of the OTF cache (um; OTFs in between are interpolated linearly) and
    #: the cache size (entries, LRU; one entry is ~13 kB for a 1024^2 field).
    otf_dz_step_um: float = Field(default=0.05, gt=0, le=0.5)
    otf_cache_size: int = Field(default=4096, ge=16)
    #: Field positions whose specimen spectra are kept (each ~ 20 MB per 1024^2 layer x RGB).
    field_cache_size: int = Field(default=2, ge=1, le=64)
    #: FFT worker threads; None uses all CPU cores.
    fft_workers: int | None = Field(default=None, ge=1)

    @field_validator("wavelengths_um")
    @classmethod
    def _wl(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if not all(0.3 <= w <= 1.2 for w in v):
            raise ValueError(f"wavelengths_um must lie in [0.3, 1.2] um, got {v}")
        return v


class SurfaceConfig(_Model):
    """Focal surface: the drive z at which the section's mid-plane is in focus."""

    z0_um: float = 0.0
    #: Slide tilt in um of focus per mm of travel along x and y.
    tilt_um_per_mm: tuple[float, float] = (0.35, -0.2)
    #: Bow: centre of the tissue area this much above its edge midpoints (um).
    bow_um: float = 1.5
    #: Smooth random roughness: RMS (um) and lateral scale (um).
    roughness_um: float = Field(default=0.4, ge=0, le=20)
    roughness_scale_um: float = Field(default=1200.0, gt=10)
    #: Tissue folds: number, ridge height range (um), ridge width (Gaussian sigma, um) and
    #: length range (um).
    folds: int = Field(default=2, ge=0, le=20)
    fold_height_um: Range = (2.0, 4.0)
    fold_width_um: float = Field(default=120.0, gt=1)
    fold_length_um: Range = (1000.0, 3000.0)

    @field_validator("fold_height_um", "fold_length_um")
    @classmethod
    def _ranges(cls, v: Range) -> Range:
        if v[0] < 0:
            raise ValueError(f"range {v} must not be negative")
        if v[0] > v[1]:
            raise ValueError(f"range {v}: lower value above upper value")
        return v


class SimCameraConfig(_Model):
    """Sensor: size, bit depth, exposure, noise, vignetting and optional JPEG."""

    width: int = Field(default=1024, ge=16, le=8192)
    height: int = Field(default=1024, ge=16, le=8192)
    #: 3: RGB (one value per colour per pixel); 1: monochrome (broadband, mean of RGB).
    channels: Literal[1, 3] = 3
    #: A one-chip colour camera's filter layout (hardware/sim/bayer.py): each pixel sees one
    #: colour, noise is drawn per pixel, and frames are demosaiced (bilinear) to RGB. None:
    #: every pixel sees R, G and B (a three-chip camera).
    bayer: BayerPattern | None = None
    #: ADC bits; 8 -> uint8, more -> uint16 holding 0 .. 2**bits - 1.
    bit_depth: Literal[8, 10, 12, 14, 16] = 8
    exposure_ms: float = Field(default=10.0, gt=0, le=10000)
    #: Photo-electrons per ms per pixel through clear glass (centre of the field).
    photon_flux_e_per_ms: float = Field(default=1300.0, gt=0)
    full_well_e: float = Field(default=15000.0, gt=0)
    read_noise_e: float = Field(default=2.5, ge=0)
    #: Digital offset added to every pixel (ADU).
    black_level_adu: float = Field(default=0.0, ge=0)
    #: Fractional brightness loss at the field corners (cos^4-like radial falloff).
    vignetting: float = Field(default=0.08, ge=0, lt=1)
    #: JPEG quality 1-100 to round-trip frames through JPEG (8-bit only); None: lossless.
    jpeg_quality: int | None = Field(default=None, ge=1, le=100)
    readout_ms: float = Field(default=8.0, ge=0)
    #: Real seconds between frames while streaming (keeps live view from eating the CPU).
    stream_interval_s: float = Field(default=0.05, ge=0)
    #: Shot and read noise; False gives the expected image (still quantised).
    noise: bool = True
    #: How the camera is mounted (hardware/sim/mount.py): turned by this angle (keep it
    #: within a few degrees: the corners are filled by reflection) and/or mirrored.
    rotation_deg: float = Field(default=0.0, ge=-10.0, le=10.0)
    flip_x: bool = False
    flip_y: bool = False

    @model_validator(mode="after")
    def _jpeg(self) -> SimCameraConfig:
        if self.jpeg_quality is not None and self.bit_depth != 8:
            raise ValueError("jpeg_quality needs bit_depth 8 (JPEG stores 8-bit images)")
        if self.bayer is not None and self.channels != 3:
            raise ValueError("bayer needs channels 3 (a colour filter array makes a colour camera)")
        return self

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.height, self.width, 3) if self.channels == 3 else (self.height, self.width)


class SimStageConfig(_Model):
    """XYZ stage: travel limits, mechanics (steps, backlash, repeatability) and timing."""

    x_limits_um: Range = (0.0, 75000.0)
    y_limits_um: Range = (0.0, 25000.0)
    z_limits_um: Range = (-100.0, 100.0)
    xy_step_um: float = Field(default=0.1, gt=0, le=50)
    z_step_um: float = Field(default=0.01, gt=0, le=5)
    #: Mechanical play: after a reversal the true position lags the command by up to this.
    xy_backlash_um: float = Field(default=0.0, ge=0, le=100)
    z_backlash_um: float = Field(default=0.0, ge=0, le=50)
    #: Software backlash compensation of StageBase (approach from below), per axis.
    compensate_xy_um: float = Field(default=0.0, ge=0, le=200)
    compensate_z_um: float = Field(default=0.0, ge=0, le=100)
    #: Random error of the true position after each move (standard deviation, um).
    xy_jitter_um: float = Field(default=0.0, ge=0, le=50)
    z_repeatability_um: float = Field(default=0.0, ge=0, le=10)
    xy_speed_um_s: float = Field(default=50000.0, gt=0)
    xy_accel_um_s2: float = Field(default=500000.0, gt=0)
    z_speed_um_s: float = Field(default=2000.0, gt=0)
    z_accel_um_s2: float = Field(default=50000.0, gt=0)
    xy_settle_ms: float = Field(default=10.0, ge=0)
    z_settle_ms: float = Field(default=3.0, ge=0)
    #: Strobed illumination: the exposure costs only this pulse on the clock (the dose is
    #: still that of the camera's exposure setting). None: continuous light.
    strobe_ms: float | None = Field(default=None, gt=0)
    #: Where `home()` sends the stage; None: lower x and y limits, upper z limit (objective
    #: retracted).
    home_um: tuple[float, float, float] | None = None

    @field_validator("x_limits_um", "y_limits_um", "z_limits_um")
    @classmethod
    def _limits(cls, v: Range) -> Range:
        return _check_range("stage limits", v)


#: Stage profiles. "commercial": fast linear-encoder stage with strobed exposure, fine Z and
#: no backlash. "lowcost": stepper-driven stage: coarse Z steps, backlash, slow moves, long
#: settling and visible repeatability errors.
STAGE_PRESETS: dict[str, SimStageConfig] = {
    "commercial": SimStageConfig(
        xy_step_um=0.05,
        z_step_um=0.01,
        xy_jitter_um=0.05,
        z_repeatability_um=0.005,
        xy_speed_um_s=100000.0,
        xy_accel_um_s2=1000000.0,
        z_speed_um_s=2000.0,
        z_accel_um_s2=50000.0,
        xy_settle_ms=5.0,
        z_settle_ms=2.0,
        strobe_ms=0.1,
    ),
    "lowcost": SimStageConfig(
        xy_step_um=0.5,
        z_step_um=0.1,
        xy_backlash_um=8.0,
        z_backlash_um=3.0,
        xy_jitter_um=1.0,
        z_repeatability_um=0.08,
        xy_speed_um_s=8000.0,
        xy_accel_um_s2=40000.0,
        z_speed_um_s=200.0,
        z_accel_um_s2=2000.0,
        xy_settle_ms=150.0,
        z_settle_ms=60.0,
    ),
}


def _stage_from_any(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return STAGE_PRESETS[value]
        except KeyError:
            known = ", ".join(STAGE_PRESETS)
            raise ValueError(f"unknown stage preset {value!r}; known presets: {known}") from None
    if isinstance(value, dict) and "preset" in value:
        rest = dict(value)
        base = _stage_from_any(rest.pop("preset"))
        return base.model_dump() | rest
    return value


class SimConfig(_Model):
    """Everything the simulator needs. `seed` drives every random part (specimen, surface,
    stage errors, camera noise) through independent derived streams."""

    objective: str = "20x/0.75"
    seed: int = Field(default=0, ge=0)
    specimen: SpecimenConfig = SpecimenConfig()
    optics: SimOpticsConfig = SimOpticsConfig()
    surface: SurfaceConfig = SurfaceConfig()
    camera: SimCameraConfig = SimCameraConfig()
    stage: SimStageConfig = STAGE_PRESETS["commercial"]

    @field_validator("objective")
    @classmethod
    def _objective(cls, v: str) -> str:
        if v not in OBJECTIVES:
            raise ValueError(f"unknown objective {v!r}; known objectives: {', '.join(OBJECTIVES)}")
        return v

    @field_validator("stage", mode="before")
    @classmethod
    def _stage(cls, v: Any) -> Any:
        return _stage_from_any(v)

    @model_validator(mode="after")
    def _na_below_immersion(self) -> SimConfig:
        n = OBJECTIVES[self.objective].immersion_n
        if self.optics.na is not None and not self.optics.na < n:
            raise ValueError(
                f"optics.na {self.optics.na} must be below the immersion index {n} of "
                f"{self.objective}"
            )
        return self
