"""Which settings a reload changed, and which of them wait for a restart."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from logd.config import Config, Listen, Retention, Rotation, RotationPolicy
from logd.config.changes import changed_keys, needs_restart


def base(tmp_path: Path) -> Config:
    listen = Listen(socket=tmp_path / "logd.sock", control=tmp_path / "ctl.sock")
    return Config(root=tmp_path / "root", listen=listen)


def test_nothing_changed_names_nothing(tmp_path: Path) -> None:
    assert changed_keys(base(tmp_path), base(tmp_path)) == []


def test_nested_sections_are_named_by_their_dotted_key(tmp_path: Path) -> None:
    old = base(tmp_path)
    new = dataclasses.replace(
        old,
        root=tmp_path / "elsewhere",
        fsync="none",
        retention=dataclasses.replace(old.retention, runs_keep=old.retention.runs_keep + 1),
        rotation=Rotation(run=RotationPolicy(max_bytes=1234, backups=2, compress=False)),
        config_file=tmp_path / "other.toml",
    )
    keys = changed_keys(old, new)
    assert keys[0] == "root"
    assert "retention.runs_keep" in keys
    assert "fsync" in keys
    assert [k for k in keys if k.startswith("rotation.")] == [
        f"rotation.run.{name}"
        for name in ("max_bytes", "backups", "compress")
        if getattr(new.rotation.run, name) != getattr(old.rotation.run, name)
    ]
    assert "config_file" not in keys
    assert needs_restart(keys) == ["root"]


def test_listen_forward_and_state_dir_need_a_restart(tmp_path: Path) -> None:
    old = base(tmp_path)
    new = dataclasses.replace(
        old,
        listen=dataclasses.replace(old.listen, tcp=("127.0.0.1", 24224)),
        state_dir=tmp_path / "state",
        retention=Retention(),
    )
    keys = changed_keys(old, new)
    assert needs_restart(keys) == ["listen.tcp", "state_dir"]
