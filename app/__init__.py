"""The application: scan plan and runner (Qt-free), HDF5 storage, profiles, CLI; Qt in app.gui."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("slidescan")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
