"""Crash safety, proven by killing writers with SIGKILL at random moments.

1. Writer stress: a subprocess appends small tiles through ScanWriter as fast as it can, so the
   kills land inside HDF5 writes and flushes; some kills come before the file exists or while
   it is being created. After every kill the file must open, hold every tile the process
   reported committed and at most the one it was writing, every image intact (CRC-32), and the
   next run must continue it. At the end every tile is there exactly once.
2. The real command: `slidescan scan` on a small simulator is killed at random points and
   continued with `slidescan scan --resume FILE` until done; every planned tile exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from slidescan.app.store import ScanReader
from slidescan.app.tissue import thumbnail

WRITER_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import numpy as np
    from slidescan.app.plan import RectRegion, ScanPlan
    from slidescan.app.store import ScanWriter, TileRecord

    path, total = Path(sys.argv[1]), int(sys.argv[2])
    shape = (24, 32, 3)
    plan = ScanPlan(region=RectRegion(x0=0, y0=0, x1=32 * total, y1=24), overlap=0.0,
                    output=str(path))
    tiles = plan.tiles(32, 24)
    assert len(tiles) == total
    if path.exists():
        w = ScanWriter.open(path)
    else:
        w = ScanWriter.create(path, plan, tiles, shape, np.uint8, pixel_size_um=1.0)
    print("ready", w.n_committed, flush=True)
    for t in tiles:
        if t.index in w.done_indices():
            continue
        image = np.random.default_rng(t.index).integers(0, 256, shape, dtype=np.uint8)
        curve = np.linspace(-5, 5, 21) + t.index
        rec = TileRecord(t.index, t.row, t.col, t.x_um, t.y_um, float(t.index),
                         curve_z_um=curve, curve_values=curve ** 2, frames=21)
        w.append(rec, image)
        sys.stdout.write(f"committed {t.index}\\n")  # one write: a kill never splits it
    w.close("completed")
    print("done", flush=True)
    """
)


def _expected_image(index: int) -> np.ndarray:
    return np.random.default_rng(index).integers(0, 256, (24, 32, 3), dtype=np.uint8)


