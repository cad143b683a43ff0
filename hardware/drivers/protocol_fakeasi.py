"""pyserial URL handler for `fakeasi://` (see `fake_asi`)."""

from slidescan.hardware.drivers.fake_asi import FakeAsiSerial as Serial

__all__ = ["Serial"]
