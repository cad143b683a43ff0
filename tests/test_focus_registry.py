"""The focus-method registry: names, lazy learned entries, clear one-line errors."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from test_focus_fakes import FakeFocusDevice

from slidescan.focus import registry
from slidescan.focus.classical import BrentSearch, NoFocus, ZSweep
from slidescan.focus.drive import FocusDrive
from slidescan.focus.protocol import FocusError, FocusHint, FocusMethod
from slidescan.focus.registry import (
    UnknownMethodError,
    available_methods,
    describe,
    get_method,
    register,
)


def test_builtins_are_listed_first():
    assert available_methods()[:3] == ["zsweep", "brent", "none"]


def test_get_method_builds_configured_instances():
    m = get_method("zsweep", step_um=0.5, metric="tenengrad")
    assert isinstance(m, ZSweep) and m.params.step_um == 0.5 and m.params.metric == "tenengrad"
    assert isinstance(get_method("brent"), BrentSearch)
    assert isinstance(get_method("none"), NoFocus)
    assert get_method("zsweep") is not get_method("zsweep")  # fresh instances
    r = get_method("zsweep").focus(FocusDrive(FakeFocusDevice(truth_um=0.7)), FocusHint(0.0))
    assert abs(r.z_um - 0.7) < 0.15


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(
        UnknownMethodError, match=r"unknown focus method 'sharp'; available: zsweep, brent, none"
    ):
        get_method("sharp")
    with pytest.raises(FocusError):
        describe("sharp")


def test_unknown_parameter_names_the_valid_ones():
    with pytest.raises(
        UnknownMethodError, match=r"no parameter 'stepsize'.*valid parameters: range_um, step_um"
    ):
        get_method("zsweep", stepsize=1.0)


def test_bad_parameter_value_is_one_clear_line():
    with pytest.raises(
        UnknownMethodError, match="bad parameter step_um for focus method 'zsweep'"
    ) as info:
        get_method("zsweep", step_um=-1.0)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)  # callers catching ValueError see it too


def test_describe_gives_the_summary_and_parameters():
    text = describe("zsweep")
    assert text.startswith("zsweep: Sweep N planes")
    assert "metric='brenner'" in text and "range_um=None" in text
    assert describe("none").startswith("none: Use the hint")


def test_learned_entry_is_listed_only_when_importable(monkeypatch):
    present = importlib.util.find_spec("slidescan.focus.learned.diffcnn") is not None
    assert ("diffcnn" in available_methods()) == present
    register(
        "ghost",
        "slidescan.focus.learned.no_such_module:Ghost",
        "slidescan.focus.learned.no_such_module:GhostParams",
        "not there",
    )
    try:
        assert "ghost" not in available_methods()
        with pytest.raises(UnknownMethodError, match="unknown focus method 'ghost'"):
            get_method("ghost")
    finally:
        registry._REGISTRY.pop("ghost", None)


def test_lazy_entries_import_on_first_use_only(tmp_path, monkeypatch):
    (tmp_path / "lazyfocus_plugin.py").write_text(
        "from slidescan.focus.protocol import FocusMethod\n"
        "from lazyfocus_params import LazyParams\n"
        "class Lazy(FocusMethod):\n"
        "    name = 'lazy'\n"
        "    Params = LazyParams\n"
        "    def focus(self, drive, hint):\n"
        "        raise NotImplementedError\n"
    )
    (tmp_path / "lazyfocus_params.py").write_text(
        "from slidescan.focus.protocol import FocusParams\n"
        "class LazyParams(FocusParams):\n"
        "    k: int = 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    register("lazy", "lazyfocus_plugin:Lazy", "lazyfocus_params:LazyParams", "a lazy one")
    try:
        assert "lazy" in available_methods()
        assert describe("lazy") == "lazy: a lazy one\nparameters: k=1"
        # listing, describing and validating import the parameter model only
        assert registry.validate_params("lazy", {"k": 2}).k == 2
        assert "lazyfocus_plugin" not in sys.modules
        m = get_method("lazy", k=3)
        assert isinstance(m, FocusMethod) and m.params.k == 3
        assert "lazyfocus_plugin" in sys.modules
    finally:
        registry._REGISTRY.pop("lazy", None)
        sys.modules.pop("lazyfocus_plugin", None)
        sys.modules.pop("lazyfocus_params", None)


def test_register_checks_its_arguments():
    with pytest.raises(ValueError, match="module:attr"):
        register("x", "no_colon")
    with pytest.raises(ValueError, match="method names"):
        register("bad name", ZSweep)
