"""`python -m logd.ctl`: the same command as `logd-ctl`."""

import sys

from logd.ctl.cli import main

sys.exit(main())
