"""Scan events and the observer interface between the runner and whoever watches it.

The runner calls `observer.on_event(event)` from its own thread. The GUI relays each event onto
the GUI thread through one Qt signal; the CLI prints progress. Events are small immutable
records; arrays in them (thumbnails, focus curves) are never mutated after emission.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


class RunnerState(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHING = "finishing"


class FinishReason(enum.Enum):
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    ERROR = "error"  # the scan stopped on an error; the file is resumable


@dataclass(frozen=True)
class StateChanged:
    state: RunnerState
    message: str = ""


@dataclass(frozen=True)
class TileStarted:
    index: int  # position in the visiting order
    total: int
    row: int
    col: int
    x_um: float
    y_um: float


@dataclass(frozen=True)
class FocusDone:
    index: int
    method: str
    z_um: float  # the z the tile was taken at
    hint_z_um: float
    frames: int
    confidence: float
    ok: bool
    fallback: str  # "" when the method's own result was used, else what replaced it
    curve_z_um: np.ndarray = field(default_factory=lambda: np.zeros(0))
    curve_values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    curve_kind: str = "metric"  # the z of every shot taken are curve_z_um
    true_focus_um: float | None = None  # simulator only
    calibration: bool = False  # a per-slide calibration tile (extra frames by design)
    image_source: str = "capture"  # "capture", or "made" by the focus method from its shots


@dataclass(frozen=True)
class FrameWritten:
    index: int
    row: int
    col: int
    x_um: float
    y_um: float
    z_um: float
    width_um: float
    height_um: float
    thumbnail: np.ndarray  # small RGB/grey uint8 image for the tile map
    skipped: bool = False  # empty glass: no image stored


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    elapsed_s: float
    eta_s: float | None
    tiles_per_s: float
    hardware_s: float = 0.0


@dataclass(frozen=True)
class ImageMade:
    """The focus method made a tile's image from its raw shots (off the scan thread)."""

    index: int  # the planned tile
    thumbnail: np.ndarray
    seconds: float  # making it took
    backlog: int  # tiles still waiting for their image


@dataclass(frozen=True)
class BacklogProgress:
    """After the last tile: the images still to make, being made (a scan waits for them)."""

    done: int
    total: int
    elapsed_s: float
    eta_s: float | None


@dataclass(frozen=True)
class ScanWarning:
    message: str
    index: int | None = None


@dataclass(frozen=True)
class Finished:
    reason: FinishReason
    message: str = ""
    path: str = ""
    summary: dict[str, Any] = field(default_factory=dict)


ScanEvent = (
    StateChanged
    | TileStarted
    | FocusDone
    | FrameWritten
    | Progress
    | ImageMade
    | BacklogProgress
    | ScanWarning
    | Finished
)


@runtime_checkable
class ScanObserver(Protocol):
    def on_event(self, event: ScanEvent) -> None: ...


class EventLog:
    """An observer that keeps every event (tests, the CLI summary)."""

    def __init__(self) -> None:
        self.events: list[ScanEvent] = []

    def on_event(self, event: ScanEvent) -> None:
        self.events.append(event)

    def of_type(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]
