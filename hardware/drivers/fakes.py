"""One call to get a real driver connected to a fake controller, for tests and demos.

    stage = open_fake_stage("grbl", fault="alarm", fault_after=0.05)
    stage.move_to(x=2000)          # -> DeviceError: GRBL alarm 1 (hard limit triggered) ...
    fake = fake_controller(stage)  # the controller model: fake.arm_fault("reset"), fake.mute()

The driver is the unchanged production class; only the port URL differs. The kinds, their
fakes and their quick test settings (short reply timeout, short GRBL boot, fast polling) are
the device registry's (`slidescan.hardware.registry`), so a test suite stays fast; pass driver
keyword arguments to override them.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

from slidescan.hardware.base import SoftLimits
from slidescan.hardware.drivers.fake_serial import FakeController, FakeSerial
from slidescan.hardware.drivers.serial_stage import SerialStage
from slidescan.hardware.registry import SerialDriver, serial_driver, serial_stage_kinds


def _driver(kind: str) -> SerialDriver:
    try:
        return serial_driver(kind)
    except ValueError:
        known = ", ".join(k.name for k in serial_stage_kinds())
        raise ValueError(f"no fake for {kind!r}; fakes exist for {known}") from None


def fake_url(kind: str, **options: Any) -> str:
    """`fakegrbl://?speedup=2&fault=alarm` and so on."""
    query = urllib.parse.urlencode({k: v for k, v in options.items() if v is not None})
    return _driver(kind).fake_port + (f"?{query}" if query else "")


def open_fake_stage(
    kind: str,
    *,
    limits: SoftLimits | None = None,
    quick: bool = True,
    driver_options: dict[str, Any] | None = None,
    **url_options: Any,
) -> SerialStage:
    """Connect the `kind` driver (a serial stage kind: "grbl", "prior", "asi") to its fake.

    `url_options` become the fake's URL query (speedup, fault, fault_after, and the fake's own
    options); `driver_options` go to the driver's constructor. With `quick`, the kind's quick
    test settings (`SerialDriver.quick_options`, `quick_url_options`) fill in what is not given.
    """
    driver = _driver(kind)
    kwargs = dict(driver.quick_options) if quick else {}
    kwargs.update(driver_options or {})
    if quick:
        url_options = {**driver.quick_url_options, **url_options}
    return driver.connect(fake_url(kind, **url_options), limits=limits, **kwargs)


def _fake_port(stage: SerialStage) -> FakeSerial:
    port = stage.connection.port
    if not isinstance(port, FakeSerial) or port.device is None:
        raise TypeError(f"{stage.connection.url} is not a fake controller")
    return port


def fake_controller(stage: SerialStage) -> FakeController:
    """The fake controller model behind a stage opened on a fake URL."""
    device = _fake_port(stage).device
    assert device is not None
    return device


def halt_controller(stage: SerialStage) -> None:
    """Stop the fake controller's motion at once, as a stop command taking effect would, without
    the driver knowing (tests of what a waiting driver sees before its `stop()` returns)."""
    port = _fake_port(stage)
    with port.controller_lock:
        fake_controller(stage).halt(time.monotonic())
