"""A private `dockerd` (Debian's docker.io) for end-to-end tests, and a busybox image.

Started as the tests' own process, as root, with nothing shared with a Docker the machine
may run: no iptables, no bridge, `vfs` storage, its own data and exec roots and API
socket in a temporary folder. It starts its own containerd. The image is Debian's
`busybox-static` put into a tar and `docker import`ed: no registry, no network.

A test is skipped, with the reason, where dockerd cannot run (not root, not installed,
or it does not come up, e.g. in a container without the privileges it needs).
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BUSYBOX = Path("/bin/busybox")
IMAGE = "logd-busybox:test"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class Docker:
    """A running private dockerd and the client command that talks to it."""

    def __init__(self, folder: Path, client: str, proc: subprocess.Popen[bytes]) -> None:
        self.folder = folder
        self.host = f"unix://{folder / 'docker.sock'}"
        self.client = client
        self.proc = proc

    @property
    def log(self) -> str:
        return (self.folder / "dockerd.log").read_text(errors="replace")

    def run(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """`docker ARGS` against this daemon; fails the test (with its stderr) on error."""
        result = subprocess.run(
            [self.client, "-H", self.host, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            pytest.fail(f"docker {' '.join(args)}: exit {result.returncode}: {result.stderr}")
        return result

    def fluentd_run(
        self, socket: Path, name: str, *args: str, options: tuple[str, ...] = ()
    ) -> str:
        """`docker run -d` with the fluentd driver to `socket`; returns the container id.

        The tag makes the app `ctr` and keeps the container's name in it, as the README's
        recipe does; times come with milliseconds.
        """
        command = ["run", "-d", "--name", name, "--log-driver", "fluentd"]
        command += ["--log-opt", f"fluentd-address=unix://{socket}"]
        command += ["--log-opt", "tag=ctr.{{.Name}}"]
        command += ["--log-opt", "fluentd-sub-second-precision=true"]
        command += [*options, IMAGE, *args]
        return self.run(*command).stdout.strip()

    def wait(self, container: str, timeout: float = 120) -> int:
        """`docker wait`: the container's exit code once it has exited."""
        return int(self.run("wait", container, timeout=timeout).stdout.strip())


def _busybox_tar() -> bytes:
    """A root file system of static busybox and the applets the tests call."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in ("sh", "echo", "seq", "sleep", "usleep", "cat"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buffer.getvalue()


def _skip_reason() -> tuple[str | None, str, str]:
    """Why dockerd cannot run here (or None), dockerd's path and the client's."""
    dockerd = shutil.which("dockerd") or ""
    # Debian's client first: it matches Debian's dockerd (another may be on PATH).
    client = "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else ""
    client = client or shutil.which("docker") or ""
    if os.geteuid() != 0:
        return "a private dockerd needs root", dockerd, client
    if not (dockerd and client and shutil.which("containerd") and shutil.which("runc")):
        return "dockerd is not installed (apt install docker.io)", dockerd, client
    if not BUSYBOX.is_file():
        return f"{BUSYBOX} is missing (apt install busybox-static)", dockerd, client
    return None, dockerd, client


@contextmanager
def private_dockerd() -> Iterator[Docker]:
    """Start dockerd, import the image, yield; stop it and remove its folders after."""
    reason, dockerd, client = _skip_reason()
    if reason is not None:
        pytest.skip(reason)
    # Short: the API socket's path must fit in sun_path (107 bytes).
    folder = Path(tempfile.mkdtemp(prefix="lgdk-", dir="/tmp"))
    command = [dockerd, "--iptables=false", "--ip6tables=false", "--bridge=none"]
    command += ["--storage-driver=vfs", "--data-root", str(folder / "data")]
    command += ["--exec-root", str(folder / "exec"), "--pidfile", str(folder / "dockerd.pid")]
    command += ["-H", f"unix://{folder / 'docker.sock'}"]
    with open(folder / "dockerd.log", "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    docker = Docker(folder, client, proc)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while docker.run("version", check=False, timeout=30).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = " | ".join(docker.log.strip().splitlines()[-3:])
                pytest.skip(f"dockerd cannot run here: {tail}")
            time.sleep(0.2)
        imported = subprocess.run(
            [client, "-H", docker.host, "import", "-", IMAGE],
            input=_busybox_tar(),
            capture_output=True,
            timeout=120,
        )
        if imported.returncode != 0:
            pytest.fail(f"docker import: {imported.stderr.decode(errors='replace')}")
        yield docker
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
