"""The ``cutover`` command line (also installed as ``kubectl-cutover``).

``commands`` defines the commands, ``client`` talks to the cluster, ``report`` and ``plan`` turn
objects and manifests into data, and ``render`` draws that data for a terminal.
"""

from cutover.cli.commands import app, main

__all__ = ["app", "main"]
