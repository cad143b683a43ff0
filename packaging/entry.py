"""Entry point of the frozen program (PyInstaller): the same `slidescan` command as pip's.

With no arguments it starts the desktop application (a double-click), with arguments it is the
command line (`slidescan scan ...`, `slidescan --self-test`), and the GUI's child-process jobs
come back in through `slidescan gui --slide-job KIND SPEC` (app/gui/child_job.py).
"""

import multiprocessing
import sys

if __name__ == "__main__":
    # a spawned worker process of a frozen program re-enters here (slidescan stack synth)
    multiprocessing.freeze_support()
    from slidescan.app.cli import main

    sys.exit(main())
