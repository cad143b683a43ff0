"""Let the live view show the frames a scan takes.

During a scan the camera's live stream is stopped (the scan owns the camera), yet a person
wants to watch the tiles and focus shots go by. `CameraTap` wraps the microscope's camera: it
forwards everything, and remembers the last frame `snap()` returned, so `latest_frame()` gives
the newest of the stream's frames and the scan's snaps. Install it once per microscope with
`install_tap(microscope)`.

`streaming` is declared by `CameraBase` only (the `Camera` protocol does not have it): the tap
answers it from the camera's type, False for a camera that does not declare it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slidescan.hardware.base import Camera, CameraBase, Frame

if TYPE_CHECKING:
    from slidescan.hardware.microscope import Microscope

_OWN = ("_camera", "_last")


class CameraTap:
    def __init__(self, camera: Camera) -> None:
        object.__setattr__(self, "_camera", camera)
        object.__setattr__(self, "_last", None)

    @property
    def wrapped(self) -> Camera:
        return self._camera

    @property
    def streaming(self) -> bool:
        """Whether the camera's live stream runs (cameras built on `CameraBase` say so)."""
        return isinstance(self._camera, CameraBase) and self._camera.streaming

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


def install_tap(microscope: Microscope) -> CameraTap:
    """Wrap `microscope.camera` in a `CameraTap` (once) and return the tap."""
    camera = microscope.camera
    if isinstance(camera, CameraTap):
        return camera
    tap = CameraTap(camera)
    microscope.camera = tap  # type: ignore[assignment]  # a Camera by delegation
    return tap
