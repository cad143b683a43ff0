"""DeepFocus's blurriness score: what the network regresses, and the patches it reads.

The score (Shajkofci & Liebling regress the defocus Zernike coefficient of a PSF model; ours is
the equivalent blur width, which a patch shows whatever the objective): the PSF's width in
camera pixels, diffraction and defocus added in quadrature,

    sigma_px = sqrt((0.21 lambda / NA)^2 + (|dz| tan(asin NA) / 2)^2) / pixel_um,

(0.21 lambda / NA: the Gaussian fit of the Airy disc; r / 2: the per-axis spread of a uniform
disc of geometric radius r = |dz| tan theta), and the score is ln(sigma_px), clipped at
`MAX_SIGMA_PX` where a 128 px patch no longer shows more blur. Pixels, not um or waves, because
that is what one network can read on any microscope: the same defocus in waves looks different
at another sampling. The instrument's own curve of score against z comes from the calibration.

Patches: the frame's luminance, cut into non-overlapping `PATCH_PX` squares on a centred grid
(at most `max_patches`, spread over the frame), each standardised by its own mean and standard
deviation so the score does not depend on exposure or stain strength. Torch-free: the training
data tool and the method share it.

Noise floor: far from focus a patch holds little but camera noise, and the network reads more
noise as more blur (tuning stacks at 10x/0.30, 36-40 um out: +0.23 ln px for noise 1.5 -> 2.5
grey levels; the replay's blend of two planes, which averages their noise, -0.1 to -0.3). A
specimen, an exposure or a replay with less noise than the calibration stack then reads a
curve with other wings. `frame_patches(noise_floor=...)` first raises the patches' noise to
the calibration's floor (`noise_sigma`, Immerkaer's estimator; Gaussian noise seeded by the
frame's own pixels, `frame_seed`, so a frame always reads the same), which the calibration
sets at `deepfocus_calibration.NOISE_FLOOR_FACTOR` (2) times its own stack's noise. The
noise added is itself noise in the score, so it is drawn `NOISE_DRAWS` times (seeds
`frame_seed` + 0, 1, ...) and the patch scores averaged (`SharpnessNet.score_frame`): the
same mean score, a third of the variance the floor adds (10x tuning stacks, 17 fixed hints
per stack, 4 frames: MAE 0.458 -> 0.421 um with 3 draws, 0.421 with 5).
"""

from __future__ import annotations

import math
import zlib

import numpy as np

PATCH_PX = 128
#: Draws of the noise floor's noise per frame, their scores averaged (module docstring).
NOISE_DRAWS = 3
#: Draws are only needed until patches x draws reaches this: a 16-patch frame takes 2.
DRAWN_PATCHES = 32
#: Blur width beyond which a 128 px patch shows no more: the score saturates there.
MAX_SIGMA_PX = 24.0
#: Below this nothing is resolved on any camera (a pixel's own spread).
MIN_SIGMA_PX = 0.3
WAVELENGTH_UM = 0.55
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def blur_sigma_px(
    defocus_um: float | np.ndarray,
    na: float,
    pixel_um: float,
    wavelength_um: float = WAVELENGTH_UM,
    immersion_n: float = 1.0,
) -> np.ndarray:
    """The equivalent PSF width (per axis, in camera pixels) at a defocus (module docstring)."""
    if not 0 < na < immersion_n:
        raise ValueError(f"NA {na} must lie in (0, n={immersion_n})")
    if pixel_um <= 0:
        raise ValueError(f"pixel size must be positive, got {pixel_um}")
    tan_theta = math.tan(math.asin(na / immersion_n))
    diffraction = 0.21 * wavelength_um / na
    geometric = np.abs(np.asarray(defocus_um, dtype=np.float64)) * tan_theta / 2.0
    return np.hypot(diffraction, geometric) / pixel_um


def score_target(
    defocus_um: float | np.ndarray, na: float, pixel_um: float, immersion_n: float = 1.0
) -> np.ndarray:
    """The score the network is trained to give: ln of the clipped blur width."""
    sigma = blur_sigma_px(defocus_um, na, pixel_um, immersion_n=immersion_n)
    return np.log(np.clip(sigma, MIN_SIGMA_PX, MAX_SIGMA_PX))


def luminance(image: np.ndarray) -> np.ndarray:
    """float32 luminance of a (H, W) or (H, W, 3) frame, in the frame's own units."""
    a = np.asarray(image)
    if a.ndim == 2:
        return a.astype(np.float32, copy=False)
    if a.ndim == 3 and a.shape[2] == 3:
        return a.astype(np.float32, copy=False) @ _LUMA
    if a.ndim == 3 and a.shape[2] == 1:
        return a[..., 0].astype(np.float32, copy=False)
    raise ValueError(f"a frame is (H, W) or (H, W, 3), got shape {a.shape}")


def patch_grid(
    shape: tuple[int, int], patch: int = PATCH_PX, max_patches: int = 16
) -> list[tuple[int, int]]:
    """Top-left corners of up to `max_patches` non-overlapping patches, centred on the frame
    and spread evenly over it (a large frame gives a sparse grid, not only its centre)."""
    h, w = int(shape[0]), int(shape[1])
    if h < patch or w < patch:
        raise ValueError(f"a {w}x{h} frame is smaller than one {patch} px patch")
    if max_patches < 1:
        raise ValueError("max_patches must be at least 1")
    ny, nx = h // patch, w // patch
    while ny * nx > max_patches:
        if ny >= nx:
            ny -= 1
        else:
            nx -= 1
    ys = np.linspace(0, h - patch, ny + 2)[1:-1] if ny > 1 else np.array([(h - patch) / 2])
    xs = np.linspace(0, w - patch, nx + 2)[1:-1] if nx > 1 else np.array([(w - patch) / 2])
    if ny * patch * 2 > h:  # dense: tile the centre without gaps
        ys = (h - ny * patch) / 2 + patch * np.arange(ny)
    if nx * patch * 2 > w:
        xs = (w - nx * patch) / 2 + patch * np.arange(nx)
    return [(int(round(y)), int(round(x))) for y in ys for x in xs]


