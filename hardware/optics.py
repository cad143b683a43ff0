"""Objective profiles and the optical path (objective + camera sensor) numbers.

`OpticalPath` satisfies the focus layer's `OpticsLike` protocol structurally: `na`,
`immersion_n`, `magnification`, `pixel_size_um`, `wavelength_um`, `depth_of_field_um`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Nominal centre wavelengths (um) for the red, green and blue camera channels.
RGB_WAVELENGTHS_UM: tuple[float, float, float] = (0.61, 0.54, 0.47)
#: Wavelength used for depth-of-field figures (green, um).
REFERENCE_WAVELENGTH_UM = 0.55


def depth_of_field_um(na: float, immersion_n: float = 1.0, wavelength_um: float = 0.55) -> float:
    """Full wave-optical depth of field: the axial range over which the marginal-ray path
    difference stays within a quarter wave on either side of focus,
    DOF = lambda / (2 n (1 - cos theta)), sin theta = NA / n.

    For small NA this tends to the textbook lambda n / NA^2. 20x/0.75 dry at 0.55 um: 0.81 um.
    """
    if not 0 < na < immersion_n:
        raise ValueError(f"NA {na} must lie in (0, n={immersion_n})")
    cos_theta = math.sqrt(1.0 - (na / immersion_n) ** 2)
    return wavelength_um / (2.0 * immersion_n * (1.0 - cos_theta))


@dataclass(frozen=True)
class Objective:
    """A microscope objective. `name` is written like '20x/0.75'."""

    name: str
    magnification: float
    na: float
    immersion_n: float = 1.0
    #: Cover-glass thickness the objective is corrected for (mm); 0.17 for standard slides.
    coverslip_mm: float = 0.17

    def __post_init__(self) -> None:
        if self.magnification <= 0:
            raise ValueError(f"objective {self.name}: magnification must be positive")
        if not 0 < self.na < self.immersion_n:
            raise ValueError(
                f"objective {self.name}: NA {self.na} must lie in (0, n={self.immersion_n})"
            )

    @property
    def depth_of_field_um(self) -> float:
        return depth_of_field_um(self.na, self.immersion_n, REFERENCE_WAVELENGTH_UM)


#: Shipped objective profiles (dry). Keys are the names used on the command line.
OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("10x/0.30", 10, 0.30),
        Objective("20x/0.50", 20, 0.50),
        Objective("20x/0.75", 20, 0.75),
        Objective("40x/0.95", 40, 0.95),
    )
}


def get_objective(name: str) -> Objective:
    """Look up a shipped objective by name; a clear error lists the known ones."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        known = ", ".join(OBJECTIVES)
        raise ValueError(f"unknown objective {name!r}; known objectives: {known}") from None


@dataclass(frozen=True)
class OpticalPath:
    """Objective plus camera: the numbers a focus method may use."""

    objective: Objective
    sensor_pixel_um: float = 6.5
    wavelength_um: float = REFERENCE_WAVELENGTH_UM
    wavelengths_um: tuple[float, ...] = RGB_WAVELENGTHS_UM

    @property
    def objective_name(self) -> str:
        """The objective's name ('20x/0.75'); an NA override keeps the catalogue name."""
        return self.objective.name

    @property
    def na(self) -> float:
        return self.objective.na

    @property
    def immersion_n(self) -> float:
        return self.objective.immersion_n

    @property
    def magnification(self) -> float:
        return self.objective.magnification

    @property
    def pixel_size_um(self) -> float:
        """Pixel size at the specimen plane."""
        return self.sensor_pixel_um / self.objective.magnification

    @property
    def depth_of_field_um(self) -> float:
        return depth_of_field_um(self.na, self.immersion_n, self.wavelength_um)

    def field_of_view_um(self, shape: tuple[int, ...]) -> tuple[float, float]:
        """(width, height) of the field for an image of `shape` (H, W[, C])."""
        return shape[1] * self.pixel_size_um, shape[0] * self.pixel_size_um
