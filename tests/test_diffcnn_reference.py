"""The shipped diffcnn model gives, bit for bit, the predictions recorded before its move onto
the learned-model kit (tests/data/make_diffcnn_reference.py made the reference)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"


def _reference_module():
    spec = importlib.util.spec_from_file_location("make_ref", DATA / "make_diffcnn_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_predictions_are_bit_identical_to_the_recorded_reference():
    from slidescan.focus.learned.diffcnn_model import DiffCNNPredictor

    ref = np.load(DATA / "diffcnn_reference.npz")
    make = _reference_module()
    pairs, patches = make.reference_inputs()
    predictor = DiffCNNPredictor()
    np.testing.assert_array_equal(predictor.predict_patches(patches), ref["patches_out"])
    for k, (a, b) in enumerate(pairs):
        p = predictor.predict(a, b, make.PIXEL_SIZE_UM)
        got = np.array([p.distance_um, p.spread_um, p.stderr_um, p.confidence, p.n_patches])
        np.testing.assert_array_equal(got, ref[f"pair{k}_summary"])
        np.testing.assert_array_equal(p.patch_distance_um, ref[f"pair{k}_patches"])
