"""Time windows over the prediction log: ``"1h"``, ``"15m"``, ``"1d"`` and the edges of each window.

Windows are aligned to multiples of their length since the Unix epoch (1-hour windows start on
the hour, UTC), so two reports over overlapping periods show the same windows with the same numbers.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timezone
from typing import Any

from ..errors import ConfigError

__all__ = ["parse_duration", "parse_time", "window_edges", "iso"]

_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$")


_SECONDS = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def parse_duration(value: Any) -> float:
    """``"1h"`` → 3600.0; numbers are seconds, as text too (``"60"``: a flag or an environment
    variable); a ``timedelta`` works too."""
    if isinstance(value, str) and _SECONDS.match(value.strip()):
        value = float(value)
    if hasattr(value, "total_seconds"):
        seconds = float(value.total_seconds())
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value.lower())) and m.group(2) in _UNITS:
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ConfigError(f"{value!r} is not a duration",
                          "write it like 30s, 15m, 1h, 1d or 1w (or a number of seconds)")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"the duration {value!r} is not positive", "use a duration such as 1h")
    return seconds


def parse_time(value: Any, *, now: float | None = None) -> float | None:
    """A point in time as Unix seconds: None, a number, a datetime/Timestamp, ISO text, or ``"6h"``/``"-6h"`` (ago)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hasattr(value, "timestamp"):
        if getattr(value, "tzinfo", None) is None:
            value = value.replace(tzinfo=timezone.utc)
        return float(value.timestamp())
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("-") or _DURATION.match(text.lower()):  # "-6h" or "6h": that long ago
            return (time.time() if now is None else now) - parse_duration(text.lstrip("-"))
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"{value!r} is not a time",
                              "use ISO 8601 (2025-01-31T12:00Z), Unix seconds, or -6h for 6 hours ago") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    raise ConfigError(f"cannot read {value!r} as a time", "pass a datetime, ISO 8601 text, Unix seconds or -6h")


def window_edges(since: float, until: float, window_s: float) -> list[tuple[float, float]]:
    """Aligned ``[start, end)`` windows covering ``[since, until)``."""
    if until <= since:
        raise ConfigError("the period is empty: 'until' is not after 'since'", "pass since < until")
    first = math.floor(since / window_s) * window_s
    n = math.ceil((until - first) / window_s)
    if n > 10_000:
        raise ConfigError(f"{n} windows of {window_s:g} s in the period: too many",
                          "use a longer window (e.g. 1h or 1d) or a shorter period (since=...)")
    return [(first + i * window_s, first + (i + 1) * window_s) for i in range(n)]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
