"""Making a DeepFocus calibration: score every plane of a z-stack with the sharpness network and
fit the instrument's curve (`focus.deepfocus_calibration.build_calibration`).

Two sources, one result: a recorded focus-stack file (`calibrate_stack`), or the connected
microscope (`calibrate_on_drive`: `CALIBRATION_PLANES` planes over +/- 1.2 x the defocus where
the score saturates, bottom to top through the one focus drive, inside the soft limits).
Calibrate on any flat textured object; more patches per plane than a search reads (36) make the
median per plane steadier.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from slidescan.focus.deepfocus_calibration import (
    DeepFocusCalibration,
    build_calibration,
    calibration_planes,
)
from slidescan.focus.drive import FocusDrive
from slidescan.focus.learned.deepfocus_model import SharpnessNet
from slidescan.focus.protocol import OpticsLike

CALIBRATION_PATCHES = 36

Progress = Callable[[int, int], None]


def score_planes(
    net: SharpnessNet,
    images: Iterable[np.ndarray],
    total: int,
    max_patches: int = CALIBRATION_PATCHES,
    progress: Progress | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per plane: patch scores and validity (probability >= 0.5)."""
    scores, valid = [], []
    for k, image in enumerate(images):
        s = net.score_frame(np.asarray(image), max_patches)
        scores.append(s.scores)
        valid.append(s.valid_prob >= 0.5)
        if progress is not None:
            progress(k + 1, total)
    return scores, valid


def calibrate_stack(
    net: SharpnessNet,
    stack,
    optics: OpticsLike,
    source: str,
    max_patches: int = CALIBRATION_PATCHES,
    progress: Progress | None = None,
) -> DeepFocusCalibration:
    """A calibration from a recorded `FocusStack` (its planes and their z)."""
    z = np.asarray(stack.z_um, dtype=np.float64)
    images = (stack.images[i] for i in range(z.size))
    scores, valid = score_planes(net, images, z.size, max_patches, progress)
    return build_calibration(z, scores, valid, optics, source, net.checksum)


def calibrate_on_drive(
    net: SharpnessNet,
    drive: FocusDrive,
    centre_um: float,
    source: str,
    max_patches: int = CALIBRATION_PATCHES,
    progress: Progress | None = None,
) -> DeepFocusCalibration:
    """A calibration stack taken now, around `centre_um` (near the focus of a textured
    object), bottom to top."""
    planes = calibration_planes(drive.optics, centre_um, drive.limits)
    zs: list[float] = []

    def frames() -> Iterable[np.ndarray]:
        for z in planes:
            frame, move = drive.snap_at(float(z))
            zs.append(move.z_um)
            yield np.asarray(frame.image)

    scores, valid = score_planes(net, frames(), planes.size, max_patches, progress)
    return build_calibration(zs, scores, valid, drive.optics, source, net.checksum)
