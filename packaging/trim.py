"""What the PyInstaller build leaves out, and why (imported by slidescan.spec).

Everything here is something the program never imports or loads. The bundle's self-test
(`slidescan --self-test`: the GUI, a simulator scan, the scan file, every shipped learned
model run through torch, a child-process job) and `slidescan --help` pass without it; the
sizes are in the README ("Installer").

1. torch's own test programs and test libraries, its protobuf compiler, its C++ headers
   and CMake files, and its ONNX exporter. (torch/bin/torch_shm_manager stays: `import
   torch` looks for it.)
2. On Linux, the system libraries the .deb declares as dependencies (Qt's, from
   app/gui/qt_libraries.py, and the rest of the Debian packages that ship them): the
   installed system's own are used, never a copy from the build machine mixed with them.
3. On Linux, Qt's GTK 3 platform theme: it would load the system's GTK 3 with a partial copy
   of cairo, pango and gdk-pixbuf from the build machine; Qt's own style is used instead.
4. Then every bundled library that nothing kept needs any more (`prune_orphans`).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys

#: Python modules left out: the analysis would otherwise follow optional imports into them.
EXCLUDED_MODULES = [
    # GUI toolkits and notebooks other libraries can use; the program's GUI is Qt
    "tkinter",
    "_tkinter",
    "matplotlib",
    "IPython",
    "jupyter_client",
    "ipykernel",
    # test frameworks that libraries import optionally
    "pytest",
    "_pytest",
    "hypothesis",
    # torchvision is never used (and PyPI's does not match the CPU torch)
    "torchvision",
    # torch's ONNX exporter and TensorBoard writer: never used. (TorchDynamo and Inductor
    # stay: torch.optim's optimizers import them, so `slidescan train` needs them.)
    "torch.onnx",
    "torch.utils.tensorboard",
]

#: Shared libraries and programs left out (bundle paths, fnmatch patterns, any system).
EXCLUDED_BINARIES = [
    "torch/test/*",
    "torch/bin/*",
    "torch/lib/libjitbackend_test.*",
    "torch/lib/libtorchbind_test.*",
    "torch/lib/libaoti_custom_ops.*",
    "torch/lib/libbackend_with_compiler.*",
    "torch/lib/*test*.dll",
]

#: Kept although a pattern above matches: `import torch` fails without it.
KEPT_BINARIES = ["torch/bin/torch_shm_manager*"]

#: Linux only: Qt's GTK 3 theme plugin (see 3. above).
EXCLUDED_BINARIES_LINUX = ["PySide6/Qt/plugins/platformthemes/libqgtk3.so"]

#: Data files left out.
EXCLUDED_DATAS = [
    "torch/test/*",
    "torch/bin/*",
    "torch/include/*",
    "torch/share/cmake/*",
]

#: Other libraries of the Debian packages Qt's dependencies come in: glib's runtime package
#: (libglib2.0-0) ships all five; the system has them when it has libglib-2.0.
SAME_PACKAGE = ["libgobject-2.0.so.0", "libgio-2.0.so.0", "libgmodule-2.0.so.0"]


def _dest(entry: tuple) -> str:
    return entry[0].replace("\\", "/")


def _matches(dest: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(dest, p) for p in patterns)


def system_libraries() -> set[str]:
    """Sonames the .deb depends on (Linux): never bundled."""
    from slidescan.app.gui.qt_libraries import GUI_LIBRARIES, XCB_LIBRARIES

    return set(GUI_LIBRARIES) | set(XCB_LIBRARIES) | set(SAME_PACKAGE)


def binaries(toc: list, platform: str = sys.platform) -> list:
    """The binaries to keep (PyInstaller TOC entries: (dest_name, src_name, typecode))."""
    patterns = list(EXCLUDED_BINARIES)
    system: set[str] = set()
    if platform.startswith("linux"):
        patterns += EXCLUDED_BINARIES_LINUX
        system = system_libraries()
    kept = []
    for entry in toc:
        dest = _dest(entry)
        if _matches(dest, patterns) and not _matches(dest, KEPT_BINARIES):
            continue
        if "/" not in dest and os.path.basename(dest) in system:
            continue
        kept.append(entry)
    if platform.startswith("linux"):
        kept = prune_orphans(kept)
    return kept


def datas(toc: list) -> list:
    """The data files to keep."""
    return [
        entry
        for entry in toc
        if not _matches(_dest(entry), EXCLUDED_DATAS) or _matches(_dest(entry), KEPT_BINARIES)
    ]


def _needed(path: str) -> list[str]:
    out = subprocess.run(
        ["readelf", "-d", path], capture_output=True, text=True, check=False
    ).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out)


def prune_orphans(toc: list) -> list:
    """Drop the top-level libraries that PyInstaller collected only as dependencies of
    something left out. A library inside a package folder (torch/lib, PySide6/Qt/...,
    *.libs) or an extension module is loaded by import or by name and is always kept; so is
    libpython. Linux (readelf) only; without readelf nothing is pruned."""
    if shutil.which("readelf") is None:
        return toc
    by_name: dict[str, tuple] = {}
    for entry in toc:
        by_name.setdefault(os.path.basename(_dest(entry)), entry)
    top = {
        _dest(e)
        for e in toc
        if "/" not in _dest(e) and e[2] == "BINARY" and not _dest(e).startswith("libpython")
    }
    roots = [e for e in toc if _dest(e) not in top]
    seen: set[str] = set()
    stack = roots[:]
    while stack:
        entry = stack.pop()
        dest = _dest(entry)
        if dest in seen:
            continue
        seen.add(dest)
        src = entry[1]
        if not src or not os.path.isfile(src):
            continue
        for name in _needed(src):
            dep = by_name.get(name)
            if dep is not None and _dest(dep) not in seen:
                stack.append(dep)
    return [e for e in toc if _dest(e) not in top or _dest(e) in seen]
