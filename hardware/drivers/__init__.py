"""Real hardware drivers: GRBL, Prior ProScan and ASI stages over serial, OpenCV cameras.

Importing this package registers the fake controllers' URL schemes (`fakegrbl://`,
`fakeprior://`, `fakeasi://`) with pyserial, so `serial.serial_for_url` and every driver here
can open them like a real port.
"""

import logging

from slidescan.hardware.drivers.connection import SerialConnection, register_fake_protocols
from slidescan.hardware.drivers.serial_stage import SerialStage

register_fake_protocols()
# Drivers log recoveries as warnings; the application decides where they go (no stderr noise
# from Python's last-resort handler in a command that must print one error line).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["SerialConnection", "SerialStage", "register_fake_protocols"]
