"""Configuration: defaults, precedence, one-line errors, the example file."""

from __future__ import annotations

import dataclasses
import re
import tomllib
import warnings
from pathlib import Path
from typing import Any

import platformdirs
import pytest

from logd.config import (
    Config,
    ConfigError,
    Layout,
    Limits,
    Listen,
    Retention,
    RotationPolicy,
    default_config,
    load_config,
    parse_config,
)
from logd.config.locations import config_search_path, find_config_file
from logd.config.units import is_loopback_host, parse_duration_s, parse_hostport, parse_size

EXAMPLE = Path(__file__).resolve().parents[3] / "systemd" / "logd.toml.example"
SRC = "/etc/logd/logd.toml"
SYSTEMD_ENV = {"LOGS_DIRECTORY": "/var/log/logd", "RUNTIME_DIRECTORY": "/run/logd"}


@pytest.fixture
def base() -> Config:
    return default_config(SYSTEMD_ENV)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def empty_file(tmp_path: Path) -> str:
    """Naming an empty file keeps a user's or the system's real logd.toml out of the test."""
    return str(write(tmp_path / "empty.toml", ""))


# --------------------------------------------------------------------------- defaults


def test_defaults_under_systemd(base: Config) -> None:
    assert base.root == Path("/var/log/logd")
    assert base.listen == Listen(
        socket=Path("/run/logd/logd.sock"), control=Path("/run/logd/ctl.sock")
    )
    assert base.listen.tcp is None
    assert base.listen.shared_key is None
    assert base.listen.socket_group is None
    for kind in ("run", "session", "call"):
        assert getattr(base.rotation, kind) == RotationPolicy(10 * 1024 * 1024, 3, True)
    assert base.rotation.events == RotationPolicy(100 * 1024 * 1024, 0, True)
    assert base.retention == Retention(
        runs_days=30,
        runs_keep=20,
        calls_days=30,
        sessions_days=7,
        events_days=90,
        max_total_bytes=0,
        interval_s=3600,
    )
    assert base.layout == Layout(utc=False, component_files=True)
    assert base.limits == Limits(
        max_message_bytes=16 * 1024 * 1024,
        max_records=0,
        max_connections=1024,
        idle_timeout_s=300,
        session_idle_s=3600,
        open_files=4096,
        read_ahead_bytes=1024 * 1024,
    )
    assert base.fsync == "batch"
    assert base.config_file is None


def test_systemd_directories_take_the_first_entry() -> None:
    cfg = default_config({"LOGS_DIRECTORY": "/a:/b", "RUNTIME_DIRECTORY": "/r1:/r2"})
    assert cfg.root == Path("/a")
    assert cfg.listen.socket == Path("/r1/logd.sock")


def test_defaults_without_systemd_come_from_platformdirs() -> None:
    cfg = default_config({})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runtime = Path(platformdirs.user_runtime_dir("logd"))
    assert cfg.root == Path(platformdirs.user_log_dir("logd"))
    assert cfg.listen.socket == runtime / "logd.sock"
    assert cfg.listen.control == runtime / "ctl.sock"


# --------------------------------------------------------------------------- precedence


