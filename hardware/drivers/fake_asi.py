"""A fake ASI MS-2000 / Tiger controller (`fakeasi://`).

Modelled on the ASI serial command set: commands end in CR, replies in CR LF. Every command
is answered at once: `:A` (plus data) on success, `:N-1` to `:N-7` on failure (1 unknown
command, 2 unrecognised axis, 3 missing parameters, 4 parameter out of range, 5 operation
failed, 6 undefined error, 7 invalid card address). Positions are in tenths of a micron.

- `M X=.. Y=.. Z=..` (MOVE) absolute and `R X=..` (MOVREL) relative moves answer `:A` when
  accepted; a new move replaces the one under way.
- `W X Y Z` (WHERE) -> `:A 1234 5678 90`: in the controller's hardware axis order, whatever the
  order asked for (ASI: "always in the order of the underlying hardware"; on a Tiger the cards'
  order, so Z may come first).
- `/` (STATUS) -> `N` (no motor busy) or `B` (busy); no `:A`.
- `\\` (HALT) stops every axis -> `:A`.
- `V` (VERSION) -> `:A Version: USB-9.2n`.

Options: `xy_speed=U`, `z_speed=U` (tenths of a micron per s, default 70000 and 5000),
`travel=U` (axis travel +-U, default 1e6 = 100 mm), `hardware_order=zxy` (the order WHERE
answers in, default xyz), plus the common ones in `fake_serial`.
"""

from __future__ import annotations

import re
from typing import ClassVar

from slidescan.hardware.drivers.fake_serial import FakeController, FakeSerial, LinearMove

AXES = ("x", "y", "z")
_ARG = re.compile(r"^([A-Z])(?:=([-+]?(?:\d+\.?\d*|\.\d+)))?$")


class _Refused(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


class FakeAsi(FakeController):
    options: ClassVar[dict[str, str]] = {
        "xy_speed": "70000",
        "z_speed": "5000",
        "travel": "1e6",
        "hardware_order": "xyz",
    }

    def __init__(self, opts: dict[str, str], **kw: object) -> None:
        super().__init__(opts, **kw)  # type: ignore[arg-type]
        xy = float(opts.get("xy_speed", "70000")) * self.speedup
        self.speed = {"x": xy, "y": xy, "z": float(opts.get("z_speed", "5000")) * self.speedup}
        self.travel = float(opts.get("travel", "1e6"))
        self.hardware_order = opts.get("hardware_order", "xyz").lower()
        if sorted(self.hardware_order) != sorted(AXES):
            raise ValueError(f"hardware_order must order x, y and z, got {self.hardware_order!r}")
        self.pos = {a: 0.0 for a in AXES}
        self.move: LinearMove | None = None
        self.error_code = 4

    def feed(self, data: bytes, now: float) -> None:
        for raw in self._take_lines(data):
            try:
                self.emit(self._execute(raw.upper(), now) + "\r\n")
            except _Refused as exc:
                self.emit(f":N-{exc.code}\r\n")

    def _execute(self, line: str, now: float) -> str:
        if line in ("/", "STATUS"):
            return "B" if self.is_moving(now) else "N"
        if line in ("\\", "HALT"):
            self.halt(now)
            return ":A"
        cmd, *args = line.split()
        if cmd in ("V", "VERSION"):
            return ":A Version: USB-9.2n"
        if cmd in ("W", "WHERE"):
            if not args:
                raise _Refused(3)
            p = self.current(now)
            if any(arg.lower() not in AXES for arg in args):
                raise _Refused(2)
            asked = {arg.lower() for arg in args}
            values = [f"{p[a]:.0f}" for a in self.hardware_order if a in asked]
            return ":A " + " ".join(values)
        if cmd in ("M", "MOVE", "R", "MOVREL"):
            targets = self._targets(args, relative=cmd in ("R", "MOVREL"), now=now)
            if self._take_error_fault():
                raise _Refused(self.error_code)
            self._start(targets, now)
            return ":A"
        raise _Refused(1)

    def _targets(self, args: list[str], *, relative: bool, now: float) -> dict[str, float]:
        if not args:
            raise _Refused(3)
        base = self.current(now)
        targets = {}
        for arg in args:
            m = _ARG.match(arg)
            if not m or m.group(1).lower() not in AXES:
                raise _Refused(2)
            if m.group(2) is None:
                raise _Refused(3)
            axis, value = m.group(1).lower(), float(m.group(2))
            targets[axis] = base[axis] + value if relative else value
            if abs(targets[axis]) > self.travel:
                raise _Refused(4)
        return targets

    def _start(self, targets: dict[str, float], now: float) -> None:
        start = self.current(now)
        end = {**start, **targets}
        duration = max(abs(end[a] - start[a]) / self.speed[a] for a in AXES)
        self.pos = start
        self.move = LinearMove(now, duration, start, end)
        self._move_started(now)

    def current(self, now: float) -> dict[str, float]:
        return self.move.at(now) if self.move is not None else dict(self.pos)

    def advance(self, now: float) -> None:
        if self.move is not None and self.move.done(now):
            self.pos = dict(self.move.end)
            self.move = None
        self._scheduled_fault_due(now)

    def next_event_at(self) -> float | None:
        return self._earliest([self.move.t_end if self.move else None, self._next_fault_time()])

    def position(self, now: float) -> dict[str, float]:
        self.advance(now)
        return self.current(now)

    def is_moving(self, now: float) -> bool:
        self.advance(now)
        return self.move is not None

    def halt(self, now: float) -> None:
        self.pos = self.current(now)
        self.move = None

    def fail_next_move(self, code: int | None = None) -> None:
        self.error_code = code or 4
        self.arm_fault("error")

    def reset(self) -> None:
        """Power glitch: the move is dropped and positions restart at zero."""
        self.halt(self.clock())
        self.pos = {a: 0.0 for a in AXES}
        self.rx.clear()


class FakeAsiSerial(FakeSerial):
    scheme = "fakeasi"
    controller_class = FakeAsi
