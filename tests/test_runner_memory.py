"""Memory stays flat with the tile count: a 500-tile scan peaks where a 50-tile one does.

Frames never pile up (the queue to the writer is bounded, nothing keeps them); what does grow
is bookkeeping of a few hundred bytes per tile (the planned tile list, the focus predictor's
points), negligible next to one frame. Slow (about half a minute):
`pytest -m slow tests/test_runner_memory.py -s` prints the two peaks.
"""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from test_runner import FixedMethod, fake_scope, plan_for

from slidescan.app.events import FinishReason
from slidescan.app.runner import ScanRunner

HW = (512, 512)
FRAME_BYTES = HW[0] * HW[1] * 3


class _Null:
    def on_event(self, event) -> None:
        pass


def _measure(tmp_path, rows: int, cols: int) -> tuple[int, int]:
    """(peak, retained) traced bytes of one scan; retained = still allocated after the run
    (garbage collected, runner still alive): the per-tile bookkeeping a leak would show in."""
    scope = fake_scope(hw=HW)
    plan = plan_for(tmp_path, rows=rows, cols=cols, hw=HW).model_copy(
        update={"output": str(tmp_path / f"m{rows}x{cols}.h5")}
    )
    gc.collect()
    tracemalloc.start()
    runner = ScanRunner(plan, scope, _Null(), method=FixedMethod(scope), queue_size=2)
    runner.start()
    fin = runner.wait(300)
    _, peak = tracemalloc.get_traced_memory()
    gc.collect()
    retained, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert fin.reason is FinishReason.COMPLETED and fin.summary["tiles_done"] == rows * cols
    del runner
    return peak, retained


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_tiles(tmp_path):
    _measure(tmp_path, 2, 2)  # warm-up: lazy imports and caches are not the scan's growth
    small, kept_small = _measure(tmp_path, 5, 10)  # 50 tiles
    large, kept_large = _measure(tmp_path, 20, 25)  # 500 tiles
    per_tile = (kept_large - kept_small) / 450
    print(
        f"peak traced memory: 50 tiles {small / 1e6:.2f} MB, 500 tiles {large / 1e6:.2f} MB; "
        f"retained {per_tile:.0f} B per extra tile (one frame is {FRAME_BYTES / 1e3:.0f} kB)"
    )
    # Frames in flight are bounded (queue + the one being taken + the one being written); which
    # of them coexist at the peak depends on thread timing, hence the margin of two frames. Had
    # frames been kept, 450 more tiles would add 450 frames (350 MB here).
    assert large < small + 2 * FRAME_BYTES
    assert per_tile < 1024  # bookkeeping only: planned tiles, predictor points
