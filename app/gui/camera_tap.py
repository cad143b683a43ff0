"""Let the live view show the frames a scan takes.

During a scan the camera's live stream is stopped (the scan owns the camera), yet a person
wants to watch the tiles and focus shots go by. `CameraTap` wraps the microscope's camera: it
forwards everything, and remembers the last frame `snap()` returned, so `latest_frame()` gives
the newest of the stream's frames and the scan's snaps. Install it once per microscope with
`install_tap(microscope)`.
"""

from __future__ import annotations

from typing import Any

from slidescan.hardware.base import Frame

_OWN = ("_camera", "_last")


class CameraTap:
    def __init__(self, camera: Any) -> None:
        object.__setattr__(self, "_camera", camera)
        object.__setattr__(self, "_last", None)

    @property
    def wrapped(self) -> Any:
        return self._camera

    def snap(self) -> Frame:
        frame = self._camera.snap()
        object.__setattr__(self, "_last", frame)
        return frame

    def latest_frame(self) -> Frame | None:
        streamed = self._camera.latest_frame()
        snapped = self._last
        if streamed is None:
            return snapped
        if snapped is None:
            return streamed
        return snapped if snapped.timestamp >= streamed.timestamp else streamed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._camera, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self._camera, name, value)


def install_tap(microscope: Any) -> CameraTap:
    """Wrap `microscope.camera` in a `CameraTap` (once) and return the tap."""
    camera = microscope.camera
    if isinstance(camera, CameraTap):
        return camera
    tap = CameraTap(camera)
    microscope.camera = tap
    return tap
