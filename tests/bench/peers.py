"""rsyslog and syslog-ng as the peer benchmark runs them: configs, processes, availability.

Both receive RFC 5424 lines on a Unix stream socket, parse the `[logd@32473 …]` element
and write logd's job: one run log (logd's run-log line) and one JSON-lines file per
session. rsyslog is the Debian package (`imptcp` on a path, `mmpstrucdata`, `omfile` with
`dynaFile`); syslog-ng is Debian's `.deb` unpacked with `dpkg -x` into a private prefix,
because installing it would remove rsyslog.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.bench.common import Server

SYSLOG_NG_PREFIX = Path(
    os.environ.get("LOGD_BENCH_SYSLOG_NG", "/var/tmp/logd-bench-syslog-ng/root")
)
SD = "logd@32473"
_RS_SD = f"$!rfc5424-sd!{SD}!"
_NG_SD = f"${{.SDATA.{SD}."


def rsyslog_missing() -> str | None:
    """Why rsyslog cannot run here, or None."""
    binary = shutil.which("rsyslogd") or (
        "/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists() else None
    )
    if binary is None:
        return "rsyslogd not installed (apt-get install rsyslog)"
    modules = Path("/usr/lib/x86_64-linux-gnu/rsyslog")
    for name in ("imptcp.so", "mmpstrucdata.so"):
        if not (modules / name).exists():
            return f"rsyslog module {name} missing under {modules}"
    return None


def syslog_ng_missing() -> str | None:
    """Why syslog-ng cannot run here, or None."""
    binary = SYSLOG_NG_PREFIX / "usr/sbin/syslog-ng"
    if not binary.exists():
        return (
            f"no {binary}: `apt-get download syslog-ng-core libivykis0 libnet1 libpcre3 "
            f"libwrap0` and `dpkg -x` each into {SYSLOG_NG_PREFIX}"
        )
    probe = subprocess.run(
        [str(binary), "--version"], env=_ng_env(), capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        return f"syslog-ng does not start: {(probe.stderr or probe.stdout).strip()[:200]}"
    return None


def _ng_env() -> dict[str, str]:
    libs = ["usr/lib/syslog-ng", "usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"]
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(str(SYSLOG_NG_PREFIX / d) for d in libs)
    return env


class Peer(Server):
    """A peer writing `out/main.log` and `out/sessions/session_<id>.jsonl` under `folder`."""

    def __init__(self, folder: Path, command: list[str], socket_path: Path) -> None:
        self.out = folder / "out"
        (self.out / "sessions").mkdir(parents=True, exist_ok=True)
        super().__init__(folder, command, socket_path)

    def run_log(self) -> Path:
        """The run log."""
        return self.out / "main.log"

    def session_files(self) -> list[Path]:
        """Every session file written."""
        return sorted((self.out / "sessions").glob("session_*.jsonl"))

    def main_logs(self) -> list[Path]:
        """The run log, as the common helpers expect."""
        return [self.run_log()]


class Rsyslog(Peer):
    """`rsyslogd -n` with imptcp on a Unix path; `sync` adds asyncWriting + sync="on"."""

    name = "rsyslog"

    def __init__(self, folder: Path, *, sync: bool = False, sessions: int = 100) -> None:
        sock = folder / "s"
        work = folder / "work"
        work.mkdir(exist_ok=True)
        out = folder / "out"
        # What rsyslog's docs advise for throughput: a bigger write buffer; for the durable
        # variant, asynchronous writing with sync at the end of each transaction (batch).
        extra = ' ioBufferSize="256k"'
        if sync:
            extra += ' asyncWriting="on" sync="on" flushOnTXEnd="on"'
        cache = min(max(sessions, 10), 1000)  # rsyslog's own upper bound is 1,000
        conf = f"""
global(workDirectory="{work}" maxMessageSize="64k")
module(load="imptcp" threads="1")
module(load="mmpstrucdata")
main_queue(queue.size="100000" queue.dequeueBatchSize="1024")
template(name="runline" type="list") {{
  constant(value="[") property(name="{_RS_SD}session_id") constant(value="] - ")
  property(name="timereported" dateFormat="rfc3339") constant(value=" - ")
  property(name="{_RS_SD}logger") constant(value=" - ")
  property(name="{_RS_SD}level") constant(value=" - ")
  property(name="msg") constant(value="\\n")
}}
template(name="sessionline" type="list" option.jsonf="on") {{
  property(outname="time" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="level" name="{_RS_SD}level" format="jsonf")
  property(outname="logger" name="{_RS_SD}logger" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
  property(outname="run_id" name="{_RS_SD}run_id" format="jsonf")
  property(outname="session_id" name="{_RS_SD}session_id" format="jsonf")
}}
template(name="sessionfile" type="string"
         string="{out}/sessions/session_%{_RS_SD}session_id%.jsonl")
ruleset(name="bench") {{
  action(type="mmpstrucdata")
  action(type="omfile" file="{out}/main.log" template="runline"{extra})
  action(type="omfile" dynaFile="sessionfile" template="sessionline"
         dynaFileCacheSize="{cache}"{extra})
}}
input(type="imptcp" path="{sock}" ruleset="bench" unlink="on")
"""
        (folder / "rsyslog.conf").write_text(conf)
        command = ["rsyslogd", "-n", "-f", str(folder / "rsyslog.conf")]
        command += ["-i", str(folder / "rsyslog.pid")]
        super().__init__(folder, command, sock)


class SyslogNg(Peer):
    """syslog-ng from its private prefix, `-F`; `sync` sets `fsync(yes)` on both files."""

    name = "syslog-ng"

    def __init__(self, folder: Path, *, sync: bool = False, sessions: int = 100) -> None:
        sock = folder / "s"
        out = folder / "out"
        fsync = "yes" if sync else "no"
        sd = _NG_SD
        run_line = (
            f"[{sd}session_id}}] - ${{ISODATE}} - {sd}logger}} - {sd}level}} - ${{MESSAGE}}\\n"
        )
        session_line = (
            f"$(format-json time=${{ISODATE}} level={sd}level}} logger={sd}logger}} "
            f"msg=${{MESSAGE}} run_id={sd}run_id}} session_id={sd}session_id}})\\n"
        )
        conf = f"""@version: 3.35
options {{
  threaded(yes); create-dirs(no); use-dns(no); use-fqdn(no); chain-hostnames(no);
  keep-hostname(yes); stats_freq(0); log-fifo-size(100000); flush-lines(1000);
}};
source s_bench {{
  unix-stream("{sock}" flags(syslog-protocol) max-connections(64) log-iw-size(64000));
}};
destination d_run {{ file("{out}/main.log" template("{run_line}") fsync({fsync})); }};
destination d_session {{
  file("{out}/sessions/session_{sd}session_id}}.jsonl" template("{session_line}")
       fsync({fsync}));
}};
log {{ source(s_bench); destination(d_run); destination(d_session); flags(flow-control); }};
"""
        (folder / "syslog-ng.conf").write_text(conf)
        prefix = SYSLOG_NG_PREFIX
        command = [str(prefix / "usr/sbin/syslog-ng"), "-F", "--no-caps"]
        command += ["-f", str(folder / "syslog-ng.conf")]
        command += [f"--module-path={prefix / 'usr/lib/syslog-ng/3.38'}"]
        command += ["-R", str(folder / "persist"), "-c", str(folder / "ctl")]
        command += ["-p", str(folder / "pid")]
        super().__init__(folder, command, sock)

    def env(self) -> dict[str, str]:
        """The environment with the private prefix's libraries on LD_LIBRARY_PATH."""
        return _ng_env()
