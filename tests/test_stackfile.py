"""Focus-stack file format: round trip, streaming writes, atomicity, and clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from slidescan.hardware.optics import OpticalPath, get_objective
from slidescan.hardware.stackfile import (
    FocusStack,
    StackFileError,
    StackWriter,
    open_stacks,
    write_stacks,
)

OPTICS = OpticalPath(get_objective("20x/0.75"))


def _stack(sid: str, z0: float = 0.0, planes: int = 5, rgb: bool = False, seed: int = 0):
    rng = np.random.default_rng(seed)
    shape = (planes, 12, 16, 3) if rgb else (planes, 12, 16)
    images = rng.integers(0, 256, size=shape, dtype=np.uint8)
    z = z0 + np.linspace(-1.0, 1.0, planes)
    return FocusStack(sid, images, z, true_focus_um=z0 + 0.125, meta={"x_um": 10.0, "y_um": -5})


def test_round_trip_preserves_images_z_truth_optics_and_metadata(tmp_path):
    stacks = [_stack("a", 3.0, rgb=True), _stack("b", -2.0, seed=1)]
    stacks[1].images = stacks[1].images.astype(np.uint16) * 257
    path = write_stacks(
        tmp_path / "s.h5",
        stacks,
        OPTICS,
        source="simulator",
        source_config={"objective": "20x/0.75", "seed": 7},
    )
    with open_stacks(path) as f:
        assert len(f) == 2 and f.ids == ["a", "b"]
        assert f.source == "simulator"
        assert f.source_config == {"objective": "20x/0.75", "seed": 7}
        assert f.optics.na == 0.75 and f.optics.magnification == 20
        assert f.optics.immersion_n == 1.0
        assert f.optics.pixel_size_um == pytest.approx(OPTICS.pixel_size_um, rel=1e-12)
        assert f.optics.wavelengths_um == pytest.approx(OPTICS.wavelengths_um)
        assert f.optics.depth_of_field_um == pytest.approx(OPTICS.depth_of_field_um)
        for original, loaded in zip(stacks, f, strict=True):
            assert loaded.id == original.id
            assert loaded.images.dtype == original.images.dtype
            np.testing.assert_array_equal(loaded.images, original.images)
            np.testing.assert_array_equal(loaded.z_um, original.z_um)
            assert loaded.true_focus_um == original.true_focus_um
            assert loaded.meta == {"x_um": 10.0, "y_um": -5}
        assert f[-1].id == "b" and f["a"].id == "a"
        np.testing.assert_allclose(f[0].defocus_um, stacks[0].z_um - stacks[0].true_focus_um)


def test_images_are_chunked_per_plane_and_compressed(tmp_path):
    path = write_stacks(tmp_path / "s.h5", [_stack("a", rgb=True)], OPTICS, source="recorded")
    with h5py.File(path, "r") as h:
        ds = h["stacks/a/images"]
        assert ds.chunks == (1, 12, 16, 3)
        assert ds.compression == "gzip"
        assert h.attrs["format"] == "slidescan-focus-stack"
    path = write_stacks(tmp_path / "l.h5", [_stack("a")], OPTICS, source="x", compression="lzf")
    with h5py.File(path, "r") as h:
        assert h["stacks/a/images"].compression == "lzf"


def test_streaming_writer_keeps_insertion_order_and_assigns_ids(tmp_path):
    path = tmp_path / "s.h5"
    with StackWriter(path, OPTICS, source="recorded") as w:
        for k in (3, 1, 2):
            s = _stack("ignored", float(k))
            w.append(s.images, s.z_um, true_focus_um=s.true_focus_um, position=k)
        assert not path.exists(), "the final name must appear only on close"
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask, "the usual mode, not mkstemp's 0600"
    with open_stacks(path) as f:
        assert f.ids == ["0000", "0001", "0002"]
        assert [s.meta["position"] for s in f] == [3, 1, 2]


def test_interrupted_writer_leaves_no_file(tmp_path):
    path = tmp_path / "s.h5"
    with pytest.raises(KeyboardInterrupt), StackWriter(path, OPTICS, source="x") as w:
        s = _stack("a")
        w.append(s.images, s.z_um)
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_bad_stacks(tmp_path):
    with StackWriter(tmp_path / "s.h5", OPTICS, source="x") as w:
        img = np.zeros((3, 4, 4), np.uint8)
        with pytest.raises(StackFileError, match="not strictly monotonic"):
            w.append(img, [0.0, 1.0, 1.0])
        with pytest.raises(StackFileError, match="3 image planes but 2 z_um"):
            w.append(img, [0.0, 1.0])
        with pytest.raises(StackFileError, match="uint8 or uint16"):
            w.append(img.astype(np.float32), [0.0, 1.0, 2.0])
        w.append(img, [2.0, 1.0, 0.0], stack_id="down")  # decreasing is monotonic too
        with pytest.raises(StackFileError, match="already in the file"):
            w.append(img, [0.0, 1.0, 2.0], stack_id="down")


def test_missing_file_and_not_hdf5(tmp_path):
    with pytest.raises(StackFileError, match="not found"):
        open_stacks(tmp_path / "nope.h5")
    junk = tmp_path / "junk.h5"
    junk.write_text("hello")
    with pytest.raises(StackFileError, match="not an HDF5 file"):
        open_stacks(junk)


def _write_valid(path: Path) -> Path:
    return write_stacks(path, [_stack("a"), _stack("b")], OPTICS, source="x")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda h: h.__delitem__("stacks"), "no /stacks group"),
        (lambda h: h.attrs.__delitem__("na"), "lacks the file attribute"),
        (lambda h: h["stacks/b"].__delitem__("z_um"), "stack 'b' has no 'z_um' dataset"),
        (lambda h: h["stacks/a"].__delitem__("images"), "stack 'a' has no 'images' dataset"),
        (
            lambda h: h["stacks/a/z_um"].__setitem__(slice(None), [0, 1, 0.5, 2, 3]),
            "not strictly monotonic",
        ),
        (
            lambda h: (
                h["stacks/b"].__delitem__("z_um"),
                h["stacks/b"].create_dataset("z_um", data=np.arange(4.0)),
            ),
            "5 image planes but 4 z_um",
        ),
        (lambda h: h.attrs.__setitem__("na", 1.3), "bad optics attributes"),
    ],
)
def test_malformed_files_give_one_clear_error(tmp_path, damage, message):
    path = _write_valid(tmp_path / "s.h5")
    with h5py.File(path, "r+") as h:
        damage(h)
    with pytest.raises(StackFileError, match=message) as exc:
        open_stacks(path)
    assert "\n" not in str(exc.value)


def test_lookup_errors_name_the_problem(tmp_path):
    with open_stacks(_write_valid(tmp_path / "s.h5")) as f:
        with pytest.raises(KeyError, match="no stack 'zz'"):
            f["zz"]
        with pytest.raises(IndexError, match="holds 2 stacks"):
            f[2]
        assert f.shape(0) == (5, 12, 16) and f.dtype(1) == np.uint8
        assert f.true_focus_um("b") == pytest.approx(0.125)


def test_source_config_is_json(tmp_path):
    path = write_stacks(
        tmp_path / "s.h5", [_stack("a")], OPTICS, source="simulator", source_config='{"k": 1}'
    )
    with h5py.File(path, "r") as h:
        assert json.loads(h.attrs["source_config"]) == {"k": 1}
