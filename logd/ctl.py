"""`logd-ctl`: the operator's command. The control socket arrives with its own issue."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `logd-ctl`; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print("usage: logd-ctl COMMAND  (status, runs, tail, events, ... are not implemented yet)")
        return 0
    print("logd-ctl: not implemented yet (the control socket is a later issue)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
