"""Small text and HTML table helpers shared by profiles and validation reports.

Results render summaries only (never raw data dumps), so a table is at most ``display_limit``
rows with a "… N more" line, and every cell is escaped.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any, Sequence

__all__ = ["fmt", "html_table", "text_table"]


def fmt(value: Any, digits: int = 4) -> str:
    """A compact human form of a number or value (``1,000,000``, ``0.0123``, ``2.5e+07``)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-" if value != value else ("inf" if value > 0 else "-inf")
        if value == int(value) and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:.{digits}g}"
    text = str(value)
    return text if len(text) <= 160 else text[:157] + "…"


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, limit: int | None = None,
               caption: str | None = None) -> str:
    shown = rows if limit is None else rows[:limit]
    head = "".join(f"<th style='text-align:left'>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{escape(fmt(c))}</td>" for c in row) + "</tr>"
                   for row in shown)
    more = ""
    if len(shown) < len(rows):
        more = f"<tr><td colspan='{len(header)}'>… {len(rows) - len(shown)} more</td></tr>"
    cap = f"<caption style='text-align:left'>{escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}{more}</tbody></table>"


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, limit: int | None = None) -> str:
    shown = rows if limit is None else rows[:limit]
    cells = [list(header)] + [[fmt(c) for c in row] for row in shown]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if len(shown) < len(rows):
        lines.append(f"… {len(rows) - len(shown)} more")
    return "\n".join(lines)
