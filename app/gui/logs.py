"""Logging for the desktop app: a rotating file in the platform's log folder.

The log folder comes from platformdirs (`~/.local/state/slidescan/log` on Linux, the user's
AppData on Windows); Help > Open log folder opens it.
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

import platformdirs

LOG_NAME = "slidescan.log"


def log_dir() -> Path:
    return Path(platformdirs.user_log_dir("slidescan", appauthor=False))


def setup_logging(level: int = logging.INFO) -> Path:
    """Send the `slidescan` loggers to the rotating log file (once); returns its path."""
    folder = log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOG_NAME
    logger = logging.getLogger("slidescan")
    for h in logger.handlers:
        if isinstance(h, logging.handlers.RotatingFileHandler) and Path(h.baseFilename) == path:
            return path
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=2_000_000, backupCount=3, encoding="utf-8"
    )
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s")
    )
    logger.addHandler(handler)
    logger.setLevel(min(logger.level or level, level))
    return path
