"""Real hardware drivers: GRBL, Prior ProScan and ASI stages over serial, OpenCV cameras.

Importing this package changes nothing outside it: the fake controllers' URL schemes
(`fakegrbl://`, `fakeprior://`, `fakeasi://`) are registered with pyserial when a
`SerialConnection` first opens such a URL (`register_fake_protocols` does it by hand).
"""

import logging

from slidescan.hardware.drivers.connection import SerialConnection, register_fake_protocols
from slidescan.hardware.drivers.serial_stage import SerialStage

# Drivers log recoveries as warnings; the application decides where they go (no stderr noise
# from Python's last-resort handler in a command that must print one error line).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["SerialConnection", "SerialStage", "register_fake_protocols"]
