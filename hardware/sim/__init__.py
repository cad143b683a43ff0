"""The optical slide simulator: the default device when no hardware is configured, the test bed
of every focus method and the source of training data for learned autofocus.

    from slidescan.hardware.sim import SimConfig, build_simulator
    sim = build_simulator(SimConfig(objective="20x/0.75", seed=0))
    x0, y0, x1, y1 = sim.slide_bounds_um
    sim.move_xy((x0 + x1) / 2, (y0 + y1) / 2)
    sim.move_z(sim.true_focus_um((x0 + x1) / 2, (y0 + y1) / 2) + 1.0)
    frame = sim.snap()                      # frame.meta["defocus_um"] is about +1
    stack = [sim.render(25000, 10000, z, noise=False) for z in (-1.0, 0.0, 1.0)]

Parts (one module each): `config` (pydantic settings, `STAGE_PRESETS`), `specimen` and
`image_specimen` (the slide as OD slabs), `stains` (Beer-Lambert colour), `surface` (focal
surface), `psf` (scalar pupil and Gaussian defocus models, OTF cache), `render` (image
formation), `camera` (sensor model), `stage` (mechanics and timing), `microscope` (assembly),
`benchmark` (render timing).
"""

from slidescan.hardware.sim.config import (
    STAGE_PRESETS,
    SimCameraConfig,
    SimConfig,
    SimOpticsConfig,
    SimStageConfig,
    SpecimenConfig,
    SurfaceConfig,
)
from slidescan.hardware.sim.microscope import SimulatedMicroscope, build_simulator

__all__ = [
    "STAGE_PRESETS",
    "SimCameraConfig",
    "SimConfig",
    "SimOpticsConfig",
    "SimStageConfig",
    "SimulatedMicroscope",
    "SpecimenConfig",
    "SurfaceConfig",
    "build_simulator",
]
