#!/usr/bin/env bash
# Install this unpacked slidescan for the current user (no root): the program in
# ~/.local/opt/slidescan, the command ~/.local/bin/slidescan and a menu entry.
# Uninstall: bash install.sh --uninstall
# Qt needs the system libraries listed in README.txt; `slidescan --self-test` checks it all.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="$HOME/.local/opt/slidescan"
apps="$HOME/.local/share/applications"
icons="$HOME/.local/share/icons/hicolor"
if [ "${1:-}" = "--uninstall" ]; then
    rm -rf "$dest" "$HOME/.local/bin/slidescan" "$apps/slidescan.desktop" \
        "$icons/256x256/apps/slidescan.png" "$icons/scalable/apps/slidescan.svg"
    echo "slidescan removed (your profiles, settings and logs are kept)"
    exit 0
fi
[ -x "$here/slidescan" ] || { echo "install.sh: run it from the unpacked folder" >&2; exit 1; }
rm -rf "$dest"
mkdir -p "$dest" "$HOME/.local/bin" "$apps" "$icons/256x256/apps" "$icons/scalable/apps"
cp -a "$here/slidescan" "$here/_internal" "$dest/"
ln -sf "$dest/slidescan" "$HOME/.local/bin/slidescan"
cp "$here/share/icons/slidescan.png" "$icons/256x256/apps/"
cp "$here/share/icons/slidescan.svg" "$icons/scalable/apps/"
sed "s|^Exec=.*|Exec=$dest/slidescan|" "$here/share/applications/slidescan.desktop" \
    >"$apps/slidescan.desktop"
echo "installed to $dest; start it from the menu or with $HOME/.local/bin/slidescan"
