#!/usr/bin/env bash
# Build the desktop installer payload with PyInstaller into packaging/dist/slidescan/.
# Then: Linux -> packaging/linux/install.sh; Windows -> compile packaging/windows/slidescan.iss
# with Inno Setup.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-../.venv/bin/python}
"$PY" -m pip install -q "pyinstaller>=6.5"
"$PY" -m PyInstaller --noconfirm --distpath dist --workpath build slidescan.spec
echo "built: $(pwd)/dist/slidescan"
