"""Exception hierarchy for every device. Callers catch `HardwareError`; the subclasses say why."""


class HardwareError(Exception):
    """Base of every device failure. The message is one line a person can act on."""


class ConnectionLost(HardwareError):
    """The port vanished, closed, or the controller reset underneath us."""


class DeviceTimeout(HardwareError):
    """The device did not answer, or a move did not finish, within the allowed time."""


class LimitExceeded(HardwareError):
    """A move or a setting was refused: its target lies outside the soft limits or the
    device's range."""


class DeviceError(HardwareError):
    """The device answered with an error (an error code, an alarm, garbage)."""


class NotSupportedError(HardwareError):
    """The device does not offer this operation (for example homing)."""
