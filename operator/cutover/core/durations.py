"""Left only for ``core/gates.py``, which is frozen while mutation testing runs on it: durations
live in ``cutover.durations`` (below both ``cutover.api`` and ``cutover.core``, so that the API
models no longer import the core). Delete this file once gates.py imports ``cutover.durations``.
"""

from cutover.durations import parse_duration

__all__ = ["parse_duration"]
