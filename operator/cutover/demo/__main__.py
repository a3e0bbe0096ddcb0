"""``python -m cutover.demo``: see ``cutover.demo.app``."""

from __future__ import annotations

import sys

from cutover.demo.app import main

if __name__ == "__main__":
    sys.exit(main())
