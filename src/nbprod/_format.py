"""One way to write numbers in every result nbprod shows.

Before this module, one notebook read "5,000 rows" beside "sample of 1000 rows" and printed like
scores as 0.3063, 0.03338, 0.333 and 0.3333. The rules, in one place so every result follows them:

- **counts** (rows, columns, requests, labels) always carry thousands separators:
  ``count(5000) == "5,000"``, ``rows(1) == "1 row"``, ``rows(3500) == "3,500 rows"``;
- **scores** (metrics, shares, drift scores, rates between 0 and 1) have a fixed
  :data:`SCORE_DECIMALS` decimals, so a column of them lines up and like quantities look alike:
  ``score(0.03338) == "0.0334"``, ``score(1) == "1.0000"``;
- anything else is a **number**: integers (and whole floats) as counts, other floats with four
  significant digits (``number(12.3456) == "12.35"``, ``number(2.5e7) == "25,000,000"``);
- a value that is missing shows :data:`MISSING`; a note that would run off the right edge of a
  table is cut by :func:`truncate` (the HTML keeps the whole text in its ``title``).

Base layer, standard library only: the registry's cards, the data reports, drift, monitoring and
the audit table all import from here (and a display base built later will too).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["MISSING", "SCORE_DECIMALS", "count", "rows", "score", "signed_score", "number", "cell", "truncate",
           "percent"]

#: What a missing value shows (never "None", "nan" or an empty cell).
MISSING = "–"
#: Decimals of every score.
SCORE_DECIMALS = 4


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def count(n: Any) -> str:
    """A count with thousands separators: ``5,000``."""
    if n is None:
        return MISSING
    try:
        return f"{int(n):,}"
    except (TypeError, ValueError, OverflowError):
        return str(n)


def rows(n: Any, noun: str = "row") -> str:
    """``"1 row"``, ``"5,000 rows"`` (``noun`` for other things counted: ``rows(3, "column")``)."""
    if n is None:
        return f"{MISSING} {noun}s"
    return f"{count(n)} {noun}{'' if n == 1 else 's'}"


def score(value: Any) -> str:
    """A score with :data:`SCORE_DECIMALS` decimals: ``0.3333``; ``–`` when missing or not finite."""
    if not _finite(value):
        return MISSING if value is None or isinstance(value, (int, float)) else str(value)
    return f"{float(value):.{SCORE_DECIMALS}f}"


def signed_score(value: Any) -> str:
    """A change of a score, always signed: ``+0.0123``, ``-0.0500``, ``+0.0000``."""
    if not _finite(value):
        return MISSING
    return f"{float(value):+.{SCORE_DECIMALS}f}"


def percent(value: Any, decimals: int = 1) -> str:
    """A fraction as a percentage: ``percent(0.2) == "20.0%"``."""
    if not _finite(value):
        return MISSING
    return f"{100 * float(value):.{decimals}f}%"


def number(value: Any, digits: int = 4) -> str:
    """Any other number: integers as counts, floats with ``digits`` significant digits."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return count(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return MISSING if value != value else ("inf" if value > 0 else "-inf")
        if value == int(value) and abs(value) < 1e15:
            return count(int(value))
        return f"{value:.{digits}g}"
    try:  # numpy scalars and the like
        import numbers

        if isinstance(value, numbers.Integral):
            return count(int(value))
        if isinstance(value, numbers.Real):
            return number(float(value), digits)
    except (TypeError, ValueError):
        pass
    return str(value)


def cell(value: Any, width: int = 160) -> str:
    """A table cell: a number by :func:`number`, text cut at ``width`` characters."""
    if isinstance(value, str):
        return truncate(value, width)
    return number(value)


def truncate(text: Any, width: int) -> str:
    """``text`` cut to ``width`` characters with an ellipsis (whole when it fits)."""
    text = "" if text is None else str(text)
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"
