"""How far a tile may really be from where the stage says: the search radius of registration.

Two neighbouring tiles each carry the stage's repeatability error (independent, standard
deviation s per axis) and possibly its play (backlash: up to b, the same for every move in
one direction, so neighbours taken in opposite directions differ by up to b). Their relative
position is then within 3 * sqrt(2) * s + b of the planned step (99.7 % of pairs), plus a
small allowance for a pixel size or rotation that is off by a percent.

What a stage states: the simulator's profile says it exactly (`xy_jitter_um`, the XY play
left after its software compensation); a profile may give `xy_repeatability_um` and
`xy_play_um` in its [stage] table; otherwise low-cost defaults are assumed (2 um, 5 um), which
cost only a wider search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: Assumed when the profile states nothing: a low-cost stepper stage.
DEFAULT_REPEATABILITY_UM = 2.0
DEFAULT_PLAY_UM = 5.0
#: Scale error allowed on the step between neighbours (pixel size, rotation).
STEP_SCALE_ERROR = 0.01
#: Added to every radius: sub-step rounding, thermal drift between neighbours.
FLOOR_UM = 1.0


@dataclass(frozen=True)
class StageTolerance:
    repeatability_um: float
    play_um: float
    stated: bool  # False: the defaults were assumed

    def search_radius_um(self, step_um: float) -> float:
        """Half-width of the window of relative shifts to search, per axis."""
        return (
            3.0 * math.sqrt(2.0) * self.repeatability_um
            + self.play_um
            + STEP_SCALE_ERROR * abs(step_um)
            + FLOOR_UM
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "repeatability_um": self.repeatability_um,
            "play_um": self.play_um,
            "stated": self.stated,
        }


def stage_tolerance(profile: dict[str, Any]) -> StageTolerance:
    """The XY repeatability and play the hardware profile (as stored in the scan file)
    states."""
    stage = profile.get("stage") or {}
    sim = profile.get("simulator")
    if stage.get("type") == "sim" and sim is not None:
        from slidescan.hardware.sim.config import SimConfig

        config = SimConfig.model_validate(sim).stage
        play = config.xy_backlash_um if config.compensate_xy_um < config.xy_backlash_um else 0.0
        # A stage with no XY error at all still moves in whole steps.
        return StageTolerance(max(config.xy_jitter_um, config.xy_step_um / 2), play, True)
    rep, play = stage.get("xy_repeatability_um"), stage.get("xy_play_um")
    if rep is not None or play is not None:
        return StageTolerance(
            float(DEFAULT_REPEATABILITY_UM if rep is None else rep),
            float(DEFAULT_PLAY_UM if play is None else play),
            True,
        )
    return StageTolerance(DEFAULT_REPEATABILITY_UM, DEFAULT_PLAY_UM, False)
