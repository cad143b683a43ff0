"""pyserial URL handler for `fakegrbl://` (see `fake_grbl`)."""

from slidescan.hardware.drivers.fake_grbl import FakeGrblSerial as Serial

__all__ = ["Serial"]
