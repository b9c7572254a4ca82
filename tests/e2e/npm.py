"""Real third-party Node packages for end-to-end tests, installed once into a cache folder.

Never into the repository: each set of pinned packages gets its own folder under
`$LOGD_NPM_CACHE` (default /var/tmp/logd-npm), installed under a lock so parallel test
runs install it once. A test is skipped only when node or npm is not installed; a failing
`npm install` fails it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

NPM_CACHE = Path(os.environ.get("LOGD_NPM_CACHE", "/var/tmp/logd-npm"))
INSTALL_TIMEOUT_S = 600


def node_modules(packages: dict[str, str]) -> Path:
    """The node_modules folder holding `packages` (name: exact version), installed if needed.

    Returns:
        A folder to put in NODE_PATH.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run real Fluent clients (apt install nodejs npm)")
    manifest = {"private": True, "dependencies": dict(sorted(packages.items()))}
    text = json.dumps(manifest, indent=2) + "\n"
    folder = NPM_CACHE / hashlib.sha256(text.encode()).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if any(_installed(folder, name) != version for name, version in packages.items()):
            (folder / "package.json").write_text(text)
            result = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
            )
            if result.returncode != 0:
                pytest.fail(f"npm install in {folder} failed: {result.stderr[-2000:]}")
    return folder / "node_modules"


def _installed(folder: Path, name: str) -> str | None:
    try:
        meta = json.loads((folder / "node_modules" / name / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = meta.get("version")
    return version if isinstance(version, str) else None
