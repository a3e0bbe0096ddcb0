"""``python -m devtools.demo``: see ``devtools.demo.app``."""

from __future__ import annotations

import sys

from devtools.demo.app import main

if __name__ == "__main__":
    sys.exit(main())
