#!/usr/bin/env bash
# Builds the Debian rootfs that tests/e2e/test_systemd_nspawn.py boots with
# `systemd-nspawn --boot`: a minimal Debian (debootstrap, Debian's packages only) with
# systemd as init, dbus and logind (for `loginctl enable-linger` and `systemd --user`),
# and a venv at /opt/logd holding logd's third-party dependencies. /opt/wheels keeps
# their wheels and the build backend's, so the test builds and installs logd itself
# with no network. logd is not in here: each test run installs its own checkout.
#
# Usage: nspawn_rootfs.sh DEST REQUIREMENT...   (run as root; DEST must not exist)
#   REQUIREMENT: pip requirements, e.g. 'trio>=0.30' 'setuptools>=64'.
# Environment: PYTHON, the host's python for `pip download` (default python3).
# The mirror is the one this machine's apt uses for Debian (/etc/apt/sources.list*).
# The result appears at DEST only when complete (built beside it, then renamed);
# DEST.lock serializes concurrent builds.
set -euo pipefail

if [ "$#" -lt 2 ]; then
  echo "usage: $0 DEST REQUIREMENT..." >&2
  exit 2
fi
dest=$1
shift
suite=bookworm
python=${PYTHON:-python3}
packages=systemd,systemd-sysv,dbus,libpam-systemd,passwd,python3,python3-venv

# One build at a time: a concurrent run waits here, then finds DEST built.
exec 9>"$dest.lock"
flock 9
if [ -e "$dest" ]; then
  echo "$dest exists already"
  exit 0
fi

# The Debian mirror of this machine's apt sources: deb822 stanzas (URIs:/Suites:) or
# one-line entries. A source that lists the suite wins; else any .../debian one.
debian_mirror() {
  local files=()
  [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && files+=("$f")
  done
  [ "${#files[@]}" -gt 0 ] || return 1
  awk -v suite="$suite" '
    function stanza_end() {
      if (uris != "" && types ~ /(^| )deb( |$)/) {
        n = split(uris, u, " ")
        for (i = 1; i <= n; i++) {
          if ((" " suites " ") ~ (" " suite " ")) { print "1 " u[i] }
          else if (u[i] ~ /\/debian\/?$/) { print "2 " u[i] }
        }
      }
      uris = ""; suites = ""; types = ""
    }
    FNR == 1 { stanza_end() }
    /^[[:space:]]*#/ { next }
    /^[[:space:]]*$/ { stanza_end(); next }
    /^URIs:/ { sub(/^URIs:[[:space:]]*/, ""); uris = $0; next }
    /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0; next }
    /^Types:/ { sub(/^Types:[[:space:]]*/, ""); types = $0; next }
    /^deb[[:space:]]/ {
      line = $0; sub(/\[[^]]*\][[:space:]]*/, "", line); split(line, f, /[[:space:]]+/)
      if (f[3] == suite) { print "1 " f[2] } else if (f[2] ~ /\/debian\/?$/) { print "2 " f[2] }
    }
    END { stanza_end() }
  ' "${files[@]}" | sort -s -k1,1 | awk '{ print $2; exit }'
}

mirror=$(debian_mirror || true)
if [ -z "$mirror" ]; then
  echo "no Debian mirror for $suite in /etc/apt/sources.list*" >&2
  exit 3
fi

work=$(mktemp -d "$dest.tmp.XXXXXX")
cleanup() {
  # debootstrap mounts /proc and /sys inside the target; a failed run may leave them.
  awk -v w="$work" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do umount -l "$m" || true; done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
chmod 0755 "$work"

echo "debootstrap $suite from $mirror into $work"
debootstrap --variant=minbase --include="$packages" "$suite" "$work" "$mirror"

# No timers that would run apt or scrubs while a test is booted; no cached packages.
for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
  e2scrub_reap.service; do
  ln -sf /dev/null "$work/etc/systemd/system/$unit"
done
rm -rf "$work"/var/cache/apt/archives/*.deb "$work"/var/lib/apt/lists/*

# Wheels for the rootfs's own python (its version, this machine's architecture).
pyver=$(chroot "$work" python3 -c 'import sys; print("%d%d" % sys.version_info[:2])')
arch=$(uname -m)
platforms=()
for tag in manylinux2014 manylinux_2_17 manylinux_2_28 manylinux_2_34; do
  platforms+=(--platform "${tag}_$arch")
done
mkdir -p "$work/opt/wheels"
"$python" -m pip download --disable-pip-version-check --quiet --dest "$work/opt/wheels" \
  --only-binary=:all: --implementation cp --python-version "$pyver" --abi "cp$pyver" \
  "${platforms[@]}" "$@"

chroot "$work" python3 -m venv /opt/logd
chroot "$work" /opt/logd/bin/pip install --disable-pip-version-check --quiet --no-cache-dir \
  --no-index --find-links /opt/wheels "$@"

mv -T "$work" "$dest"
trap - EXIT
echo "rootfs ready: $dest ($(du -sh "$dest" | cut -f1))"
