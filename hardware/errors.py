"""Exception hierarchy for every device. Callers catch `HardwareError`; the subclasses say why."""


class HardwareError(Exception):
    """Base of every device failure. The message is one line a person can act on."""


class ConnectionLost(HardwareError):
    """The port vanished, closed, or the controller reset underneath us."""


class DeviceTimeout(HardwareError):
    """The device did not answer, or a move did not finish, within the allowed time."""


class LimitExceeded(HardwareError):
    """A move was refused because the target lies outside the configured soft limits."""


class DeviceError(HardwareError):
    """The device answered with an error (an error code, an alarm, garbage)."""


class NotSupportedError(HardwareError):
    """The device does not offer this operation (for example homing)."""
