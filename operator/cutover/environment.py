"""The operator's settings from its environment (the chart's values and ``extraEnv``).

One reader per kind of value, so that every variable is judged alike: unset or blank means the
default, and a malformed value raises ``ConfigurationError`` naming the variable and the value.
The startup handler turns that into Kopf's permanent error, so the operator stops with the
message instead of a traceback, a startup Kopf retries forever, or a guess.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class ConfigurationError(ValueError):
    """A malformed setting: the operator refuses to start rather than guess."""


def _raw(environ: Mapping[str, str], name: str) -> str:
    return environ.get(name, "").strip()


def whole_number(
    environ: Mapping[str, str], name: str, default: int, minimum: int = 0, unit: str = ""
) -> int:
    raw = _raw(environ, name)
    if not raw:
        return default
    # ASCII digits only: str.isdigit also takes '²', which int() then refuses.
    if not (raw.isascii() and raw.isdigit()) or int(raw) < minimum:
        what = f"a whole number of {unit}" if unit else "a whole number"
        raise ConfigurationError(f"{name} must be {what} >= {minimum}, not {raw!r}")
    return int(raw)


def integer(environ: Mapping[str, str], name: str, default: int) -> int:
    """A whole number that may be negative."""
    raw = _raw(environ, name)
    if not raw:
        return default
    digits = raw[1:] if raw[:1] in "+-" else raw
    if not (digits.isascii() and digits.isdigit()):
        raise ConfigurationError(f"{name} must be an integer, not {raw!r}")
    return int(raw)


def number(environ: Mapping[str, str], name: str, default: float, unit: str = "") -> float:
    """A finite number greater than 0 (a rate, a number of seconds)."""
    raw = _raw(environ, name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        what = f"a number of {unit}" if unit else "a number"
        raise ConfigurationError(f"{name} must be {what} > 0, not {raw!r}")
    return value


def port(environ: Mapping[str, str], name: str) -> int | None:
    """A TCP port to listen on; None when unset."""
    raw = _raw(environ, name)
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 65535:
        raise ConfigurationError(f"{name} must be a port number from 1 to 65535, not {raw!r}")
    return int(raw)


def flag(environ: Mapping[str, str], name: str) -> bool | None:
    """true/false (also 1/0, yes/no, on/off, any case); None when unset."""
    raw = _raw(environ, name)
    if not raw:
        return None
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be true or false, not {raw!r}")
