"""A fake Prior ProScan III controller (`fakeprior://`).

Modelled on the ProScan III command set in standard mode (`COMP,0`): CR-terminated lines
both ways; arguments separated by commas (spaces, tabs, '=' and ';' also accepted).

- Motion: `G,x,y[,z]` absolute, `GR,dx,dy[,dz]` relative, `GX,x` / `GY,y`, `GZ,z` and `V,z`
  absolute Z, `U,n` / `D,n` relative Z. A move sends nothing when accepted and `R` when it
  *finishes*; XY and Z run independently, each queueing moves in order. Other commands are
  answered at once, so their replies overtake a pending `R`.
- Queries: `P` -> `x,y,z`; `PX`, `PY`, `PZ`; `$` -> bit mask of moving axes (1 X, 2 Y, 4 Z;
  higher bits are the controller's other axes: filter wheels, shutters);
  `VERSION` -> `100`; `DATE` -> a firmware string; `SERIAL`; `?` -> an info block ending `END`.
- `I` (stop, decelerating) and `K` (kill) stop everything and answer `R`; the moves they cut
  short send no `R` of their own.
- `COMP,n` and `ERROR,n` answer `0`. In compatibility mode (`COMP,1`, the state the controller
  may have been left in) motion replies come at once instead of at the end, which a driver
  that forgot `COMP,0` would mistake for arrival.
- `RES,s` / `RES,z` -> the size of one controller unit in um, XY and Z (`1.000000`).
- Errors: `E,n` (4 string parse, 5 command not found, 8 value out of range).
- Positions are integers in controller units (steps or microns, per the controller's RES).

Options: `comp=1` (start in compatibility mode), `xy_speed=U` and `z_speed=U` (units/s,
default 10000 and 1000), `res_s=R` and `res_z=R` (um per unit, default 1; `none`: an old
controller that knows no RES), `other_axes=N` (bits 8 and up of `$` that are always set: a filter
wheel that never settles), plus the common ones in `fake_serial`.
"""

from __future__ import annotations

import collections
import re
from typing import ClassVar

from slidescan.hardware.drivers.fake_serial import (
    FakeController,
    FakeSerial,
    LinearMove,
    move_duration,
)

_SPLIT = re.compile(r"[,\s=;]+")


class _Channel:
    """One independently moving axis group (XY or Z) with its queue of targets."""

    def __init__(self, axes: tuple[str, ...], speed: float) -> None:
        self.axes = axes
        self.speed = speed
        self.pos = {a: 0 for a in axes}
        self.move: LinearMove | None = None
        self.queue: collections.deque[dict[str, int]] = collections.deque()

    def current(self, now: float) -> dict[str, int]:
        if self.move is None:
            return dict(self.pos)
        return {a: int(round(v)) for a, v in self.move.at(now).items()}

    def last_target(self) -> dict[str, int]:
        if self.queue:
            return dict(self.queue[-1])
        if self.move is not None:
            return {a: int(v) for a, v in self.move.end.items()}
        return dict(self.pos)


