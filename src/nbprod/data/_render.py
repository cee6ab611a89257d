"""Small text and HTML table helpers shared by profiles and validation reports.

Results render summaries only (never raw data dumps), so a table is at most ``display_limit``
rows with a "… N more" line, and every cell is escaped. Numbers are written by
:mod:`nbprod._format`, the one number format of every result.
"""

from __future__ import annotations

from html import escape
from typing import Any, Sequence

from .._format import cell as fmt

__all__ = ["fmt", "html_table", "text_table"]


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
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if len(shown) < len(rows):
        lines.append(f"… {len(rows) - len(shown)} more")
    return "\n".join(lines)
