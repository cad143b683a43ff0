"""One call to get a real driver connected to a fake controller, for tests and demos.

    stage = open_fake_stage("grbl", fault="alarm", fault_after=0.05)
    stage.move_to(x=2000)          # -> DeviceError: GRBL alarm 1 (hard limit triggered) ...
    fake = fake_controller(stage)  # the controller model: fake.arm_fault("reset"), fake.mute()

The driver is the unchanged production class; only the port URL differs. Defaults are quick
(short reply timeout, short GRBL boot, fast polling where the protocol allows it) so a test
suite stays fast; pass driver keyword arguments to override them.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from slidescan.hardware.base import SoftLimits
from slidescan.hardware.drivers.fake_serial import FakeController
from slidescan.hardware.drivers.serial_stage import SerialStage

FAKE_SCHEMES = {"grbl": "fakegrbl", "prior": "fakeprior", "asi": "fakeasi"}

#: Quick driver settings for tests. GRBL's poll interval is below its 5 Hz production floor
#: (the floor protects a real controller's CPU; the fake has none to protect).
QUICK: dict[str, dict[str, Any]] = {
    "grbl": {"reply_timeout_s": 0.2, "poll_interval_s": 0.02, "boot_timeout_s": 0.5},
    "prior": {"reply_timeout_s": 0.2, "poll_interval_s": 0.05},
    "asi": {"reply_timeout_s": 0.2, "poll_interval_s": 0.01},
}


def fake_url(kind: str, **options: Any) -> str:
    """`fakegrbl://?speedup=2&fault=alarm` and so on."""
    try:
        scheme = FAKE_SCHEMES[kind]
    except KeyError:
        raise ValueError(
            f"no fake for {kind!r}; fakes exist for {', '.join(FAKE_SCHEMES)}"
        ) from None
    query = urllib.parse.urlencode({k: v for k, v in options.items() if v is not None})
    return f"{scheme}://" + (f"?{query}" if query else "")


def open_fake_stage(
    kind: str,
    *,
    limits: SoftLimits | None = None,
    quick: bool = True,
    driver_options: dict[str, Any] | None = None,
    **url_options: Any,
) -> SerialStage:
    """Connect the `kind` driver ("grbl", "prior", "asi") to its fake controller.

    `url_options` become the fake's URL query (speedup, fault, fault_after, and the fake's own
    options); `driver_options` go to the driver's constructor.
    """
    from slidescan.hardware.drivers.asi import AsiStage
    from slidescan.hardware.drivers.grbl import GrblStage
    from slidescan.hardware.drivers.prior import PriorStage

    classes: dict[str, type[SerialStage]] = {
        "grbl": GrblStage,
        "prior": PriorStage,
        "asi": AsiStage,
    }
    kwargs = dict(QUICK[kind]) if quick else {}
    kwargs.update(driver_options or {})
    if kind == "grbl" and quick:
        url_options.setdefault("boot_s", 0.01)
    return classes[kind](fake_url(kind, **url_options), limits=limits, **kwargs)  # type: ignore[call-arg]


def fake_controller(stage: SerialStage) -> FakeController:
    """The fake controller model behind a stage opened on a fake URL."""
    device = getattr(stage.connection.port, "device", None)
    if not isinstance(device, FakeController):
        raise TypeError(f"{stage.connection.url} is not a fake controller")
    return device