def standardise(patches: np.ndarray) -> np.ndarray:
    """(N, P, P) luminance patches -> zero mean, unit spread each (float32). The floor under
    the spread is relative to the brightness (0.2 %), so a camera's bit depth or exposure
    changes nothing, and the noise of a blank patch is not blown up to full contrast."""
    p = np.asarray(patches, dtype=np.float32)
    mean = p.mean(axis=(1, 2), keepdims=True)
    sd = p.std(axis=(1, 2), keepdims=True)
    return (p - mean) / (sd + 0.002 * np.abs(mean) + 1e-6)


def cut_patches(
    image: np.ndarray, max_patches: int = 16, patch: int = PATCH_PX
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A frame's luminance patches (N, P, P, float32, the frame's units) and their corners."""
    grey = luminance(image)
    corners = patch_grid(grey.shape[:2], patch, max_patches)
    cut = np.stack([grey[y : y + patch, x : x + patch] for y, x in corners])
    return np.asarray(cut, dtype=np.float32), corners


def frame_patches(
    image: np.ndarray,
    max_patches: int = 16,
    patch: int = PATCH_PX,
    noise_floor: float = 0.0,
    draw: int = 0,
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A frame's standardised patches (N, P, P) and their corners, their noise first raised to
    `noise_floor` grey levels (0: as they are; module docstring), seeded by the frame's own
    pixels and `draw` (the k-th draw of that noise)."""
    draws, corners = frame_draws(image, max_patches, patch, noise_floor, 1, first=draw)
    return draws[0], corners


def frame_draws(
    image: np.ndarray,
    max_patches: int = 16,
    patch: int = PATCH_PX,
    noise_floor: float = 0.0,
    draws: int = 1,
    first: int = 0,
    drawn_patches: int | None = None,
) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """`frame_patches` for draws `first`, `first` + 1, ... of the floor's noise, the frame cut,
    seeded and its noise measured once; a single entry when no noise is added (`noise_floor`
    0, or the frame already noisier than it: every draw would be the same). With
    `drawn_patches`, only as many of the `draws` as bring patches x draws to it: the frame's
    score averages the added noise over its patches as well as over the draws."""
    cut, corners = cut_patches(image, max_patches, patch)
    have = noise_sigma(cut) if noise_floor > 0 and len(cut) else math.inf
    if not have < noise_floor:
        return [standardise(cut)], corners
    if drawn_patches is not None:
        draws = max(1, min(draws, math.ceil(drawn_patches / len(cut))))
    seed = frame_seed(image) + int(first)
    return [
        standardise(raise_noise(cut, noise_floor, seed + k, have=have)) for k in range(draws)
    ], corners


def frame_seed(image: np.ndarray) -> int:
    """A seed from a frame's own pixels, as the camera gave them (every third row and column):
    the same frame gets the same seed whatever its memory layout (the float luminance's last
    bits are not: they follow the order of the matrix product's sums)."""
    a = np.asarray(image)
    return zlib.crc32(np.ascontiguousarray(a[::3, ::3]).tobytes())


def noise_sigma(patches: np.ndarray) -> float:
    """The Gaussian noise level (grey levels) of (N, P, P) or (H, W) luminance, by Immerkaer's
    estimator ("Fast noise variance estimation", 1996): the mean absolute response to the
    difference of two Laplacians, which is blind to flat, sloped and gently curved image and
    so sees noise wherever the image is smooth (a defocused frame everywhere). Texture in
    focus raises it a little (an upper bound)."""
    a = np.asarray(patches, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1] < 3 or a.shape[2] < 3:
        raise ValueError(f"noise_sigma needs (N, P, P) or (H, W) with P >= 3, got {a.shape}")
    c = a[:, 1:-1, 1:-1]
    edges = a[:, :-2, :-2] + a[:, :-2, 2:] + a[:, 2:, :-2] + a[:, 2:, 2:]
    sides = a[:, :-2, 1:-1] + a[:, 2:, 1:-1] + a[:, 1:-1, :-2] + a[:, 1:-1, 2:]
    response = edges - 2.0 * sides + 4.0 * c
    return float(math.sqrt(math.pi / 2.0) * np.abs(response).mean() / 6.0)


def raise_noise(
    patches: np.ndarray, floor: float, seed: int | None = None, have: float | None = None
) -> np.ndarray:
    """(N, P, P) luminance patches with Gaussian noise added so their noise level reaches
    `floor` grey levels; unchanged when it is there already or `floor` is 0. The noise is
    seeded by `seed` (`frame_seed` of the frame they were cut from), or else by the patches'
    own bytes: the same frame always gets the same noise. `have`: their noise level
    (`noise_sigma`), where the caller measured it already."""
    p = np.asarray(patches, dtype=np.float32)
    if not (math.isfinite(floor) and floor >= 0):
        raise ValueError(f"noise floor must be a finite number >= 0, got {floor}")
    if floor == 0:
        return p
    have = noise_sigma(p) if have is None else have
    if have >= floor:
        return p
    if seed is None:
        seed = zlib.crc32(np.ascontiguousarray(p[:, ::3, ::3]).tobytes())
    add = np.random.default_rng(seed).standard_normal(p.shape, dtype=np.float32)
    return p + add * np.float32(math.sqrt(floor * floor - have * have))
