"""torch's CPU thread count for one block of inference, put back afterwards: the networks run
on the scan thread beside other work, each with the thread count its method asks for."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` torch CPU threads (None: leave them as they are)."""
    saved = torch.get_num_threads()
    if n is not None and n != saved:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != saved:
            torch.set_num_threads(saved)