@pytest.mark.parametrize(
    ("key", "env_name", "file_line", "systemd", "default"),
    [
        (
            "root",
            "LOGD_ROOT",
            'root = "/file"',
            {"LOGS_DIRECTORY": "/systemd"},
            lambda cfg: cfg.root,
        ),
        (
            "socket",
            "LOGD_SOCKET",
            '[listen]\nsocket = "/file"',
            {"RUNTIME_DIRECTORY": "/systemd"},
            lambda cfg: cfg.listen.socket,
        ),
        (
            "control",
            "LOGD_CONTROL",
            '[listen]\ncontrol = "/file"',
            {"RUNTIME_DIRECTORY": "/systemd"},
            lambda cfg: cfg.listen.control,
        ),
    ],
)
def test_precedence(
    tmp_path: Path,
    empty_file: str,
    key: str,
    env_name: str,
    file_line: str,
    systemd: dict[str, str],
    default: Any,
) -> None:
    """flag > LOGD_* > file > systemd directories > platformdirs, for each path."""
    conf = str(write(tmp_path / "logd.toml", file_line))
    get = default

    platform = default_config({})
    assert get(load_config(config=empty_file, environ={})) == get(platform)

    got_systemd = get(load_config(config=empty_file, environ=systemd))
    assert str(got_systemd).startswith("/systemd")

    assert get(load_config(config=conf, environ=systemd)) == Path("/file")

    env = {**systemd, env_name: "/env"}
    assert get(load_config(config=conf, environ=env)) == Path("/env")

    assert get(load_config(config=conf, environ=env, **{key: "/flag"})) == Path("/flag")


def test_empty_logd_variable_counts_as_unset(base: Config, empty_file: str) -> None:
    env = {**SYSTEMD_ENV, "LOGD_ROOT": "", "LOGD_SOCKET": ""}
    cfg = load_config(config=empty_file, environ=env)
    assert cfg.root == base.root
    assert cfg.listen.socket == base.listen.socket


def test_config_file_is_recorded_and_applied(tmp_path: Path) -> None:
    conf = write(
        tmp_path / "logd.toml",
        (
            '[limits]\nopen_files = 8\nread_ahead_bytes = "1 MiB"\n'
            '[durability]\nfsync = "always"\n[rotation.call]\nbackups = 1'
        ),
    )
    cfg = load_config(config=str(conf), environ=SYSTEMD_ENV)
    assert cfg.config_file == conf
    assert cfg.limits.open_files == 8
    assert cfg.limits.read_ahead_bytes == 1024 * 1024
    assert cfg.fsync == "always"
    assert cfg.rotation.call == RotationPolicy(10 * 1024 * 1024, 1, True)
    assert cfg.rotation.run == RotationPolicy(10 * 1024 * 1024, 3, True)


def test_tcp_flag_overrides_file(tmp_path: Path) -> None:
    conf = write(tmp_path / "logd.toml", '[listen]\ntcp = "127.0.0.1:1"')
    assert load_config(config=str(conf), environ=SYSTEMD_ENV).listen.tcp == ("127.0.0.1", 1)
    cfg = load_config(config=str(conf), tcp="[::1]:2", environ=SYSTEMD_ENV)
    assert cfg.listen.tcp == ("::1", 2)


# --------------------------------------------------------------------------- finding the file


def test_find_config_file_order(tmp_path: Path) -> None:
    flag = write(tmp_path / "flag.toml", "")
    env_file = write(tmp_path / "env.toml", "")
    sysd = tmp_path / "sysd"
    sysd.mkdir()
    sysd_file = write(sysd / "logd.toml", "")
    environ = {"LOGD_CONFIG": str(env_file), "CONFIGURATION_DIRECTORY": f"{sysd}:/elsewhere"}
    assert find_config_file(str(flag), environ) == flag
    assert find_config_file(None, environ) == env_file
    del environ["LOGD_CONFIG"]
    assert find_config_file(None, environ) == sysd_file


def test_config_search_path() -> None:
    user = Path(platformdirs.user_config_dir("logd")) / "logd.toml"
    assert config_search_path({}) == [user, Path("/etc/logd/logd.toml")]
    assert config_search_path({"CONFIGURATION_DIRECTORY": "/c"}) == [
        Path("/c/logd.toml"),
        user,
        Path("/etc/logd/logd.toml"),
    ]


def test_no_file_found_is_none(tmp_path: Path) -> None:
    if any(p.exists() for p in config_search_path({})):
        pytest.skip("this machine has a real logd.toml")
    assert find_config_file(None, {"CONFIGURATION_DIRECTORY": str(tmp_path)}) is None