class _Run:
    """A subprocess whose complete stdout lines are collected as they come (a kill may cut the
    last one short: it is dropped), so the test can kill it right after a given line."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.endswith("\n"):
                with self._seen:
                    self.lines.append(line.rstrip("\n"))
                    self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def wait_for(self, prefix: str, timeout: float = 120) -> None:
        """Block until a line starting with `prefix` arrived (or the process ended)."""
        with self._seen:
            self._seen.wait_for(
                lambda: (
                    any(x.startswith(prefix) for x in self.lines) or not self._reader.is_alive()
                ),
                timeout,
            )

    def kill(self) -> list[str]:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._reader.join(10)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.lines


def _check_file(path: Path, committed: list[int], checked: int = 0) -> int:
    """The file opens and holds exactly the committed tiles (plus at most the one in flight).

    Every image is checked against its CRC; rows from `checked` on also against the truth."""
    with ScanReader(path) as r:
        t = r.tiles
        n = r.n_tiles
        assert r.verify() == [], "a committed tile's image does not match its checksum"
        assert len(set(t["index"].tolist())) == n, "a tile was stored twice"
        done = set(t["index"].tolist())
        assert set(committed) <= done, "a tile reported committed is missing"
        assert len(done - set(committed)) <= 1, "more than the in-flight tile appeared"
        for i in range(max(0, checked - 1), n):
            idx = int(t["index"][i])
            np.testing.assert_array_equal(r.image(i), _expected_image(idx))
            np.testing.assert_array_equal(r.thumbnail(i), thumbnail(_expected_image(idx)))
            z, v = r.curve(i)
            np.testing.assert_allclose(z, np.linspace(-5, 5, 21) + idx, rtol=1e-6)
            assert t["z_um"][i] == idx and t["frames"][i] == 21
        return n


def test_sigkill_during_writes_never_loses_a_committed_tile(tmp_path):
    rng = random.Random(1234)
    path = tmp_path / "stress.h5"
    total = 1200
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SCRIPT)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    kills, kills_in_loop, kills_early = 0, 0, 0
    committed_all: list[int] = []
    checked = 0
    for attempt in range(12):
        run = _Run([sys.executable, str(script), str(path), str(total)], env)
        early = attempt in (0, 3)  # before or while the file is created / recovered
        if early:
            time.sleep(rng.uniform(0.05, 0.6))
        else:
            run.wait_for("committed")
            time.sleep(rng.uniform(0.0, 0.1))
        lines = run.kill()
        committed = [int(x.split()[1]) for x in lines if x.startswith("committed")]
        committed_all.extend(committed)
        kills += 1
        kills_in_loop += bool(committed)
        kills_early += early and not path.exists()
        if not path.exists():
            assert not committed
            continue
        checked = _check_file(path, sorted(set(committed_all)), checked)
        if any(x == "done" for x in lines):
            break
    assert kills >= 10 and kills_in_loop >= 6
    # one last clean run finishes the scan: every tile exactly once
    out = subprocess.run(
        [sys.executable, str(script), str(path), str(total)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    with ScanReader(path) as r:
        assert r.status == "completed"
        assert sorted(r.tiles["index"].tolist()) == list(range(total))
        assert r.verify() == []
    assert not path.with_name(path.name + ".recover").exists()


@pytest.fixture
def small_sim_cli(tmp_path):
    """A small simulator profile 'kill-sim' (64 x 48 camera) in the temporary user profile
    folder, and a script running `slidescan.app.cli.main(argv)` that prints
    'committed <index>' after each tile is in the file."""
    from slidescan.hardware.profile import HardwareProfile, load_profile, save_profile

    data = load_profile("simulator").model_dump(mode="json")
    data["simulator"] = {**(data.get("simulator") or {}), "camera": {"width": 64, "height": 48}}
    data["name"] = "kill-sim"
    save_profile(HardwareProfile.model_validate(data), "kill-sim")
    script = tmp_path / "cli.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            from slidescan.app import store
            from slidescan.app.cli import main

            real = store.ScanWriter.append

            def append(self, record, *a, **k):
                row = real(self, record, *a, **k)
                sys.stdout.write(f"committed {record.index}\\n")
                return row

            store.ScanWriter.append = append
            sys.exit(main(sys.argv[1:]))
            """
        )
    )
    return script


def test_sigkill_the_scan_command_and_resume(tmp_path, small_sim_cli):
    rng = random.Random(7)
    path = tmp_path / "scan.h5"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    base = [sys.executable, str(small_sim_cli)]
    first = ["scan", "--profile", "kill-sim", "--rows", "5", "--cols", "6", "--out", str(path)]
    resume = ["scan", "--resume", str(path), "--json"]
    committed: set[int] = set()
    kills_with_progress = 0
    for attempt in range(6):
        argv = first if not path.exists() else resume
        run = _Run(base + argv, env)
        if attempt == 0:  # early: while starting up or creating the file
            time.sleep(rng.uniform(0.1, 1.0))
        else:  # anywhere in the scan, after it got going
            run.wait_for("committed")
            time.sleep(rng.uniform(0.0, 0.4))
        lines = run.kill()
        new = {int(x.split()[1]) for x in lines if x.startswith("committed ")}
        kills_with_progress += bool(new)
        committed |= new
        if not path.exists():
            assert not committed
            continue
        with ScanReader(path) as r:
            done = r.tiles["index"].tolist()
            assert len(done) == len(set(done)), "a tile was stored twice"
            assert committed <= set(done), "a committed tile was lost"
            assert len(set(done) - committed) <= 1
            assert r.verify() == []
        if len(committed) == 30:
            break
    assert kills_with_progress >= 3
    out = subprocess.run(base + resume, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    with ScanReader(path) as r:
        assert r.status == "completed"
        assert sorted(r.tiles["index"].tolist()) == list(range(30))
        assert r.verify() == []
