"""The serial connection: partial reads, CR/LF framing, garbage, lost ports, resync."""

from __future__ import annotations

import pytest
import serial

from slidescan.hardware.drivers.connection import (
    FAKE_PROTOCOL_PACKAGE,
    SerialConnection,
    is_fake_url,
    register_fake_protocols,
)
from slidescan.hardware.errors import ConnectionLost, DeviceError, DeviceTimeout
from slidescan.hardware.registry import fake_schemes


@pytest.fixture
def conn():
    c = SerialConnection("fakeprior://", baudrate=9600, eol=b"\r", timeout_s=0.3, name="test")
    yield c
    c.close()


def test_fake_urls_open_through_serial_for_url():
    register_fake_protocols()  # what opening a fake URL through a SerialConnection does
    register_fake_protocols()  # ... once, however often it is asked
    assert serial.protocol_handler_packages.count(FAKE_PROTOCOL_PACKAGE) == 1
    for scheme in sorted(fake_schemes()):
        port = serial.serial_for_url(f"{scheme}://?speedup=2", baudrate=9600, timeout=0.1)
        assert port.is_open and type(port).__name__.lower().startswith(scheme)
        port.close()


def test_only_the_registered_fake_schemes_count_as_fakes():
    assert is_fake_url("fakegrbl://") and is_fake_url("fakeasi://?speedup=2&fault=mute")
    for url in ("/dev/ttyUSB0", "COM3", "rfc2217://host:4000", "loop://", "fakeness://"):
        assert not is_fake_url(url), url


def test_unknown_url_options_are_refused():
    with pytest.raises(ConnectionLost, match="unknown option"):
        SerialConnection("fakeasi://?colour=red", baudrate=9600, eol=b"\r")


def test_replies_arrive_in_pieces_and_are_reassembled(conn):
    """At 9600 baud a reply trickles in at ~1 ms per byte: reads return partial lines."""
    chunks: list[bytes] = []
    read = conn.port.read

    def spy(size=1):
        data = read(size)
        chunks.append(data)
        return data

    conn.port.read = spy
    conn.write_line("DATE")
    line = conn.read_line()
    assert line.startswith("Prior Scientific Instruments")
    pieces = [c for c in chunks if c]
    assert len(pieces) > 3, "the reply came in one piece: partial reads were not exercised"
    assert any(not c.endswith(b"\r") for c in pieces)


def test_cr_lf_and_crlf_all_end_lines(conn):
    conn.port.device.emit(b"one\rtwo\nthree\r\n\r\nfour\r")
    assert [conn.read_line() for _ in range(4)] == ["one", "two", "three", "four"]


def test_silence_is_a_timeout(conn):
    with pytest.raises(DeviceTimeout, match="no reply within 0.05 s"):
        conn.read_line(0.05)
    assert conn.needs_resync


def test_garbage_is_a_device_error_and_resync_drops_the_rest(conn):
    conn.port.device.inject_garbage(b"\xff\xfe\x01")
    conn.port.device.emit(b"stale reply\r")
    with pytest.raises(DeviceError, match="garbled"):
        conn.read_line()
    conn.resync_if_needed()
    conn.write_line("VERSION")
    assert conn.read_line() == "100"


def test_a_vanished_port_is_connection_lost_for_good(conn):
    conn.port.device.vanish()
    with pytest.raises(ConnectionLost, match="check the cable"):
        conn.write_line("P")
    with pytest.raises(ConnectionLost, match="connection lost"):
        conn.read_line()


def test_a_port_that_does_not_exist_is_connection_lost():
    with pytest.raises(ConnectionLost, match="cannot open serial port"):
        SerialConnection("/dev/does-not-exist-slidescan", baudrate=9600, eol=b"\r")


def test_commands_with_line_ends_are_refused(conn):
    with pytest.raises(ValueError):
        conn.write_line("P\rG,1,2")
