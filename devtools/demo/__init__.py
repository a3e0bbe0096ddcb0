"""``python -m devtools.demo`` (``make demo``): a migration succeeding and one rolling back, live.

Modules: ``app`` (orchestration and the command line), ``traffic`` (the simulated users),
``view`` (the live terminal view), ``scenarios``, ``processes`` (the operator subprocess), and
``prometheus``/``exporter`` (a real Prometheus and a metrics exporter, shared with the tests).
"""
