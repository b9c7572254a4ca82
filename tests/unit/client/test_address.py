"""How logd_client finds the daemon: address parsing and the default socket."""

from __future__ import annotations

import os
import socket
import tempfile

import pytest
from logd_client.address import (
    SYSTEM_SOCKET,
    TcpAddress,
    UnixAddress,
    configured_address,
    default_address,
    parse_address,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unix:/run/logd/logd.sock", UnixAddress("/run/logd/logd.sock")),
        ("unix:///run/logd/logd.sock", UnixAddress("/run/logd/logd.sock")),
        ("/tmp/x.sock", UnixAddress("/tmp/x.sock")),
        ("tcp://127.0.0.1:24224", TcpAddress("127.0.0.1", 24224)),
        ("tcp://logs.example:1", TcpAddress("logs.example", 1)),
        ("tcp://[::1]:24224", TcpAddress("::1", 24224)),
    ],
)
def test_parse_address(text: str, expected: object) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "relative.sock", "unix:relative", "tcp://host", "tcp://:1", "tcp://h:0", "tcp://h:x"],
)
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="logd address"):
        parse_address(text)


def test_addresses_print_as_they_parse() -> None:
    for text in ("unix:/a/b.sock", "tcp://h:1", "tcp://[::1]:2"):
        assert str(parse_address(text)) == text


def test_argument_beats_environment() -> None:
    env = {"LOGD_ADDRESS": "tcp://h:1"}
    assert configured_address("unix:/a.sock", env) == UnixAddress("/a.sock")
    assert configured_address(None, env) == TcpAddress("h", 1)
    assert configured_address(None, {}) is None
    with pytest.raises(ValueError, match="LOGD_ADDRESS"):
        configured_address(None, {"LOGD_ADDRESS": "nonsense"})


def test_default_prefers_the_user_socket_when_it_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as runtime_dir:
        monkeypatch.setenv("XDG_RUNTIME_DIR", runtime_dir)
        assert default_address() == UnixAddress(SYSTEM_SOCKET)
        os.mkdir(os.path.join(runtime_dir, "logd"))
        path = os.path.join(runtime_dir, "logd", "logd.sock")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(path)
            assert default_address() == UnixAddress(path)
