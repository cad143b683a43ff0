"""What the wizard shows for a failure: one line, a validation error as `field: reason`."""

from __future__ import annotations

from pydantic import ValidationError


def error_line(exc: BaseException) -> str:
    """`exc` as one line: the first error of a pydantic model, else the message's first line
    (the exception's type where it has none)."""
    if isinstance(exc, ValidationError):
        e = exc.errors()[0]
        return f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
