#!/usr/bin/env bash
# Build the Linux installer from a clone of this repository, into dist/:
#   dist/slidescan_VERSION_ARCH.deb              (Debian/Ubuntu: double-click or `sudo apt install ./…`)
#   dist/slidescan-VERSION-linux-MACHINE.tar.gz  (any distribution: unpack, run ./slidescan)
# Usage: bash packaging/build.sh            (README "Installer"; about 10-15 min on 2 cores)
# Environment:
#   PYTHON=/path/to/python  build with that interpreter (it needs `pip install '.[bundle]'`);
#                           default: a build venv in build/venv made here (CPU torch first)
#   SKIP_DEB=1 / SKIP_TAR=1 leave that artefact out
# The PyInstaller one-folder build itself is build/pyinstaller-dist/slidescan; the same spec
# builds the Windows and macOS bundles (.github/workflows/bundle.yml).
set -euo pipefail
umask 022
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
say() { echo "build.sh: $*" >&2; }

# -- 1. the build environment: the program and PyInstaller, CPU torch only ---------------------
if [ -n "${PYTHON:-}" ]; then
    PY="$PYTHON"
else
    PY="$ROOT/build/venv/bin/python"
    if [ ! -x "$PY" ]; then
        say "making the build venv (build/venv)"
        python3 -m venv build/venv
        # torch first and pinned: anything else could pull a CUDA build of several GB
        "$PY" -m pip install -q torch==2.13.0
    fi
    say "installing slidescan and PyInstaller into the build venv"
    "$PY" -m pip install -q '.[bundle]'
    # the program as it is in this tree now (same version number, changed files)
    "$PY" -m pip install -q --no-deps --force-reinstall .
fi
"$PY" -c "import torch, sys; sys.exit(0 if torch.version.cuda is None else 'CUDA torch in the build env: install torch==2.13.0 (CPU) first')"
VERSION="$("$PY" -c 'from importlib.metadata import version; print(version("slidescan"))')"

# -- 2. the one-folder bundle ------------------------------------------------------------------
say "PyInstaller (one folder) ..."
"$PY" -m PyInstaller --noconfirm --log-level WARN \
    --distpath build/pyinstaller-dist --workpath build/pyinstaller packaging/slidescan.spec
BUNDLE="$ROOT/build/pyinstaller-dist/slidescan"
chmod -R u+rwX,go+rX,go-w "$BUNDLE"
"$BUNDLE/slidescan" --version >/dev/null  # it starts at all

mkdir -p dist
MACHINE="$(uname -m)"
ICON_PNG="resources/icons/slidescan.png"
ICON_SVG="resources/icons/slidescan.svg"

# -- 3. the .deb --------------------------------------------------------------------------------
if [ -z "${SKIP_DEB:-}" ]; then
    ARCH="$(dpkg --print-architecture)"
    STAGE="$ROOT/build/deb/slidescan_${VERSION}_${ARCH}"
    rm -rf "$STAGE"
    mkdir -p "$STAGE/DEBIAN" "$STAGE/opt" "$STAGE/usr/bin" "$STAGE/usr/share/applications" \
        "$STAGE/usr/share/icons/hicolor/256x256/apps" "$STAGE/usr/share/icons/hicolor/scalable/apps" \
        "$STAGE/usr/share/doc/slidescan"
    cp -a "$BUNDLE" "$STAGE/opt/slidescan"
    ln -s /opt/slidescan/slidescan "$STAGE/usr/bin/slidescan"
    install -m 644 packaging/linux/slidescan.desktop "$STAGE/usr/share/applications/"
    install -m 644 "$ICON_PNG" "$STAGE/usr/share/icons/hicolor/256x256/apps/slidescan.png"
    install -m 644 "$ICON_SVG" "$STAGE/usr/share/icons/hicolor/scalable/apps/slidescan.svg"
    install -m 644 packaging/linux/copyright "$STAGE/usr/share/doc/slidescan/copyright"
    # Depends: the system libraries Qt needs (the same list `slidescan gui` checks, from
    # app/gui/qt_libraries.py) and the C library the bundled binaries were linked against
    DEPENDS="$("$PY" packaging/linux/depends.py "$BUNDLE")"
    sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@DEPENDS@/$DEPENDS/" \
        -e "s/@SIZE@/$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)/" \
        packaging/linux/control.in >"$STAGE/DEBIAN/control"
    DEB="dist/slidescan_${VERSION}_${ARCH}.deb"
    say "dpkg-deb -> $DEB"
    # zstd: a tenth of xz's time for a few per cent more; every dpkg that can meet the libc6
    # dependency reads it (Debian 12, Ubuntu 22.04 and later)
    dpkg-deb --root-owner-group -Zzstd -z9 --build "$STAGE" "$DEB" >/dev/null
fi

# -- 4. the portable .tar.gz --------------------------------------------------------------------
if [ -z "${SKIP_TAR:-}" ]; then
    NAME="slidescan-${VERSION}-linux-${MACHINE}"
    STAGE="$ROOT/build/tar/$NAME"
    rm -rf "$ROOT/build/tar"
    mkdir -p "$STAGE/share/applications" "$STAGE/share/icons"
    cp -a "$BUNDLE/." "$STAGE/"
    install -m 755 packaging/linux/install.sh "$STAGE/install.sh"
    install -m 644 packaging/linux/slidescan.desktop "$STAGE/share/applications/"
    install -m 644 "$ICON_PNG" "$ICON_SVG" "$STAGE/share/icons/"
    install -m 644 packaging/linux/README.txt "$STAGE/README.txt"
    TAR="dist/$NAME.tar.gz"
    say "tar -> $TAR"
    tar -C "$ROOT/build/tar" --owner=0 --group=0 -czf "$TAR" "$NAME"
fi

say "done:"
ls -l dist/ >&2
