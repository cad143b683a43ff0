"""The Linux installer, built and run (slow: 10-20 min on 2 cores; `pytest -m slow`).

Builds dist/*.deb and dist/*.tar.gz with packaging/build.sh (or, with
SLIDESCAN_BUNDLE_PREBUILT=1, takes those already in dist/), checks what the .deb declares and
holds, unpacks the .tar.gz and runs the unpacked program's `--self-test` on a virtual screen
(Xvfb; offscreen where there is none) in a clean environment: it must print READY and exit 0.
The frozen program's route for the GUI's child-process jobs (`gui --slide-job`) is run on its
own too. Installing the .deb needs root and changes the machine: README "Installer" and
.github/workflows/bundle.yml do that part.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux installer"),
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb"),
    pytest.mark.timeout(3600),
]

REPO = Path(__file__).resolve().parents[1]
DIST = REPO / "dist"


@pytest.fixture(scope="module")
def artefacts() -> tuple[Path, Path]:
    if os.environ.get("SLIDESCAN_BUNDLE_PREBUILT") != "1":
        subprocess.run(["bash", str(REPO / "packaging" / "build.sh")], cwd=REPO, check=True)
    debs = sorted(DIST.glob("slidescan_*.deb"), key=lambda p: p.stat().st_mtime)
    tars = sorted(DIST.glob("slidescan-*-linux-*.tar.gz"), key=lambda p: p.stat().st_mtime)
    assert debs and tars, f"nothing built in {DIST}"
    return debs[-1], tars[-1]


@pytest.fixture(scope="module")
def unpacked(artefacts, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(artefacts[1]) as tar:
        tar.extractall(root, filter="tar")
    (folder,) = root.iterdir()
    assert (folder / "slidescan").is_file() and (folder / "install.sh").is_file()
    return folder


@pytest.fixture(scope="module")
def screen() -> Iterator[dict[str, str]]:
    """A virtual X screen (DISPLAY) from Xvfb, else Qt's offscreen platform."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        yield {"QT_QPA_PLATFORM": "offscreen"}
        return
    n = next(n for n in range(140, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    proc = subprocess.Popen(
        [xvfb, f":{n}", "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not Path(f"/tmp/.X11-unix/X{n}").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "Xvfb did not start"
            time.sleep(0.1)
        yield {"DISPLAY": f":{n}"}
    finally:
        proc.terminate()
        proc.wait(10)


def clean_env(tmp_path: Path, screen: dict[str, str]) -> dict[str, str]:
    """What a person's first start has: PATH, a new HOME, the screen; nothing of this venv."""
    home = tmp_path / "home"
    home.mkdir()
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), **screen}


def test_the_deb_declares_qt_libraries_and_holds_the_program(artefacts):
    from slidescan.app.gui.qt_libraries import GUI_LIBRARIES, XCB_LIBRARIES

    deb = artefacts[0]
    info = subprocess.run(["dpkg-deb", "--field", str(deb)], capture_output=True, text=True)
    fields = dict(line.split(": ", 1) for line in info.stdout.splitlines() if ": " in line[:40])
    assert fields["Package"] == "slidescan"
    depends = fields["Depends"]
    for package in set(GUI_LIBRARIES.values()) | set(XCB_LIBRARIES.values()):
        assert package in depends
    assert "libc6 (>= 2." in depends
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True)
    names = listing.stdout
    for path in (
        "./usr/bin/slidescan -> /opt/slidescan/slidescan",
        "./usr/share/applications/slidescan.desktop",
        "./usr/share/icons/hicolor/256x256/apps/slidescan.png",
        "./opt/slidescan/slidescan",
    ):
        assert path in names
    # every shipped model and profile, by pattern, and no screenshots
    shipped = {p.name for p in (REPO / "resources").glob("models/*") if p.suffix in (".pt", ".md")}
    shipped |= {p.name for p in (REPO / "resources").glob("profiles/*.toml")}
    for name in shipped:
        assert f"/resources/models/{name}" in names or f"/resources/profiles/{name}" in names
    assert "/screenshots/" not in names


def test_the_unpacked_program_passes_its_self_test(unpacked, screen, tmp_path):
    env = clean_env(tmp_path, screen)
    start = time.monotonic()
    proc = subprocess.run(
        [str(unpacked / "slidescan"), "--self-test"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    took = time.monotonic() - start
    assert (proc.returncode, proc.stdout.strip()) == (0, "READY"), proc.stderr[-2000:]
    log = Path(env["HOME"]) / ".local" / "state" / "slidescan" / "log" / "slidescan.log"
    assert "self-test passed" in log.read_text(encoding="utf-8")
    print(f"self-test of the unpacked bundle: {took:.1f} s")


def test_the_frozen_program_takes_the_gui_child_jobs(unpacked, tmp_path):
    """app/gui/child_job.py runs `<executable> gui --slide-job KIND SPEC` in a frozen build."""
    if not (REPO / "app" / "gui" / "slide_jobs.py").is_file():
        pytest.skip("this tree has no child-process jobs")
    spec = json.dumps({"scan": str(tmp_path / "absent.h5")})
    proc = subprocess.run(
        [str(unpacked / "slidescan"), "gui", "--slide-job", "stitch", spec],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 1 and "absent.h5" in last["error"], proc.stdout + proc.stderr


def test_every_subcommand_has_help_in_the_bundle(unpacked):
    """The subcommands are found at run time (pkgutil over app/commands): all are frozen."""
    names = sorted(
        p.stem for p in (REPO / "app" / "commands").glob("*.py") if not p.stem.startswith("_")
    )
    out = subprocess.run(
        [str(unpacked / "slidescan"), "--help"], capture_output=True, text=True, timeout=300
    ).stdout
    for name in names:
        assert name in out
