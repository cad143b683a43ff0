"""Making a DeepFocus calibration: score every plane of a z-stack with the sharpness network and
fit the instrument's curve (`focus.deepfocus_calibration.build_calibration`).

Two sources, one result: a recorded focus-stack file (`calibrate_stack`), or the connected
microscope (`calibrate_on_drive`: `CALIBRATION_PLANES` planes over +/- 1.2 x the defocus where
the score saturates, bottom to top through the one focus drive, inside the soft limits).
Calibrate on any flat textured object; more patches per plane than a search reads (36) make the
median per plane steadier.

Every plane, and later every search frame, is scored with its noise raised to a floor of
`deepfocus_calibration.NOISE_FLOOR_FACTOR` times the camera's noise as the stack shows it
(`deepfocus_score.noise_sigma`) on a plane far from focus, where nothing but noise is left
to raise the estimate: on a recorded stack the quietest of its planes (read once before the
scoring); on the microscope the end of the stack farthest from its centre (1.2 x the
saturation defocus out, unless a soft limit cut the stack short on that side), taken first,
so the planes are scored as they come. The calibration records the frames' dtype: the floor
is in their grey levels.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from slidescan.focus.deepfocus_calibration import (
    NOISE_FLOOR_FACTOR,
    DeepFocusCalibration,
    build_calibration,
    calibration_planes,
)
from slidescan.focus.drive import FocusDrive
from slidescan.focus.learned.deepfocus_model import SharpnessNet
from slidescan.focus.learned.deepfocus_score import PATCH_PX, cut_patches, noise_sigma
from slidescan.focus.protocol import OpticsLike

CALIBRATION_PATCHES = 36

Progress = Callable[[int, int], None]


def plane_noise(
    image: np.ndarray, max_patches: int = CALIBRATION_PATCHES, patch: int = PATCH_PX
) -> float:
    """The noise level of one plane (grey levels of its luminance), over the patches a score
    reads."""
    cut, _ = cut_patches(np.asarray(image), max_patches, patch)
    return noise_sigma(cut)


def score_planes(
    net: SharpnessNet,
    images: Iterable[np.ndarray],
    total: int,
    noise_floor: float,
    max_patches: int = CALIBRATION_PATCHES,
    progress: Progress | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per plane: patch scores and validity (probability >= 0.5), each plane read as a search
    reads its frames: its noise raised to `noise_floor` first."""
    scores, valid = [], []
    for k, image in enumerate(images):
        s = net.score_frame(np.asarray(image), max_patches, noise_floor)
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
    if z.size == 0:
        raise ValueError("a calibration needs planes")
    sigma = min(plane_noise(stack.images[i], max_patches, net.patch_px) for i in range(z.size))
    floor = NOISE_FLOOR_FACTOR * sigma
    images = (stack.images[i] for i in range(z.size))
    scores, valid = score_planes(net, images, z.size, floor, max_patches, progress)
    return build_calibration(
        z,
        scores,
        valid,
        optics,
        source,
        net.checksum,
        noise_sigma=sigma,
        noise_floor=floor,
        frame_dtype=str(np.asarray(stack.images[0]).dtype),
    )


def calibrate_on_drive(
    net: SharpnessNet,
    drive: FocusDrive,
    centre_um: float,
    source: str,
    max_patches: int = CALIBRATION_PATCHES,
    progress: Progress | None = None,
) -> DeepFocusCalibration:
    """A calibration stack taken now, around `centre_um` (near the focus of a textured
    object), bottom to top; the noise read at its end farthest from the centre (module
    docstring)."""
    planes = calibration_planes(drive.optics, centre_um, drive.limits)
    zs: list[float] = []
    sigma = None
    if planes[-1] - centre_um > centre_um - planes[0]:  # the bottom was cut short: the top
        noise_frame, _ = drive.snap_at(float(planes[-1]))
        sigma = plane_noise(np.asarray(noise_frame.image), max_patches, net.patch_px)

    def frames() -> Iterator[np.ndarray]:
        for z in planes:
            frame, move = drive.snap_at(float(z))
            zs.append(move.z_um)
            yield np.asarray(frame.image)

    taken = frames()
    first = next(taken)
    if sigma is None:
        sigma = plane_noise(first, max_patches, net.patch_px)
    floor = NOISE_FLOOR_FACTOR * sigma
    scores, valid = score_planes(
        net, itertools.chain([first], taken), planes.size, floor, max_patches, progress
    )
    return build_calibration(
        zs,
        scores,
        valid,
        drive.optics,
        source,
        net.checksum,
        noise_sigma=sigma,
        noise_floor=floor,
        frame_dtype=str(first.dtype),
    )
