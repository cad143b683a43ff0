#!/usr/bin/env bash
# Install the PyInstaller build for the current user: ~/.local/opt/slidescan, a launcher and a
# menu entry. Uninstall: rm -rf ~/.local/opt/slidescan ~/.local/bin/slidescan \
#   ~/.local/share/applications/slidescan.desktop
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$here/../dist/slidescan"
[ -x "$src/slidescan" ] || { echo "build first: bash packaging/build.sh" >&2; exit 1; }
dest="$HOME/.local/opt/slidescan"
mkdir -p "$dest" "$HOME/.local/bin" "$HOME/.local/share/applications"
cp -a "$src/." "$dest/"
ln -sf "$dest/slidescan" "$HOME/.local/bin/slidescan"
cp "$here/slidescan.desktop" "$HOME/.local/share/applications/"
echo "installed to $dest"
