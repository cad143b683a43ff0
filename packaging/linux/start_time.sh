#!/usr/bin/env bash
# Seconds from starting slidescan (no arguments: the desktop application) to its main window
# being shown, on the X display $DISPLAY, with a new HOME each run (a first start: the wizard
# opens over the window). The README's start-up figures come from this.
# Usage: DISPLAY=:99 bash packaging/linux/start_time.sh [PROGRAM] [RUNS]
#   PROGRAM defaults to the installed `slidescan`; e.g. build/pyinstaller-dist/slidescan/slidescan
set -euo pipefail
prog="${1:-slidescan}"
runs="${2:-3}"
: "${DISPLAY:?set DISPLAY (e.g. Xvfb :99 &; DISPLAY=:99)}"
shown() {  # a top-level window titled "slidescan" of class slidescan is viewable
    local id
    for id in $(xwininfo -root -tree 2>/dev/null | awk '/"slidescan": \("slidescan"/ {print $1}'); do
        xwininfo -id "$id" 2>/dev/null | grep -q IsViewable && return 0
    done
    return 1
}
for run in $(seq "$runs"); do
    home="$(mktemp -d)"
    start=$(date +%s.%N)
    env -i PATH=/usr/bin:/bin HOME="$home" DISPLAY="$DISPLAY" "$prog" >/dev/null 2>&1 &
    pid=$!
    until shown; do
        kill -0 "$pid" 2>/dev/null || { echo "run $run: slidescan exited before its window showed" >&2; exit 1; }
        sleep 0.05
    done
    end=$(date +%s.%N)
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    rm -rf "$home"
    echo "run $run: main window after $(echo "$end - $start" | bc -l | xargs printf '%.2f') s"
done
