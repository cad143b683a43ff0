"""pyserial URL handler for `fakeprior://` (see `fake_prior`)."""

from slidescan.hardware.drivers.fake_prior import FakePriorSerial as Serial

__all__ = ["Serial"]
