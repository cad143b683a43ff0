"""Frozen-app entry point: the desktop application, or the CLI when given arguments."""

import sys

from slidescan.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
