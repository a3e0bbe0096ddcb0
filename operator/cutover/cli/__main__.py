"""``python -m cutover.cli``: the same as the ``cutover`` command."""

from cutover.cli import main

main()
