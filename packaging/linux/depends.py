"""Print the .deb's Depends line for the bundle folder given as the argument.

- The system libraries Qt needs, by Debian package: the same table `slidescan gui` checks
  before Qt loads (slidescan.app.gui.qt_libraries), so the two never disagree.
- libc6 at least the newest GLIBC_x.y symbol version any bundled binary asks for.

glib's runtime was renamed libglib2.0-0t64 in Debian 13 and Ubuntu 24.04 (the 64-bit time_t
transition); either name satisfies the dependency.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from slidescan.app.gui.qt_libraries import GUI_LIBRARIES, XCB_LIBRARIES

#: Debian packages renamed since: either name will do.
ALTERNATIVES = {"libglib2.0-0": "libglib2.0-0t64 | libglib2.0-0"}


def elf_files(folder: Path) -> list[Path]:
    out = []
    for p in folder.rglob("*"):
        if p.is_file() and not p.is_symlink():
            with p.open("rb") as f:
                if f.read(4) == b"\x7fELF":
                    out.append(p)
    return out


def glibc_needed(files: list[Path]) -> tuple[int, int]:
    """The newest GLIBC_x.y version the files' dynamic symbols need (objdump -T)."""
    newest = (2, 17)
    for chunk in range(0, len(files), 200):
        text = subprocess.run(
            ["objdump", "-T", *map(str, files[chunk : chunk + 200])],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        for major, minor in re.findall(r"\bGLIBC_(\d+)\.(\d+)\b", text):
            newest = max(newest, (int(major), int(minor)))
    return newest


def depends(bundle: Path) -> str:
    packages = sorted(set(GUI_LIBRARIES.values()) | set(XCB_LIBRARIES.values()))
    major, minor = glibc_needed(elf_files(bundle))
    return ", ".join([f"libc6 (>= {major}.{minor})"] + [ALTERNATIVES.get(p, p) for p in packages])


if __name__ == "__main__":
    print(depends(Path(sys.argv[1])))