class FakePrior(FakeController):
    options: ClassVar[dict[str, str]] = {
        "comp": "0",
        "xy_speed": "10000",
        "z_speed": "1000",
        "other_axes": "0",
        "res_s": "1",
        "res_z": "1",
    }

    def __init__(self, opts: dict[str, str], **kw: object) -> None:
        super().__init__(opts, **kw)  # type: ignore[arg-type]
        self.comp = opts.get("comp", "0") == "1"
        self.xy = _Channel(("x", "y"), float(opts.get("xy_speed", "10000")) * self.speedup)
        self.z = _Channel(("z",), float(opts.get("z_speed", "1000")) * self.speedup)
        self.commands: list[str] = []
        self.other_axes = int(opts.get("other_axes", "0")) << 3
        self.res = {"S": opts.get("res_s", "1"), "Z": opts.get("res_z", "1")}

    # -- host bytes ------------------------------------------------------------------------------
    def feed(self, data: bytes, now: float) -> None:
        for raw in self._take_lines(data):
            self._execute(raw, now)

    def _reply(self, text: str) -> None:
        self.emit(text + "\r")

    def _execute(self, line: str, now: float) -> None:
        parts = [p for p in _SPLIT.split(line.upper()) if p]
        cmd, args = parts[0], parts[1:]
        self.commands.append(cmd)
        if cmd == "RES" and len(args) == 1 and args[0] in self.res:
            res = self.res[args[0]]
            self._reply("E,5" if res == "none" else f"{float(res):.6f}")
            return
        try:
            values = [int(a) for a in args]
        except ValueError:
            self._reply("E,4")
            return
        handler = getattr(self, f"_cmd_{_NAMES.get(cmd, cmd)}", None)
        if handler is None:
            self._reply("E,5")
            return
        handler(values, now)

    # queries
    def _cmd_P(self, v: list[int], now: float) -> None:
        p = {**self.xy.current(now), **self.z.current(now)}
        self._reply(f"{p['x']},{p['y']},{p['z']}")

    def _cmd_PX(self, v: list[int], now: float) -> None:
        self._reply(str(self.xy.current(now)["x"]))

    def _cmd_PY(self, v: list[int], now: float) -> None:
        self._reply(str(self.xy.current(now)["y"]))

    def _cmd_PZ(self, v: list[int], now: float) -> None:
        self._reply(str(self.z.current(now)["z"]))

    def _cmd_DOLLAR(self, v: list[int], now: float) -> None:
        mask = (3 if self.xy.move else 0) | (4 if self.z.move else 0) | self.other_axes
        self._reply(str(mask))

    def _cmd_VERSION(self, v: list[int], now: float) -> None:
        self._reply("100")

    def _cmd_DATE(self, v: list[int], now: float) -> None:
        self._reply("Prior Scientific Instruments ProScan III Controller (fake) v1.00")

    def _cmd_SERIAL(self, v: list[int], now: float) -> None:
        self._reply("12345")

    def _cmd_QUESTION(self, v: list[int], now: float) -> None:
        for line in ("PROSCAN INFORMATION", "STAGE = H101/2", "FOCUS = NORMAL", "END"):
            self._reply(line)

    def _cmd_COMP(self, v: list[int], now: float) -> None:
        if v:
            self.comp = v[0] == 1
            self._reply("0")
        else:
            self._reply("1" if self.comp else "0")

    def _cmd_ERROR(self, v: list[int], now: float) -> None:
        self._reply("0")

    # motion
    def _start(self, channel: _Channel, target: dict[str, int], now: float) -> None:
        if self._take_error_fault():
            self._reply("E,8")
            return
        channel.queue.append(target)
        self.advance(now)
        if self.comp:  # compatibility mode answers at once
            self._reply("R")

    def _xy(self, x: int | None, y: int | None, now: float) -> None:
        base = self.xy.last_target()
        target = {"x": base["x"] if x is None else x, "y": base["y"] if y is None else y}
        self._start(self.xy, target, now)

    def _z(self, z: int, now: float) -> None:
        self._start(self.z, {"z": z}, now)

    def _cmd_G(self, v: list[int], now: float) -> None:
        if len(v) < 2:
            self._reply("E,4")
            return
        self._xy(v[0], v[1], now)
        if len(v) > 2:
            self._z(v[2], now)

    def _cmd_GR(self, v: list[int], now: float) -> None:
        if len(v) < 2:
            self._reply("E,4")
            return
        base = self.xy.last_target()
        self._xy(base["x"] + v[0], base["y"] + v[1], now)
        if len(v) > 2:
            self._z(self.z.last_target()["z"] + v[2], now)

    def _cmd_GX(self, v: list[int], now: float) -> None:
        if not v:
            self._reply("E,4")
        else:
            self._xy(v[0], None, now)

    def _cmd_GY(self, v: list[int], now: float) -> None:
        if not v:
            self._reply("E,4")
        else:
            self._xy(None, v[0], now)

    def _cmd_GZ(self, v: list[int], now: float) -> None:
        if not v:
            self._reply("E,4")
        else:
            self._z(v[0], now)

    def _cmd_U(self, v: list[int], now: float) -> None:
        self._z(self.z.last_target()["z"] + (v[0] if v else 100), now)

    def _cmd_D(self, v: list[int], now: float) -> None:
        self._z(self.z.last_target()["z"] - (v[0] if v else 100), now)

    def _cmd_I(self, v: list[int], now: float) -> None:
        self.halt(now)
        self._reply("R")

    _cmd_K = _cmd_I

    # -- time ------------------------------------------------------------------------------------
    def advance(self, now: float) -> None:
        for ch in (self.xy, self.z):
            while True:
                if ch.move is not None and ch.move.done(now):
                    ch.pos = {a: int(v) for a, v in ch.move.end.items()}
                    t_end = ch.move.t_end
                    ch.move = None
                    if not self.comp:
                        self._reply("R")
                    start_t = t_end
                elif ch.move is None:
                    start_t = now
                else:
                    break
                if not ch.queue:
                    break
                target = ch.queue.popleft()
                start = {a: float(ch.pos[a]) for a in ch.axes}
                end = {a: float(target[a]) for a in ch.axes}
                ch.move = LinearMove(start_t, move_duration(start, end, ch.speed), start, end)
                self._move_started(now)
        self._scheduled_fault_due(now)

    def next_event_at(self) -> float | None:
        ends = [ch.move.t_end for ch in (self.xy, self.z) if ch.move is not None]
        return self._earliest([*ends, self._next_fault_time()])

    def is_moving(self, now: float) -> bool:
        self.advance(now)
        return self.xy.move is not None or self.z.move is not None

    def position(self, now: float) -> dict[str, float]:
        self.advance(now)
        return {a: float(v) for a, v in {**self.xy.current(now), **self.z.current(now)}.items()}

    # -- faults ----------------------------------------------------------------------------------
    def halt(self, now: float) -> None:
        for ch in (self.xy, self.z):
            ch.pos = ch.current(now)
            ch.move = None
            ch.queue.clear()

    def fail_next_move(self, code: int | None = None) -> None:
        self.arm_fault("error")

    def reset(self) -> None:
        """Power glitch: moves are dropped without `R`, positions restart at zero."""
        self.halt(self.clock())
        for ch in (self.xy, self.z):
            ch.pos = {a: 0 for a in ch.axes}
        self.rx.clear()


_NAMES = {"$": "DOLLAR", "?": "QUESTION", "V": "GZ"}


class FakePriorSerial(FakeSerial):
    scheme = "fakeprior"
    controller_class = FakePrior
