"""A fake GRBL 1.1h controller (`fakegrbl://`), close enough to the firmware to catch mistakes.

Modelled from the GRBL 1.1 interface documents (interface.md, jogging.md, commands.md):
- Boot: the board reboots when the port opens; bytes sent before the banner
  `Grbl 1.1h ['$' for help]` are lost. With homing enabled it boots locked in Alarm.
- Serial RX buffer of 128 bytes (127 usable). Bytes sent past it are dropped and counted
  (`overflow_bytes`), which is what real GRBL does to a host that does not count characters.
  `rx_high_water` is the fullest the buffer has been.
- Lines end at LF *or* CR (so a host sending CR LF gets two `ok`s); spaces are ignored; a line
  of 79 or more characters answers `error:11`.
- Every line answers `ok` or `error:N` when the parser takes it, which for motion means
  *queued*, not done. A motion line waits in the RX buffer while the 15-block planner is full.
- Real-time bytes act at once and never enter the buffer: `?` status, `!` hold (cancels a jog),
  `~` resume, 0x18 soft reset, 0x85 jog cancel (flushes the planner, not the RX buffer).
- Status `<State|MPos:x,y,z|FS:f,s>` (or `WPos` with `report=wpos`), with `|WCO:` every 10th
  report and `|Ov:` now and then.
- Homing (`$H`) answers `ok` when the cycle ends; `?` is not answered meanwhile, and a soft
  reset aborts it with `ALARM:6`.
- Alarms: a hard limit (`alarm` fault) stops motion, sends `ALARM:1` and `[MSG:Reset to
  continue]` and ignores lines until a soft reset; G-code is then refused (`error:9`), jogs
  (`error:8`) until `$X` or `$H`. A soft reset in motion gives `ALARM:3`.
- Positions are quantised to motor steps ($100-$102 steps/mm) and reported with 3 decimals.
- Stored startup lines (`startup=`): run after a boot that is not locked and after a homing
  cycle, each echoed as `>LINE:ok` (or `>LINE:error:N`) before anything else; `G20` among them
  leaves the parser in inches, which a jog without its own G21 then follows.

Options: `homing=1` (enables $22 homing and $20 soft limits; boots in Alarm), `report=wpos`
(status reports WPos, the host must add WCO), `boot_s=S` (reboot time after opening, default
0.05 s; a real Arduino takes about 1.5 s), `autoreset=0` (the board does not reboot when the
port opens, so no banner comes), `startup=G20` (stored startup lines, `;`-separated), `home_s=S`
(how long a homing cycle takes, default 0.3 s), plus the common ones in `fake_serial`.
"""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass
from typing import ClassVar

from slidescan.hardware.drivers.fake_serial import (
    COMMON_FAULTS,
    FakeController,
    FakeSerial,
    LinearMove,
    move_duration,
)

BANNER = "Grbl 1.1h ['$' for help]"
AXES = ("x", "y", "z")
RX_BUFFER_SIZE = 128
PLANNER_BLOCKS = 15
LINE_BUFFER_SIZE = 80

DEFAULT_SETTINGS: dict[int, float] = {
    0: 10, 1: 25, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0, 10: 1, 11: 0.010, 12: 0.002, 13: 0,
    20: 0, 21: 0, 22: 0, 23: 0, 24: 25.0, 25: 500.0, 26: 250, 27: 1.0, 30: 1000, 31: 0, 32: 0,
    100: 1000.0, 101: 1000.0, 102: 4000.0,  # steps/mm: 1 um in X and Y, 0.25 um in Z
    110: 1200.0, 111: 1200.0, 112: 300.0,  # max rate, mm/min
    120: 10.0, 121: 10.0, 122: 10.0,  # acceleration, mm/s^2 (not modelled)
    130: 200.0, 131: 200.0, 132: 50.0,  # max travel, mm
}  # fmt: skip
_INT_SETTINGS = {0, 1, 2, 3, 4, 5, 6, 10, 13, 20, 21, 22, 23, 26, 30, 31, 32}
_WORD = re.compile(r"([A-Z])([-+]?(?:\d+\.?\d*|\.\d+))")


@dataclass
class _Block:
    move: LinearMove
    jog: bool
    feed_mm_min: float


