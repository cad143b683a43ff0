"""Devices: stage and camera protocols, serial drivers, the optical simulator, stack replay.

This package knows nothing of focus methods, scans or Qt (DESIGN.md).
"""

from slidescan.hardware.base import (
    AxisCalibration,
    Camera,
    CameraBase,
    Frame,
    Position,
    SoftLimits,
    Stage,
    StageBase,
)
from slidescan.hardware.clock import Clock, RealClock, VirtualClock
from slidescan.hardware.errors import (
    ConnectionLost,
    DeviceError,
    DeviceTimeout,
    HardwareError,
    LimitExceeded,
    NotSupportedError,
)
from slidescan.hardware.optics import OBJECTIVES, Objective, OpticalPath, get_objective

__all__ = [
    "OBJECTIVES",
    "AxisCalibration",
    "Camera",
    "CameraBase",
    "Clock",
    "ConnectionLost",
    "DeviceError",
    "DeviceTimeout",
    "Frame",
    "HardwareError",
    "LimitExceeded",
    "NotSupportedError",
    "Objective",
    "OpticalPath",
    "Position",
    "RealClock",
    "SoftLimits",
    "Stage",
    "StageBase",
    "VirtualClock",
    "get_objective",
]
