"""Benchmarks (slow-marked; run with `pytest -m slow tests/test_gui_perf.py`): the live view
keeps up with 2048 x 2048 frames, and the window stays responsive during a full-size scan."""

from __future__ import annotations

import pytest

from slidescan.app.gui.tools.bench import live_view_fps, scan_stalls
from slidescan.app.gui.tools.stall import FROZEN_MS

pytestmark = [pytest.mark.gui, pytest.mark.slow]


@pytest.mark.parametrize(("channels", "dtype"), [(1, "uint16"), (3, "uint8")])
def test_live_view_shows_2048_frames_at_30_fps(qtbot, channels, dtype):
    result = live_view_fps(size=2048, channels=channels, dtype=dtype, seconds=3.0)
    assert result["fps"] >= 30, result


def test_event_loop_responsive_during_a_full_size_scan(qtbot):
    result = scan_stalls(camera_px=1024, rows=3, cols=3)
    assert result["max_stall_ms"] < FROZEN_MS, result  # wall clock; `result` has the busy ms
