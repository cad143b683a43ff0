"""What a slide export raises: one-line messages the CLI and the GUI show as they are."""

from __future__ import annotations


class ExportError(Exception):
    """The export cannot be made (bad input, unknown format, no room); nothing was written."""


class ExportCancelled(ExportError):
    """The caller's cancel check said stop; nothing was written."""

    def __init__(self, message: str = "export cancelled; nothing was written") -> None:
        super().__init__(message)