class GrblError(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


class _Silent(Exception):
    """The line was taken but GRBL sends nothing for it (it went into an alarm)."""


class FakeGrbl(FakeController):
    faults: ClassVar[tuple[str, ...]] = (*COMMON_FAULTS, "alarm")
    options: ClassVar[dict[str, str]] = {
        "homing": "0",
        "report": "mpos",
        "boot_s": "0.05",
        "autoreset": "1",
        "startup": "",
        "home_s": "0.3",
    }

    def __init__(self, opts: dict[str, str], **kw: object) -> None:
        super().__init__(opts, **kw)  # type: ignore[arg-type]
        self.settings = dict(DEFAULT_SETTINGS)
        if opts.get("homing", "0") not in ("0", ""):
            self.settings[22] = 1
            self.settings[20] = 1
        report = opts.get("report", "mpos")
        if report not in ("mpos", "wpos"):
            raise ValueError(f"report must be mpos or wpos, got {report!r}")
        self.settings[10] = 1 if report == "mpos" else 0
        self.boot_s = float(opts.get("boot_s", "0.05"))
        self.home_s = float(opts.get("home_s", "0.3"))
        self.autoreset = opts.get("autoreset", "1") not in ("0", "")
        self.wco = {"x": 1.5, "y": -2.25, "z": 0.0}  # a G54 work offset, so WPos != MPos
        self.pos = {a: 0.0 for a in AXES}  # machine position in mm at the last block end
        self.blocks: collections.deque[_Block] = collections.deque()
        self.rx = bytearray()
        self.rx_high_water = 0
        self.overflow_bytes = 0
        self.bytes_lost_booting = 0
        self.alarm: int | None = None
        self.critical = False  # after a hard limit: lines wait until a soft reset
        self.hold: dict[str, float] | None = None  # position where a feed hold stopped
        self.homing_until: float | None = None
        self.booted_at: float | None = None
        self.banner_due: float | None = None
        self.status_times: list[float] = []
        self.status_count = 0
        self.absolute = True
        self.inches = False  # G20 modal: coordinates and feeds in inches
        self.startup_lines = [ln for ln in opts.get("startup", "").split(";") if ln.strip()]
        self.modal_feed = 0.0
        self.ok_count = 0
        #: Replace the next `ok` with line noise (the host then loses count of its lines).
        self.corrupt_next_ok = False
        self.error_codes: list[int] = []

    # -- boot --------------------------------------------------------------------------------
    def on_open(self, now: float) -> None:
        if self.autoreset:  # opening the port pulses DTR: the Arduino reboots
            self.banner_due = now + self.boot_s
        else:  # already running (auto-reset disabled, Bluetooth link): no banner
            self.booted_at = now
        self.advance(now)

    def _boot(self, now: float, power_up: bool = True) -> None:
        """Print the banner. At power-up with homing enabled GRBL locks itself (Alarm) until
        homed; a soft reset keeps the state it had (an alarm stays an alarm)."""
        self.banner_due = None
        self.booted_at = now
        self.emit("\r\n" + BANNER + "\r\n")
        if power_up and self.settings[22]:
            self.alarm = self.alarm or 0  # homing lock: Alarm without an alarm code
        if self.alarm is not None:
            self.emit("[MSG:'$H'|'$X' to unlock]\r\n")
        else:
            self._run_startup_lines(now)

    def _run_startup_lines(self, now: float) -> None:
        """GRBL runs its stored lines ($N0, $N1) when it comes up unlocked or after homing."""
        for raw in self.startup_lines:
            line = self._clean(raw)
            try:
                self._gcode(line, now)
            except GrblError as exc:
                self.emit(f">{line}:error:{exc.code}\r\n")
            else:
                self.emit(f">{line}:ok\r\n")

    # -- host bytes --------------------------------------------------------------------------
    def feed(self, data: bytes, now: float) -> None:
        for byte in data:
            if self.booted_at is None:
                self.bytes_lost_booting += 1
                continue
            if byte in b"?!~\x18" or byte >= 0x80:
                self._realtime(byte, now)
                continue
            if len(self.rx) >= RX_BUFFER_SIZE - 1:
                self.overflow_bytes += 1  # ring buffer full: the byte is lost
                continue
            self.rx.append(byte)
            self.rx_high_water = max(self.rx_high_water, len(self.rx))
        self._process(now)

    def _realtime(self, byte: int, now: float) -> None:
        if byte == ord("?"):
            if self.homing_until is not None or self.critical:
                return  # not answered while homing or in a critical alarm (realtime_cmds.md)
            self.status_times.append(now)
            self._report_status(now)
        elif byte == 0x18:
            self._soft_reset(now)
        elif byte == 0x85 or (byte == ord("!") and self._jogging(now)):
            if self._jogging(now):
                self._freeze(now)
                self.blocks.clear()  # the planner only; lines still in RX will run
        elif byte == ord("!"):
            if self.blocks and self.hold is None and self.alarm is None:
                self._freeze(now)
                self.hold = dict(self.pos)
        elif byte == ord("~") and self.hold is not None:
            self.hold = None
            self._replan(now)
        # other extended real-time bytes (overrides, door) are accepted and ignored

    # -- time --------------------------------------------------------------------------------
    def advance(self, now: float) -> None:
        if self.banner_due is not None and now >= self.banner_due:
            self._boot(now)
        while self.blocks and self.hold is None and self.blocks[0].move.done(now):
            self.pos = dict(self.blocks.popleft().move.end)
        if self.homing_until is not None and now >= self.homing_until:
            self.homing_until = None
            self.pos = {a: 0.0 for a in AXES}
            self.alarm = None
            self._run_startup_lines(now)  # before the `ok` of $H, as GRBL does
            self._ok()
        self._scheduled_fault_due(now)
        self._process(now)

    def next_event_at(self) -> float | None:
        block_end = self.blocks[0].move.t_end if self.blocks and self.hold is None else None
        return self._earliest(
            (self.banner_due, block_end, self.homing_until, self._next_fault_time())
        )

    def current(self, now: float) -> dict[str, float]:
        """Machine position (mm) now."""
        if self.hold is None and self.blocks:
            return self.blocks[0].move.at(now)
        return dict(self.pos)

    def position(self, now: float) -> dict[str, float]:
        self.advance(now)
        return self.current(now)

    def is_moving(self, now: float) -> bool:
        self.advance(now)
        return (bool(self.blocks) and self.hold is None) or self.homing_until is not None

    def _jogging(self, now: float) -> bool:
        return bool(self.blocks) and self.blocks[0].jog and self.hold is None

    def state(self, now: float) -> str:
        if self.homing_until is not None:
            return "Home"
        if self.alarm is not None:
            return "Alarm"
        if self.hold is not None:
            return "Hold:0"
        if self.blocks:
            return "Jog" if self.blocks[0].jog else "Run"
        return "Idle"

    def _freeze(self, now: float) -> None:
        self.pos = self.current(now)

    def _replan(self, now: float) -> None:
        """Re-time the queued blocks from the current position (after a hold)."""
        old = list(self.blocks)
        self.blocks.clear()
        for b in old:
            self._queue_block(b.move.end, b.feed_mm_min, b.jog, now)

    # -- line processing -----------------------------------------------------------------------
    def _process(self, now: float) -> None:
        while True:
            if self.critical or self.homing_until is not None or self.booted_at is None:
                return
            ends = [i for i in (self.rx.find(b"\n"), self.rx.find(b"\r")) if i >= 0]
            if not ends:
                return
            i = min(ends)
            raw = bytes(self.rx[:i]).decode("ascii", "replace")
            if self._is_motion(raw) and len(self.blocks) >= PLANNER_BLOCKS:
                return  # planner full: the line waits in the RX buffer
            del self.rx[: i + 1]
            self.lines_received.append(raw)
            self._execute(raw, now)

    @staticmethod
    def _clean(raw: str) -> str:
        line = re.sub(r"\([^)]*\)", "", raw.split(";", 1)[0])
        return line.replace(" ", "").replace("\t", "").upper()

    def _is_motion(self, raw: str) -> bool:
        line = self._clean(raw)
        return line.startswith("$J=") or bool(re.search(r"[XYZ][-+.\d]", line))

    def _execute(self, raw: str, now: float) -> None:
        line = self._clean(raw)
        try:
            if len(line) >= LINE_BUFFER_SIZE - 1:
                raise GrblError(11)
            if not line:
                pass
            elif line.startswith("$"):
                self._system(line, now)
                if line == "$H":
                    return  # ok comes when homing ends
            else:
                self._gcode(line, now)
        except GrblError as exc:
            self.error_codes.append(exc.code)
            self.emit(f"error:{exc.code}\r\n")
            return
        except _Silent:
            return
        self._ok()

    def _ok(self) -> None:
        self.ok_count += 1
        if self.corrupt_next_ok:  # line noise hit this reply
            self.corrupt_next_ok = False
            self.inject_garbage()
            return
        self.emit("ok\r\n")

    def _system(self, line: str, now: float) -> None:
        if line == "$":
            self.emit("[HLP:$$ $# $G $I $N $x=val $Nx=line $J=line $SLP $C $X $H ~ ! ? ctrl-x]\r\n")
        elif line == "$$":
            for k, v in self.settings.items():
                self.emit(f"${k}={int(v) if k in _INT_SETTINGS else f'{v:.3f}'}\r\n")
        elif line == "$I":
            self.emit(f"[VER:1.1h.20190825:]\r\n[OPT:V,{PLANNER_BLOCKS},{RX_BUFFER_SIZE}]\r\n")
        elif line == "$G":
            mode = "G90" if self.absolute else "G91"
            units = "G20" if self.inches else "G21"
            self.emit(f"[GC:G0 G54 G17 {units} {mode} G94 M5 M9 T0 F{self.modal_feed:.0f} S0]\r\n")
        elif line == "$#":
            w = self.wco
            self.emit(f"[G54:{w['x']:.3f},{w['y']:.3f},{w['z']:.3f}]\r\n")
        elif line == "$X":
            if self.alarm is not None:
                self.alarm = None
                self.emit("[MSG:Caution: Unlocked]\r\n")
        elif line == "$H":
            if not self.settings[22]:
                raise GrblError(5)
            if self.blocks:
                raise GrblError(8)
            self.homing_until = now + self.home_s / self.speedup
        elif line.startswith("$J="):
            self._jog(line[3:], now)
        elif re.fullmatch(r"\$\d+=[-+.\d]+", line):
            key, value = line[1:].split("=")
            if int(key) not in self.settings:
                raise GrblError(3)
            self.settings[int(key)] = float(value)
        else:
            raise GrblError(3)

    @staticmethod
    def _words(line: str) -> list[tuple[str, float]]:
        """Split 'G53X1.5F600' into words; error:1 (no letter) or error:2 (bad number)."""
        words = []
        pos = 0
        for m in _WORD.finditer(line):
            if m.start() != pos:
                break
            words.append((m.group(1), float(m.group(2))))
            pos = m.end()
        if pos != len(line):
            raise GrblError(2 if line[pos].isalpha() else 1)
        return words

    def _target(self, words: list[tuple[str, float]], machine: bool, absolute: bool) -> dict:
        base = self.blocks[-1].move.end if self.blocks else self.pos
        target = dict(base)
        for letter, value in words:
            axis = letter.lower()
            if axis in AXES:
                if machine:
                    target[axis] = value
                elif absolute:
                    target[axis] = value + self.wco[axis]
                else:
                    target[axis] = base[axis] + value
        return target

    def _jog(self, body: str, now: float) -> None:
        if (
            self.alarm is not None
            or self.hold is not None
            or (self.blocks and not self.blocks[0].jog)
        ):
            raise GrblError(8)
        words = self._words(body)
        machine, absolute, feed, inches = False, self.absolute, None, self.inches
        for letter, value in words:
            if letter == "G":
                if value == 53:
                    machine = True
                elif value == 90:
                    absolute = True
                elif value == 91:
                    absolute = False
                elif value in (20, 21):
                    inches = value == 20  # for this jog only (jogging.md)
                else:
                    raise GrblError(16)
            elif letter == "F":
                feed = value
            elif letter.lower() not in AXES:
                raise GrblError(16)
        if feed is None or feed <= 0:
            raise GrblError(22)
        if inches:
            words = [(ltr, v * 25.4 if ltr != "G" else v) for ltr, v in words]
            feed *= 25.4
        target = self._target(words, machine, absolute)
        if self._take_error_fault():
            raise GrblError(15)
        self._check_travel(target, jog=True, now=now)
        self._queue_block(target, feed, True, now)

    def _gcode(self, line: str, now: float) -> None:
        if self.alarm is not None:
            raise GrblError(9)
        words = self._words(line)
        motion, machine, absolute, feed = None, False, self.absolute, self.modal_feed
        dwell = False
        for letter, value in words:
            if letter == "G":
                if value in (0, 1):
                    motion = int(value)
                elif value == 53:
                    machine = True
                elif value in (90, 91):
                    absolute = value == 90
                    self.absolute = absolute
                elif value == 4:
                    dwell = True
                elif value in (20, 21):
                    self.inches = value == 20
                elif value not in (17, 54, 94):
                    raise GrblError(20)
            elif letter == "F":
                feed = value
                self.modal_feed = value
            elif letter == "M":
                if value not in (0, 2, 5, 9, 30):
                    raise GrblError(20)
            elif letter == "P" and dwell:
                pass
            elif letter.lower() not in AXES:
                raise GrblError(20)
        if any(letter.lower() in AXES for letter, _ in words):
            if motion is None:
                motion = 0
            if motion == 1 and feed <= 0:
                raise GrblError(22)
            if self._take_error_fault():
                raise GrblError(33)
            target = self._target(words, machine, absolute)
            rate = min(self.settings[110 + i] for i in range(3)) if motion == 0 else feed
            self._check_travel(target, jog=False, now=now)
            self._queue_block(target, rate, False, now)

    def _check_travel(self, target: dict[str, float], *, jog: bool, now: float) -> None:
        if not self.settings[20]:
            return
        for i, axis in enumerate(AXES):
            if not -self.settings[130 + i] <= target[axis] <= 0.0:
                if jog:
                    raise GrblError(15)
                self._alarm(2, now)  # G-code past the travel: soft-limit alarm, reset needed
                self.critical = True
                self.emit("[MSG:Reset to continue]\r\n")
                raise _Silent

    def _queue_block(self, target: dict[str, float], feed_mm_min: float, jog: bool, now: float):
        steps = [self.settings[100 + i] for i in range(3)]
        end = {a: round(target[a] * s) / s for a, s in zip(AXES, steps, strict=True)}
        start = self.blocks[-1].move.end if self.blocks else self.current(now)
        t0 = self.blocks[-1].move.t_end if self.blocks else now
        speed = feed_mm_min / 60.0 * self.speedup  # mm/s
        move = LinearMove(t0, move_duration(start, end, speed), start, end)
        if not self.blocks:
            self._move_started(now)
        self.blocks.append(_Block(move, jog, feed_mm_min))

    # -- reports -----------------------------------------------------------------------------
    def _report_status(self, now: float) -> None:
        self.advance(now)
        m = self.current(now)
        if self.settings[10]:
            pos = "MPos:" + ",".join(f"{m[a]:.3f}" for a in AXES)
        else:
            pos = "WPos:" + ",".join(f"{m[a] - self.wco[a]:.3f}" for a in AXES)
        feed = self.blocks[0].feed_mm_min if self.blocks and self.hold is None else 0.0
        extra = ""
        if self.status_count % 10 == 0:
            extra = "|WCO:" + ",".join(f"{self.wco[a]:.3f}" for a in AXES)
        elif self.status_count % 10 == 5:
            extra = "|Ov:100,100,100"
        self.status_count += 1
        self.emit(f"<{self.state(now)}|{pos}|FS:{feed:.0f},0{extra}>\r\n")

    # -- faults ------------------------------------------------------------------------------
    def _alarm(self, code: int, now: float) -> None:
        self._freeze(now)
        self.blocks.clear()
        self.hold = None
        self.alarm = code
        self.emit(f"ALARM:{code}\r\n")

    def trigger_alarm(self, code: int = 1) -> None:
        """A hard limit switch trips: motion stops, `ALARM:1`, and GRBL waits for a reset."""
        now = self.clock()
        self._alarm(code, now)
        self.critical = True
        self.emit("[MSG:Reset to continue]\r\n")

    def trigger(self, kind: str) -> None:
        if kind == "alarm":
            self.trigger_alarm(1)
        else:
            super().trigger(kind)

    def _soft_reset(self, now: float) -> None:
        if self.homing_until is not None:  # reset during homing: ALARM:6, homing failed
            self.homing_until = None
            self.alarm = 6
            self.emit("ALARM:6\r\n")
        moving = bool(self.blocks) and self.hold is None
        self._freeze(now)
        self.blocks.clear()
        self.hold = None
        self.homing_until = None
        self.rx.clear()
        self.critical = False
        self.inches, self.absolute = False, True  # a reset restores the parser's defaults
        if moving:
            self.alarm = 3
            self.emit("ALARM:3\r\n")
        self._boot(now, power_up=False)

    def halt(self, now: float) -> None:
        self._freeze(now)
        self.blocks.clear()
        self.hold = None

    def fail_next_move(self, code: int | None = None) -> None:
        self.arm_fault("error")

    def reset(self) -> None:
        """Power glitch: the board restarts from scratch, machine position back to zero."""
        now = self.clock()
        self.halt(now)
        self.pos = {a: 0.0 for a in AXES}
        self.rx.clear()
        self.critical = False
        self.homing_until = None
        self.alarm = None
        self.booted_at = None
        self._boot(now)


class FakeGrblSerial(FakeSerial):
    scheme = "fakegrbl"
    controller_class = FakeGrbl