@pytest.mark.parametrize(
    ("flag", "environ", "message"),
    [
        ("/nonexistent/logd.toml", {}, "--config /nonexistent/logd.toml: no such file"),
        (
            None,
            {"LOGD_CONFIG": "/nonexistent/x.toml"},
            "LOGD_CONFIG /nonexistent/x.toml: no such file",
        ),
        ("/", {}, "--config /: is not a file"),
    ],
)
def test_named_file_must_exist(flag: str | None, environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        find_config_file(flag, environ)
    assert str(info.value) == message


def test_invalid_toml_is_one_line(tmp_path: Path) -> None:
    conf = write(tmp_path / "bad.toml", "[limits\nopen_files = 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(config=str(conf), environ=SYSTEMD_ENV)
    message = str(info.value)
    assert message.startswith(f"{conf}: invalid TOML: ")
    assert "\n" not in message


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    conf = write(tmp_path / "logd.toml", "[limits]\nopen_files = 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(config=str(conf), environ=SYSTEMD_ENV)
    assert str(info.value) == f"{conf}: [limits] open_files = 0: must be a positive integer"


# --------------------------------------------------------------------------- bad values


POSITIVE = "must be a positive integer"
NON_NEGATIVE = "must be an integer >= 0"
SIZE = f'{POSITIVE} (bytes) or a size like "10 MiB"'
DAYS = 'must be a number of days >= 0 or a duration like "12h"'
SECONDS = 'must be a number of seconds > 0 or a duration like "12h"'
BOOL = "must be true or false"
PATH = "must be a non-empty path"
NAME = "must be a non-empty string"
HOSTPORT = 'must be HOST:PORT like "127.0.0.1:24224"'
FSYNC = 'must be "none", "batch" or "always"'
TOP = (
    "(known: durability, events, forward, layout, limits, listen, retention, root, rotation, "
    "state_dir)"
)
PATTERNS = 'must be a list of event type patterns, like ["conversation:turn"]'

KINDS = "(known: call, events, run, session)"
LIMIT_KEYS = (
    "(known: idle_timeout_s, max_connections, max_message_bytes, max_records, open_files, "
    "read_ahead_bytes, session_idle_s)"
)
LISTEN_KEYS = "(known: control, shared_key, socket, socket_group, tcp)"

BAD_VALUES: list[tuple[dict[str, Any], str]] = [
    ({"rotation": {"run": {"max_bytes": -5}}}, f"[rotation.run] max_bytes = -5: {POSITIVE}"),
    ({"rotation": {"run": {"max_bytes": 0}}}, f"[rotation.run] max_bytes = 0: {POSITIVE}"),
    ({"rotation": {"call": {"max_bytes": "lots"}}}, f'[rotation.call] max_bytes = "lots": {SIZE}'),
    ({"rotation": {"call": {"max_bytes": 1.5}}}, f"[rotation.call] max_bytes = 1.5: {SIZE}"),
    ({"rotation": {"events": {"backups": -1}}}, f"[rotation.events] backups = -1: {NON_NEGATIVE}"),
    ({"rotation": {"run": {"backups": 1.5}}}, f"[rotation.run] backups = 1.5: {NON_NEGATIVE}"),
    ({"rotation": {"run": {"compress": "yes"}}}, f'[rotation.run] compress = "yes": {BOOL}'),
    (
        {"rotation": {"run": {"compres": True}}},
        "[rotation.run] compres: unknown key (known: backups, compress, max_bytes)",
    ),
    ({"rotation": {"daily": {}}}, f"[rotation.daily]: unknown section {KINDS}"),
    ({"rotation": {"max_bytes": 1}}, f"[rotation] max_bytes: unknown key {KINDS}"),
    ({"rotation": {"run": 5}}, "rotation.run = 5: must be a table"),
    ({"rotation": 5}, "rotation = 5: must be a table"),
    ({"listen": "x"}, 'listen = "x": must be a table'),
    ({"bogus": {}}, f"[bogus]: unknown section {TOP}"),
    ({"events": {"off": "debug:*"}}, f'[events] off = "debug:*": {PATTERNS}'),
    ({"events": {"off": ["debug:*", ""]}}, f'[events] off = ["debug:*", ""]: {PATTERNS}'),
    ({"events": {"of": []}}, "[events] of: unknown key (known: off)"),
    ({"rooot": "/x"}, f"rooot: unknown key {TOP}"),
    ({"root": ""}, f'root = "": {PATH}'),
    ({"root": 5}, f"root = 5: {PATH}"),
    ({"listen": {"socket": ["a"]}}, f'[listen] socket = ["a"]: {PATH}'),
    ({"listen": {"sokcet": "/x"}}, f"[listen] sokcet: unknown key {LISTEN_KEYS}"),
    ({"listen": {"tcp": 24224}}, f"[listen] tcp = 24224: must be a string {HOSTPORT[8:]}"),
    ({"listen": {"tcp": "localhost"}}, f'[listen] tcp = "localhost": {HOSTPORT}'),
    (
        {"listen": {"tcp": "::1:24224"}},
        '[listen] tcp = "::1:24224": an IPv6 host must be in brackets, like "[::1]:24224"',
    ),
    (
        {"listen": {"tcp": "host:99999"}},
        '[listen] tcp = "host:99999": the port must be a number from 0 to 65535',
    ),
    ({"listen": {"tcp": "[nope]:1"}}, "[listen] tcp = \"[nope]:1\": 'nope' is not an IPv6 address"),
    ({"listen": {"shared_key": ""}}, f'[listen] shared_key = "": {NAME}'),
    ({"listen": {"socket_group": 0}}, f"[listen] socket_group = 0: {NAME}"),
    ({"retention": {"runs_days": -1}}, f"[retention] runs_days = -1: {DAYS}"),
    ({"retention": {"events_days": "forever"}}, f'[retention] events_days = "forever": {DAYS}'),
    ({"retention": {"sessions_days": True}}, f"[retention] sessions_days = true: {DAYS}"),
    ({"retention": {"calls_days": float("inf")}}, f"[retention] calls_days = Infinity: {DAYS}"),
    ({"retention": {"runs_keep": -3}}, f"[retention] runs_keep = -3: {NON_NEGATIVE}"),
    ({"retention": {"max_total_bytes": -1}}, f"[retention] max_total_bytes = -1: {NON_NEGATIVE}"),
    ({"retention": {"interval_s": 0}}, f"[retention] interval_s = 0: {SECONDS}"),
    ({"layout": {"utc": 1}}, f"[layout] utc = 1: {BOOL}"),
    (
        {"layout": {"component_file": True}},
        "[layout] component_file: unknown key (known: component_files, utc)",
    ),
    ({"limits": {"max_records": -1}}, f"[limits] max_records = -1: {NON_NEGATIVE}"),
    ({"limits": {"max_connections": "10"}}, f'[limits] max_connections = "10": {POSITIVE}'),
    ({"limits": {"idle_timeout_s": -1}}, f"[limits] idle_timeout_s = -1: {SECONDS}"),
    (
        {"limits": {"session_idle_s": "1 fortnight"}},
        f'[limits] session_idle_s = "1 fortnight": {SECONDS}',
    ),
    ({"limits": {"open_files": False}}, f"[limits] open_files = false: {POSITIVE}"),
    (
        {"limits": {"max_message_bytes": "0 MiB"}},
        f'[limits] max_message_bytes = "0 MiB": {POSITIVE}',
    ),
    ({"limits": {"max_ack_wait_s": 3}}, f"[limits] max_ack_wait_s: unknown key {LIMIT_KEYS}"),
    ({"durability": {"fsync": "sometimes"}}, f'[durability] fsync = "sometimes": {FSYNC}'),
    ({"durability": {"fsync": True}}, f"[durability] fsync = true: {FSYNC}"),
    ({"durability": {"sync": "none"}}, "[durability] sync: unknown key (known: fsync)"),
]


@pytest.mark.parametrize(("data", "message"), BAD_VALUES)
def test_bad_values(base: Config, data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source=SRC, base=base)
    assert str(info.value) == f"{SRC}: {message}"
    assert "\n" not in str(info.value)


def test_long_and_multiline_values_stay_on_one_line(base: Config) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"limits": {"open_files": "x\n" * 100}}, source=SRC, base=base)
    message = str(info.value)
    assert "\n" not in message
    assert len(message) < 200


# --------------------------------------------------------------------------- good values


def test_events_off_patterns(base: Config) -> None:
    assert base.events.off == ()
    cfg = parse_config(
        {"events": {"off": ["conversation:turn", " debug:* "]}}, source=SRC, base=base
    )
    assert cfg.events.off == ("conversation:turn", "debug:*")


def test_partial_sections_keep_the_base(base: Config) -> None:
    cfg = parse_config(
        {"retention": {"runs_keep": 5}, "layout": {"utc": True}}, source=SRC, base=base
    )
    assert cfg.retention == dataclasses.replace(base.retention, runs_keep=5)
    assert cfg.layout == Layout(utc=True, component_files=True)
    assert cfg.limits == base.limits
    assert parse_config({}, source=SRC, base=base) == base


def test_fractional_days_and_durations(base: Config) -> None:
    cfg = parse_config(
        {
            "retention": {
                "runs_days": 0.5,
                "calls_days": 0,
                "sessions_days": "12h",
                "events_days": "2w",
                "interval_s": "30m",
            },
            "limits": {"idle_timeout_s": 1.5, "session_idle_s": "1d"},
        },
        source=SRC,
        base=base,
    )
    assert cfg.retention.runs_days == 0.5
    assert cfg.retention.calls_days == 0.0
    assert cfg.retention.sessions_days == 0.5
    assert cfg.retention.events_days == 14.0
    assert cfg.retention.interval_s == 1800.0
    assert cfg.limits.idle_timeout_s == 1.5
    assert cfg.limits.session_idle_s == 86400.0
    assert isinstance(cfg.retention.runs_days, float)


def test_sizes(base: Config) -> None:
    cfg = parse_config(
        {
            "rotation": {"run": {"max_bytes": "10 MiB"}, "events": {"max_bytes": "1GB"}},
            "retention": {"max_total_bytes": "1.5 GiB"},
            "limits": {"max_message_bytes": 1024},
        },
        source=SRC,
        base=base,
    )
    assert cfg.rotation.run.max_bytes == 10 * 1024 * 1024
    assert cfg.rotation.events.max_bytes == 10**9
    assert cfg.retention.max_total_bytes == 3 * 1024**3 // 2
    assert cfg.limits.max_message_bytes == 1024


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("512", 512),
        ("512 B", 512),
        ("4k", 4096),
        ("4 KiB", 4096),
        ("4KB", 4000),
        ("2M", 2 * 1024**2),
        ("2 mb", 2 * 10**6),
        ("1 TiB", 1024**4),
        (" 3G ", 3 * 1024**3),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MiB", "1 parsec", "-1 MiB", "1e3", "1,5 MiB"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("12h", 43200), ("1.5d", 129600), ("2w", 1209600), ("5 m", 300)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "12", "1y", "-1h", "h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration_s(text)


# --------------------------------------------------------------------------- tcp


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:24224", ("127.0.0.1", 24224)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:24224", ("::1", 24224)),
        ("[fe80::1%eth0]:1", ("fe80::1%eth0", 1)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        ("logs.example.com:24224", ("logs.example.com", 24224)),
    ],
)
def test_parse_hostport(text: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "24224", ":24224", "host:", "host:x", "host:-1", "host:65536", "::1:2", "[::1]", "[::1]x"],
)
def test_parse_hostport_rejects(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the reasons differ, the type is the contract
        parse_hostport(text)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize("tcp", ["0.0.0.0:24224", "[::]:24224", "10.1.2.3:1", "example.com:1"])
def test_off_loopback_without_shared_key_is_refused(empty_file: str, tcp: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(config=empty_file, tcp=tcp, environ=SYSTEMD_ENV)
    assert str(info.value) == (
        f'--tcp "{tcp}": logd refuses to listen off loopback without shared_key '
        "(set [listen] shared_key)"
    )


def test_off_loopback_from_file_names_the_file(tmp_path: Path) -> None:
    conf = write(tmp_path / "logd.toml", '[listen]\ntcp = "0.0.0.0:24224"\n')
    with pytest.raises(ConfigError) as info:
        load_config(config=str(conf), environ=SYSTEMD_ENV)
    assert str(info.value).startswith(f'{conf}: [listen] tcp = "0.0.0.0:24224": logd refuses')


def test_off_loopback_with_shared_key_is_allowed(tmp_path: Path) -> None:
    conf = write(tmp_path / "logd.toml", '[listen]\nshared_key = "s3cret"\n')
    cfg = load_config(config=str(conf), tcp="0.0.0.0:24224", environ=SYSTEMD_ENV)
    assert cfg.listen.tcp == ("0.0.0.0", 24224)
    assert cfg.listen.shared_key == "s3cret"


@pytest.mark.parametrize("tcp", ["127.0.0.1:0", "localhost:24224", "[::1]:24224"])
def test_loopback_needs_no_shared_key(empty_file: str, tcp: str) -> None:
    assert load_config(config=empty_file, tcp=tcp, environ=SYSTEMD_ENV).listen.tcp is not None


def test_bad_flag_value(empty_file: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(config=empty_file, tcp="nonsense", environ=SYSTEMD_ENV)
    assert str(info.value) == '--tcp "nonsense": must be HOST:PORT like "127.0.0.1:24224"'


def test_socket_path_too_long(empty_file: str) -> None:
    long_path = "/tmp/" + "s" * 120 + ".sock"
    with pytest.raises(ConfigError) as info:
        load_config(config=empty_file, socket=long_path, environ=SYSTEMD_ENV)
    assert str(info.value).startswith(f'--socket "{long_path[:70]}')
    assert "longer than the 107 a Unix socket path can hold" in str(info.value)
    env = {**SYSTEMD_ENV, "LOGD_CONTROL": long_path}
    with pytest.raises(ConfigError, match=r"^LOGD_CONTROL = "):
        load_config(config=empty_file, environ=env)


# --------------------------------------------------------------------------- example file


def test_example_config_parses_to_the_defaults(base: Config) -> None:
    with EXAMPLE.open("rb") as f:
        data = tomllib.load(f)
    assert parse_config(data, source=str(EXAMPLE), base=base) == base


def test_example_config_mentions_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    keys = {"root", "fsync"}
    for cls in (Listen, RotationPolicy, Retention, Layout, Limits):
        keys |= {f.name for f in dataclasses.fields(cls)}
    missing = [k for k in sorted(keys) if not re.search(rf"^#? ?{k} = ", text, re.MULTILINE)]
    assert missing == []
    sections = ["listen", "retention", "layout", "limits", "durability"]
    sections += [f"rotation.{kind}" for kind in ("run", "session", "call", "events")]
    for section in sections:
        assert f"[{section}]" in text


def test_example_config_loads_as_a_file() -> None:
    cfg = load_config(config=str(EXAMPLE), environ=SYSTEMD_ENV)
    assert cfg.config_file == EXAMPLE
    assert dataclasses.replace(cfg, config_file=None) == default_config(SYSTEMD_ENV)
