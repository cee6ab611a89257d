"""Tiny HTML helpers shared by the registry's cards and tables (escaped, compact, no data dumps).

Numbers are written by :mod:`nbprod._format`, the one number format of every result."""

from __future__ import annotations

from html import escape
from typing import Any, Iterable

from .._format import cell as fmt

__all__ = ["table", "text_table", "esc", "fmt"]

STYLE = "border-collapse:collapse;font-size:13px"
CELL = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:left"


def esc(value: Any) -> str:
    return escape("" if value is None else str(value))


def table(headers: Iterable[str], rows: Iterable[Iterable[Any]], *, raw: bool = False) -> str:
    head = "".join(f'<th style="{CELL}">{esc(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td style="{CELL}">{c if raw else esc(fmt(c))}</td>' for c in row) + "</tr>" for row in rows
    )
    return f'<table style="{STYLE}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def text_table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    line = lambda items: "  ".join(s.ljust(w) for s, w in zip(items, widths, strict=False)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])
