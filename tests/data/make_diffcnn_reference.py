"""Regenerate `diffcnn_reference.npz`: the shipped diffcnn model's predictions on fixed inputs.

Recorded once with the code *before* the diffcnn moved onto the learned-model kit (commit
4b08c54, torch 2.13.0 CPU), so `tests/test_learned_kit.py` can check that the move changed no
prediction by a single bit. Run it again only when the shipped weights change on purpose:

    python tests/data/make_diffcnn_reference.py

The inputs are made here, deterministically, from the H&E crop in tests/data/tissue: pairs of
Gaussian blurs of different widths (a defocus pair has the sharper frame nearer focus) plus
seeded noise, and one batch of raw patches.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "diffcnn_reference.npz"
#: (sigma of the first frame, sigma of the second) in px: both below focus, the second nearer.
SIGMAS = ((6.0, 4.0), (3.0, 1.5), (9.0, 7.0), (2.0, 0.8))
PIXEL_SIZE_UM = 0.325


def reference_inputs() -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """The frame pairs (uint8 RGB) and one (N, 2, C, P, P) float32 patch batch."""
    bgr = cv2.imread(str(HERE / "tissue" / "he_nanozoomer_0.227um.png"), cv2.IMREAD_COLOR)
    rgb = np.ascontiguousarray(bgr[:384, :384, ::-1])
    rng = np.random.default_rng(20261206)
    pairs = []
    for s1, s2 in SIGMAS:
        frames = []
        for s in (s1, s2):
            blurred = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), s)
            noisy = blurred + rng.normal(0.0, 2.0, blurred.shape).astype(np.float32)
            frames.append(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))
        pairs.append((frames[0], frames[1]))
    patches = rng.uniform(0.3, 1.1, size=(6, 2, 3, 64, 64)).astype(np.float32)
    return pairs, patches


def main() -> None:
    import torch

    try:  # today's layout; 0.1 had the predictor in focus.learned.diffcnn
        from slidescan.focus.learned.diffcnn_model import DiffCNNPredictor
    except ImportError:
        from slidescan.focus.learned.diffcnn import DiffCNNPredictor

    torch.manual_seed(0)
    predictor = DiffCNNPredictor()
    pairs, patches = reference_inputs()
    out: dict[str, np.ndarray] = {"patches_out": predictor.predict_patches(patches)}
    for k, (a, b) in enumerate(pairs):
        p = predictor.predict(a, b, PIXEL_SIZE_UM)
        out[f"pair{k}_summary"] = np.array(
            [p.distance_um, p.spread_um, p.stderr_um, p.confidence, p.n_patches], np.float64
        )
        out[f"pair{k}_patches"] = np.asarray(p.patch_distance_um, np.float64)
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT}: {', '.join(f'{k}{v.shape}' for k, v in out.items())}")


if __name__ == "__main__":
    main()
