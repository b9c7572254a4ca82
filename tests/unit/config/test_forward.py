"""`[[forward]]` and `state_dir` configuration: defaults, validation, one-line errors."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from logd.config import (
    Config,
    ConfigError,
    default_config,
    load_config,
    parse_config,
)
from logd.config.forward import Forward, ForwardMatch

EXAMPLE = Path(__file__).resolve().parents[3] / "systemd" / "logd.toml.example"
SRC = "/etc/logd/logd.toml"


@pytest.fixture
def base() -> Config:
    return default_config({"LOGS_DIRECTORY": "/var/log/logd", "STATE_DIRECTORY": "/var/lib/logd"})


def parse(text: str, base: Config) -> Config:
    return parse_config(tomllib.loads(text), source=SRC, base=base)


def test_state_dir_from_systemd_then_file(base: Config) -> None:
    assert base.state_dir == Path("/var/lib/logd")
    assert default_config({"STATE_DIRECTORY": "/a:/b"}).state_dir == Path("/a")
    assert parse('state_dir = "/srv/logd"', base).state_dir == Path("/srv/logd")
    assert base.forward == ()


def test_state_dir_without_systemd_is_platformdirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "/home/u/.local/state")
    assert default_config({}).state_dir == Path("/home/u/.local/state/logd")


def test_forward_defaults(base: Config) -> None:
    cfg = parse('[[forward]]\ntype = "fluent"\nhost = "agg"\n', base)
    assert cfg.forward == (Forward(name="fluent1", type="fluent", host="agg", port=24224),)
    out = cfg.forward[0]
    assert out.tag == "logd.{app}.{kind}"
    assert (out.buffer_max_bytes, out.batch_records, out.retry_max_s) == (256 << 20, 1000, 60)
    assert out.match == ForwardMatch(events_only=False, min_levelno=0, apps=())


def test_forward_every_key(base: Config) -> None:
    cfg = parse(
        """
        [[forward]]
        type = "fluent"
        name = "agg"
        host = "10.0.0.5"
        port = 24225
        tag = "fleet.{app}.{logger}"
        shared_key = "s3cret"
        compress = true
        events_only = true
        buffer_max_bytes = "64 MiB"
        batch_records = 500
        retry_max_s = "2m"
        timeout_s = 10

        [[forward]]
        type = "syslog"
        host = "[::1]"
        facility = "local3"
        utf8_bom = true
        confirm_s = 0
        [forward.match]
        min_level = "warning"
        apps = ["voice", "billing"]
        """,
        base,
    )
    agg, sys_out = cfg.forward
    assert agg == Forward(
        name="agg",
        type="fluent",
        host="10.0.0.5",
        port=24225,
        tag="fleet.{app}.{logger}",
        shared_key="s3cret",
        compress=True,
        match=ForwardMatch(events_only=True),
        buffer_max_bytes=64 << 20,
        batch_records=500,
        retry_max_s=120.0,
        timeout_s=10.0,
    )
    assert (sys_out.name, sys_out.host, sys_out.port) == ("syslog2", "::1", 514)
    assert (sys_out.facility, sys_out.utf8_bom, sys_out.confirm_s) == (19, True, 0.0)
    assert sys_out.match == ForwardMatch(min_levelno=30, apps=("voice", "billing"))


BAD: list[tuple[str, str]] = [
    ("forward = 1", r"forward = 1: must be an array of tables"),
    ("[[forward]]\nhost = 'h'", r'\[\[forward\]\] #1 type = null: must be "fluent" or "syslog"'),
    ("[[forward]]\ntype = 'kafka'\nhost = 'h'", r'#1 type = "kafka": must be "fluent" or'),
    ("[[forward]]\ntype = 'fluent'", r"#1 host: missing"),
    ("[[forward]]\ntype = 'fluent'\nhost = 'h'\nport = 70000", r"#1 port = 70000: must be a port"),
    ("[[forward]]\ntype = 'fluent'\nhost = 'a b'", r'#1 host = "a b": must be a host'),
    ("[[forward]]\ntype = 'fluent'\nhost = 'h'\nprot = 1", r"#1 prot: unknown key \(known: "),
    ("[[forward]]\ntype = 'syslog'\nhost = 'h'\ntag = 'x'", r'#1 tag: only for type = "fluent"'),
    (
        "[[forward]]\ntype = 'fluent'\nhost = 'h'\nfacility = 'user'",
        r'#1 facility: only for type = "syslog"',
    ),
    ("[[forward]]\ntype = 'fluent'\nhost = 'h'\ntag = 'a.{host}'", r"placeholders are \{app\}"),
    ("[[forward]]\ntype = 'fluent'\nhost = 'h'\ntag = 'a.{app!r}'", r"placeholders are"),
    ("[[forward]]\ntype = 'fluent'\nhost = 'h'\ntag = 'a.{'", r"not a template"),
    ("[[forward]]\ntype = 'fluent'\nhost = 'h'\nname = '../x'", r'name = "../x": must be 1-64'),
    (
        "[[forward]]\ntype = 'fluent'\nhost = 'h'\n[[forward]]\ntype = 'syslog'\nhost = 'h'\n"
        "name = 'fluent1'",
        r'#2 name = "fluent1": another output has that name',
    ),
    ("[[forward]]\ntype = 'syslog'\nhost = 'h'\nfacility = 'mars'", r"must be a syslog facility"),
    ("[[forward]]\ntype = 'fluent'\nhost = 'h'\nmin_level = 'LOUD'", r"must be a level name"),
    ("[[forward]]\ntype = 'fluent'\nhost = 'h'\napps = 'x'", r"must be a list of app names"),
    ("[[forward]]\ntype = 'fluent'\nhost = 'h'\nbatch_records = 0", r"must be a positive"),
    ("[[forward]]\ntype = 'fluent'\nhost = 'h'\nbuffer_max_bytes = 10", r"must be a positive"),
    ("[[forward]]\ntype = 'fluent'\nhost = 'h'\nretry_max_s = 0", r"retry_max_s = 0: must be"),
    (
        "[[forward]]\ntype = 'fluent'\nhost = 'h'\nevents_only = true\n[forward.match]\n"
        "events_only = false",
        r"#1 match.events_only: given twice",
    ),
    (
        "[[forward]]\ntype = 'fluent'\nhost = 'h'\n[forward.match]\nlevel = 'INFO'",
        r"#1 match.level: unknown key \(known: apps, events_only, min_level\)",
    ),
    ("state_dir = ''", r"state_dir = \"\": must be a non-empty path"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_forward_errors_are_one_line_naming_file_key_value(
    base: Config, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text, base)
    text_of_error = str(info.value)
    assert text_of_error.startswith(f"{SRC}: ")
    assert "\n" not in text_of_error
    assert re.search(message, text_of_error), text_of_error


def test_example_mentions_every_forward_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    keys = {f.name for f in dataclasses.fields(Forward)} - {"match"}
    keys |= {"events_only", "min_level", "apps", "state_dir"}
    keys = {"min_level" if k == "min_levelno" else k for k in keys}
    missing = [k for k in sorted(keys) if not re.search(rf"^# ?{k} = ", text, re.MULTILINE)]
    assert missing == []
    assert "# [[forward]]" in text


def test_example_forward_block_uncommented_parses(base: Config) -> None:
    """The commented block is a working configuration once uncommented."""
    text = EXAMPLE.read_text(encoding="utf-8")
    block = text[text.index("# [[forward]]") :]
    lines = [line[2:] for line in block.splitlines() if line.startswith("# ") and " = " in line]
    lines = [line for line in lines if not line.lstrip().startswith("#")]
    data: dict[str, Any] = tomllib.loads("[[forward]]\n" + "\n".join(lines).replace("#", "\n#"))
    # The example lists keys of both types: keep those valid for fluent.
    table = data["forward"][0]
    for key in ("facility", "utf8_bom", "confirm_s"):
        table.pop(key)
    (out,) = parse_config(data, source=SRC, base=base).forward
    assert out == Forward(
        name="fluent1", type="fluent", host="logs.example.com", port=24224, shared_key="change me"
    )


def test_forward_loads_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "logd.toml"
    path.write_text(
        f'state_dir = "{tmp_path}/state"\n[[forward]]\ntype = "syslog"\nhost = "127.0.0.1"\n',
        encoding="utf-8",
    )
    cfg = load_config(config=str(path), environ={"XDG_RUNTIME_DIR": str(tmp_path)})
    assert cfg.state_dir == tmp_path / "state"
    assert [o.name for o in cfg.forward] == ["syslog1"]
