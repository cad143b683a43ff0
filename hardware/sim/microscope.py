"""The simulated microscope: specimen, focal surface, optics, camera and stage on one virtual
clock, assembled from a `SimConfig`.

`SimulatedMicroscope` is a `Microscope` (so it satisfies the focus layer's `FocusDevice`) with
the simulator's extras: the focus truth of any field (`true_focus_um`), direct renders that
bypass the stage (`render`, for stacks and training data), the slide's tissue area and an
overview image. Frames from `snap()` carry `meta["true_focus_um"]` and `meta["defocus_um"]`
(the z really reached, backlash and steps included, minus the truth) and the stage's
reported position.

Random streams are derived from `config.seed` by name (specimen, surface, stage, camera
noise, direct renders), so changing one part's settings never reshuffles another's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from slidescan.hardware.clock import VirtualClock
from slidescan.hardware.microscope import Microscope
from slidescan.hardware.optics import Objective, OpticalPath, get_objective
from slidescan.hardware.sim.camera import SensorModel, SimCamera
from slidescan.hardware.sim.config import SimConfig
from slidescan.hardware.sim.mount import mount_image
from slidescan.hardware.sim.noise import derive_seed
from slidescan.hardware.sim.psf import (
    DefocusModel,
    GaussianModel,
    PupilModel,
    focal_shift_factor,
)
from slidescan.hardware.sim.render import FieldRenderer, FieldTruth
from slidescan.hardware.sim.specimen import ProceduralSpecimen, Specimen
from slidescan.hardware.sim.stage import SimStage
from slidescan.hardware.sim.stains import transmission
from slidescan.hardware.sim.surface import FocalSurface
from slidescan.hardware.truth import SlideTruth


def make_specimen(config: SimConfig, pixel_size_um: float) -> Specimen:
    """The configured specimen (procedural, or a real image resampled to `pixel_size_um`)."""
    if config.specimen.kind == "image":
        from slidescan.hardware.sim.image_specimen import ImageSpecimen

        return ImageSpecimen(config.specimen, config.seed, pixel_size_um)
    return ProceduralSpecimen(config.specimen, config.seed)


def sim_objective(config: SimConfig) -> Objective:
    """The configured objective, with `optics.na` overriding its catalogue NA when given."""
    objective = get_objective(config.objective)
    if config.optics.na is not None and config.optics.na != objective.na:
        objective = dataclasses.replace(objective, na=float(config.optics.na))
    return objective


def make_defocus_model(config: SimConfig) -> DefocusModel:
    objective = sim_objective(config)
    if config.optics.psf == "gaussian":
        return GaussianModel(objective.na, objective.immersion_n)
    return PupilModel(
        objective.na,
        objective.immersion_n,
        coverslip_error_um=config.optics.coverslip_error_um,
        coverslip_n=config.optics.coverslip_n,
    )


class SimulatedMicroscope(Microscope, SlideTruth):
    """A complete simulated microscope; build it with `build_simulator`. It is its own
    `truth` (`SlideTruth`: slide bounds, true focus, overview)."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        objective = sim_objective(config)
        optics = OpticalPath(
            objective,
            sensor_pixel_um=config.optics.sensor_pixel_um,
            wavelengths_um=config.optics.wavelengths_um,
        )
        clock = VirtualClock()
        self.specimen = make_specimen(config, optics.pixel_size_um)
        self.surface = FocalSurface(config.surface, config.specimen.bounds_um, config.seed)
        self.focal_shift_factor = config.specimen.focal_shift_factor or focal_shift_factor(
            objective.na, objective.immersion_n, config.specimen.medium_n
        )
        cam = config.camera
        self.renderer = FieldRenderer(
            self.specimen,
            self.surface,
            optics,
            make_defocus_model(config),
            (cam.height, cam.width),
            wavelengths_um=config.optics.wavelengths_um,
            focal_shift_factor=self.focal_shift_factor,
            chromatic_shift_um=config.optics.chromatic_shift_um,
            margin_um=config.optics.margin_um,
            otf_dz_step_um=config.optics.otf_dz_step_um,
            otf_cache_size=config.optics.otf_cache_size,
            field_cache_size=config.optics.field_cache_size,
            workers=config.optics.fft_workers,
        )
        self.sensor = SensorModel(cam)
        x0, y0, x1, y1 = config.specimen.bounds_um
        cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        stage = SimStage(
            config.stage,
            clock,
            seed=derive_seed(config.seed, "stage"),
            start_um=(cx, cy, round(float(self.surface(cx, cy)))),
        )
        camera = SimCamera(
            cam,
            self.form_image,
            stage.true_position,
            stage.position,
            optics.pixel_size_um,
            clock,
            seed=derive_seed(config.seed, "camera-noise"),
            strobe_ms=config.stage.strobe_ms,
        )
        self._render_rng = np.random.default_rng(derive_seed(config.seed, "render-noise"))
        super().__init__(
            stage=stage,
            camera=camera,
            optics=optics,
            clock=clock,
            name=f"simulator {objective.name}",
        )

    @property
    def truth(self) -> SlideTruth:
        return self

    # typed views of the devices
    @property
    def sim_stage(self) -> SimStage:
        return self.stage  # type: ignore[return-value]

    @property
    def sim_camera(self) -> SimCamera:
        return self.camera  # type: ignore[return-value]

    # -- geometry and truth ---------------------------------------------------------------------
    @property
    def field_of_view_um(self) -> tuple[float, float]:
        """(width, height) of one camera field in um."""
        return self.renderer.field_of_view_um

    @property
    def slide_bounds_um(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the slide's tissue area in stage coordinates (um)."""
        return tuple(float(v) for v in self.config.specimen.bounds_um)  # type: ignore[return-value]

    def field_truth(self, x_um: float, y_um: float) -> FieldTruth:
        """Everything known about the field centred at (x, y) (see `FieldTruth`)."""
        return self.renderer.truth(x_um, y_um)

    def true_focus_um(self, x_um: float, y_um: float) -> float:
        """Drive z at which the field centred at (x, y) is in focus: where its contrast is
        centred in depth (`render.contrast_weights`).

        Generates the field's specimen the first time (a fraction of a second); for many
        positions at once use `focal_surface_um` (the mid-plane, cheap, within a few tenths
        of a um of this)."""
        return self.renderer.truth(x_um, y_um).true_focus_um

    def focal_surface_um(self, x_um: Any, y_um: Any) -> np.ndarray:
        """The section mid-plane's focus at points (vectorised, no specimen needed)."""
        return self.surface(x_um, y_um)

    def tissue_mask(self, xs_um: np.ndarray, ys_um: np.ndarray) -> np.ndarray:
        """Tissue (1) versus glass (0) on the grid ys x xs (um) -> (H, W) float32."""
        return self.specimen.tissue_mask(np.asarray(xs_um, float), np.asarray(ys_um, float))

    def overview(self, pixel_size_um: float = 25.0, margin_um: float = 500.0) -> np.ndarray:
        """A macro RGB image (uint8) of the tissue area plus a margin, without optics or
        noise; row 0 is the smallest y. Pixel (i, j) sits at x0 - margin + (j + 1/2) * pixel."""
        x0, y0, x1, y1 = self.slide_bounds_um
        xs = np.arange(x0 - margin_um, x1 + margin_um, pixel_size_um) + pixel_size_um / 2
        ys = np.arange(y0 - margin_um, y1 + margin_um, pixel_size_um) + pixel_size_um / 2
        od = self.specimen.overview_od(xs, ys)
        rgb = transmission(od).transpose(1, 2, 0) * 255.0
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)

    # -- image formation ------------------------------------------------------------------------
    def render_intensity(self, x_um: float, y_um: float, z_um: float) -> np.ndarray:
        """Noise-free transmission image (H, W, 3) float32, 1 = clear glass, before the
        camera (no vignetting, no quantisation)."""
        return self.renderer.intensity(x_um, y_um, z_um)

    def render(
        self,
        x_um: float,
        y_um: float,
        z_um: float,
        *,
        noise: bool = True,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """The camera image for the field centred at (x, y) with the focus drive at z,
        bypassing stage motion, backlash and the clock. Uses the camera's current exposure
        and gain; `noise=False` gives the expected (still quantised) image."""
        if noise and rng is None:
            rng = self._render_rng
        image, _ = self.form_image(
            x_um,
            y_um,
            z_um,
            exposure_ms=self.camera.exposure_ms,
            gain=self.camera.gain,
            rng=rng if noise else None,
        )
        return image

    def form_image(
        self,
        x_um: float,
        y_um: float,
        z_um: float,
        *,
        exposure_ms: float,
        gain: float,
        rng: np.random.Generator | None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Render, digitise, and describe one frame (used by the camera and `render`): the
        field as the camera, mounted as configured (`SimCameraConfig.rotation_deg`, flips),
        sees it."""
        cam = self.config.camera
        intensity = mount_image(
            self.renderer.intensity(x_um, y_um, z_um), cam.rotation_deg, cam.flip_x, cam.flip_y
        )
        frame = self.sensor.digitise(intensity, exposure_ms, gain, rng)
        truth = self.renderer.truth(x_um, y_um)
        meta = {
            "simulated": True,
            "true_focus_um": truth.true_focus_um,
            "defocus_um": float(z_um) - truth.true_focus_um,
            "true_position_um": (float(x_um), float(y_um), float(z_um)),
            "tissue_fraction": truth.tissue_fraction,
            "objective": self.config.objective,
        }
        return frame, meta

    def render_stats(self) -> dict[str, Any]:
        """Cache behaviour: OTF profile LRU and specimen-spectra cache."""
        return {
            "otf_cache": self.renderer.otf.cache_info(),
            "field_cache": {
                "hits": self.renderer.field_hits,
                "misses": self.renderer.field_misses,
            },
        }


def build_simulator(config: SimConfig | dict[str, Any] | None = None, **overrides: Any):
    """A `SimulatedMicroscope` from a `SimConfig`, a plain dict (e.g. a TOML table), or
    keyword overrides of the defaults (`build_simulator(objective="40x/0.95", seed=3)`)."""
    if config is None:
        config = SimConfig(**overrides)
    elif isinstance(config, dict):
        config = SimConfig.model_validate({**config, **overrides})
    elif overrides:
        config = SimConfig.model_validate({**config.model_dump(), **overrides})
    return SimulatedMicroscope(config)
