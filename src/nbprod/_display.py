"""One way to display a result: a class says what it shows, this module writes the text and the HTML.

Every result nbprod returns renders itself in a notebook (``_repr_html_``), in a terminal and a
log (``str``/``repr``) and for code (``to_dict``). Before this module about twenty classes wrote
those by hand, with two table helpers that disagreed ("–" vs "-") and reprs that were sometimes
the text and sometimes ``<Class …>``. Now a result subclasses :class:`Display` and gives one
method, ``_view()``, returning a :class:`View`: a **headline** (one line: what this is and its
verdict) and **parts** — :class:`Facts` (a card of name/value rows), :class:`Table` (rows under a
header, cut at ``display_limit``), :class:`Lines` (notes, a legend, a list), :class:`Markup`
(HTML nbprod draws itself: a pipeline's SVG graph), or another result (shown inside this one).
The base turns the view into:

- ``str(result)``: the headline, then each part as aligned plain text;
- ``repr(result)``: **the same text**. One rule for every result: a terminal IPython, a log line
  and the ``text/plain`` a notebook saves show what ``print`` shows, never dataclass fields or
  ``<Class …>`` (pandas does the same for a frame). The one exception is a secret shown once: a
  deployment's token is in ``str`` (``print``) and hidden in ``repr`` and the HTML, which is what
  a saved notebook keeps;
- ``_repr_html_()``: the same content as HTML, every value escaped, numbers written by
  :mod:`nbprod._format` (the one number format), a verdict coloured (``tone``);
- ``_repr_pretty_``: IPython's text is ``repr`` (also for a result that is a ``dict``).

The base defines no ``_repr_mimebundle_`` and no ``_ipython_display_``: a result that draws a
chart (Vega-Lite 5 through :mod:`nbprod._charts`) or holds a widget defines those itself, and
IPython prefers them, so charts in JupyterLab draw as before. This is scikit-learn's
``ReprHTMLMixin`` idea (the class gives its content, the mixin gives every display), with a
headline and parts instead of an estimator's parameters.

Base layer, standard library only (``settings`` is read when a table is cut): every layer may
use it, so no package imports another package's private renderer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any, Callable, Iterable, Sequence, Union

from . import _format

__all__ = ["Display", "View", "Facts", "Table", "Lines", "Markup", "Cell", "Part", "text", "html", "text_table",
           "html_table", "TONES", "show_with_chart", "bundle_with_chart"]

#: Colours of a verdict: passed/healthy, failed/broken, needs a look. Also readable on a dark theme.
TONES = {"ok": "#1a7f37", "bad": "#cf222e", "warn": "#9a6700"}
MUTED = "#666"


@dataclass
class Cell:
    """A table cell whose HTML says more than its text: the whole text on hover, a colour, a width."""

    text: Any
    title: str | None = None  # the whole text, shown on hover (the cell shows a cut one)
    style: str = ""  # extra CSS of the HTML cell (a colour, a bounded width that wraps)
    html_text: str | None = None  # what the HTML cell shows when it has room for more than the text

    def html(self) -> str:
        return _format.cell(self.html_text if self.html_text is not None else self.text, width=240)

    def __str__(self) -> str:
        return _format.cell(self.text)


@dataclass
class Facts:
    """A card of ``(name, value)`` rows: one model version, one deployment, one bundle.

    Text: ``  name  value`` with the names aligned (a value's further lines under its first);
    HTML: a two-column table, names muted. ``code`` shows the values as code (URLs, paths,
    commands a user copies).
    """

    items: Sequence[tuple[str, Any]]
    code: bool = False


@dataclass
class Table:
    """Rows under a header. ``limit`` (default ``settings.display_limit``; 0 = all) cuts both the
    text and the HTML, with a line saying how many more there are (``more`` names where they are)."""

    header: Sequence[str]
    rows: Sequence[Sequence[Any]]
    limit: int | None = None
    more: str = "more"
    all_in_text: bool = False  # a listing (models, the audit log) prints whole; HTML is still cut
    tail: bool = False  # show the last rows (the latest windows), not the first

    def cut(self, for_text: bool) -> tuple[Sequence[Sequence[Any]], int]:
        return (self.rows, 0) if for_text and self.all_in_text else self.shown()

    def shown(self) -> tuple[Sequence[Sequence[Any]], int]:
        limit = self.limit
        if limit is None:
            from .config import settings  # base layer too; read per display so %config changes apply

            limit = max(int(settings.display_limit), 1)
        if not limit or len(self.rows) <= limit:
            return self.rows, 0
        return (self.rows[-limit:] if self.tail else self.rows[:limit]), len(self.rows) - limit


@dataclass
class Lines:
    """Lines of text: notes, a legend, a list of problems. ``style``: ``"note"`` (small, muted, one
    per line), ``"list"`` (bullets in HTML, ``  - `` in text), ``"pre"`` (preformatted), ``"plain"``."""

    lines: Sequence[str]
    style: str = "note"
    title: str | None = None  # a lead-in line ("Version changes:")


@dataclass
class Markup:
    """HTML that nbprod generates itself and shows as is: a pipeline's graph of steps (an inline
    SVG, drawn offline with nothing to load). Its maker escapes every value it writes in; ``text``
    stands for it in the text (empty: nothing, the parts around it say the same)."""

    html: str
    text: str = ""


#: What a view is made of: the parts above, or another result shown inside this one (its own text
#: and ``_repr_html_``); None is skipped, so a view can list an optional part in place.
Part = Union[Facts, Table, Lines, Markup, "Display", Any, None]


@dataclass
class View:
    """What a result shows: its ``headline`` and ``parts``, in order.

    ``tone`` colours the headline in HTML (``ok``/``bad``/``warn``; None: plain). ``card`` draws the
    HTML as a framed card (one object: a version, a deployment), with ``subtitle`` after the name.
    """

    headline: str
    parts: list[Any] = field(default_factory=list)
    tone: str | None = None
    card: bool = False
    subtitle: str | None = None  # card only: shown after the headline, coloured by tone


class Display:
    """Mixin of every result: give ``_view()``; get ``__str__``, ``__repr__``, ``_repr_html_``.

    Subclasses may override ``__str__`` only to reveal a secret that ``repr`` and the HTML hide
    (see the module docstring); ``tests/test_display.py`` checks the rule for every result.
    """

    __slots__ = ()

    def _view(self) -> View:  # pragma: no cover - every subclass gives its own
        raise NotImplementedError(f"{type(self).__name__} must define _view()")

    def __str__(self) -> str:
        return text(self._view())

    def __repr__(self) -> str:
        return text(self._view())

    def _repr_html_(self) -> str:
        return html(self._view())

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


# --- text ----------------------------------------------------------------------------------------

def text(view: View) -> str:
    """The view as plain text: the headline (and subtitle), then every part."""
    head = view.headline + (f" {view.subtitle}" if view.card and view.subtitle else "")
    out = [head] if head else []
    for part in view.parts:
        rendered = _part_text(part)
        if rendered:
            out.append(rendered)
    return "\n".join(out)


def _part_text(part: Any) -> str:
    if isinstance(part, Facts):
        if not part.items:
            return ""
        width = max(len(k) for k, _ in part.items)
        indent = "\n" + " " * (width + 4)
        return "\n".join(f"  {k.ljust(width)}  {indent.join(_value(v).splitlines())}" for k, v in part.items)
    if isinstance(part, Table):
        rows, more = part.cut(for_text=True)
        table = text_table(part.header, rows)
        return table + (f"\n… {_format.count(more)} {part.more}" if more else "")
    if isinstance(part, Markup):
        return part.text
    if isinstance(part, Lines):
        lead = [part.title] if part.title else []
        if part.style == "list":
            return "\n".join(lead + [f"  - {line}" for line in part.lines])
        return "\n".join(lead + list(part.lines))
    return "" if part is None else str(part)  # another result (a Display, or any object with _repr_html_)


def _value(value: Any) -> str:
    return value if isinstance(value, str) else _format.cell(value)


def text_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Aligned columns under a header and a rule of dashes; cells written by ``_format.cell``."""
    cells = [list(map(str, header))] + [[str(c) if isinstance(c, Cell) else _format.cell(c) for c in row]
                                         for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --- HTML ----------------------------------------------------------------------------------------

_CELL = "text-align:left;vertical-align:top"
_CARD = "border:1px solid #ccc;border-radius:6px;padding:8px 12px;display:inline-block"


def html(view: View) -> str:
    """The view as HTML: every value escaped, the headline coloured by its tone."""
    colour = TONES.get(view.tone or "")
    if view.card:
        sub = ""
        if view.subtitle:
            sub = f" <span style='color:{colour or MUTED}'>{escape(view.subtitle)}</span>"
        head = f"<div style='font-weight:bold;font-size:15px'>{escape(view.headline)}{sub}</div>"
    else:
        style = f"color:{colour};font-weight:bold" if colour else "font-weight:bold"
        head = f"<p style='{style};margin:2px 0'>{escape(view.headline)}</p>" if view.headline else ""
    body = "".join(_part_html(p) for p in view.parts)
    return f"<div style='{_CARD}'>{head}{body}</div>" if view.card else f"<div>{head}{body}</div>"


def _part_html(part: Any) -> str:
    if isinstance(part, Facts):
        def wrap(value: Any) -> str:
            lines = [escape(line) for line in _value(value).splitlines()]
            return "<br>".join(f"<code>{line}</code>" if part.code and line else line for line in lines)

        body = "".join(f"<tr><th style='{_CELL};color:{MUTED};font-weight:normal'>{escape(k)}</th>"
                       f"<td style='{_CELL}'>{wrap(v)}</td></tr>" for k, v in part.items)
        return f"<table>{body}</table>" if body else ""
    if isinstance(part, Table):
        rows, more = part.shown()
        return html_table(part.header, rows, more=f"… {_format.count(more)} {part.more}" if more else None)
    if isinstance(part, Lines):
        lead = f"<p style='margin:4px 0'>{escape(part.title)}</p>" if part.title else ""
        if part.style == "list":
            return lead + "<ul>" + "".join(f"<li>{escape(line)}</li>" for line in part.lines) + "</ul>"
        if part.style == "pre":
            return lead + f"<pre>{escape(chr(10).join(part.lines))}</pre>"
        if part.style == "plain":
            return lead + "".join(f"<p style='margin:2px 0'>{escape(line)}</p>" for line in part.lines)
        body = "".join(f"<div>{escape(line)}</div>" for line in part.lines)
        return lead + (f"<div style='font-size:12px;color:{MUTED};margin:4px 0'>{body}</div>" if body else "")
    if isinstance(part, Markup):
        return part.html
    if hasattr(part, "_repr_html_"):  # another result, shown inside this one
        return part._repr_html_()
    return "" if part is None else f"<p>{escape(str(part))}</p>"


def _td(value: Any) -> str:
    if isinstance(value, Cell):
        title = f" title='{escape(value.title, quote=True)}'" if value.title else ""
        style = f"{_CELL};{value.style}" if value.style else _CELL
        return f"<td{title} style='{style}'>{escape(value.html())}</td>"
    return f"<td style='{_CELL}'>{escape(_format.cell(value))}</td>"


def html_table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, more: str | None = None) -> str:
    """An HTML table (every cell escaped and written by ``_format.cell``), ``more`` as its last row."""
    head = "".join(f"<th style='{_CELL}'>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in rows)
    if more:
        body += f"<tr><td colspan='{len(header)}' style='{_CELL};color:{MUTED}'>{escape(more)}</td></tr>"
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --- a result with a chart ------------------------------------------------------------------------

def _chart_spec(make_chart: Callable[[], Any]) -> dict | None:
    from . import _charts

    try:
        chart = make_chart()
    except Exception:  # a chart is a nicety; the table carries the result
        return None
    return None if chart is None else _charts.spec(chart)


def show_with_chart(result: Display, make_chart: Callable[[], Any]) -> None:
    """``_ipython_display_`` of a result that draws a chart: its text and HTML, then the chart as
    an output of its own (Vega-Lite 5, :mod:`nbprod._charts`). A front end draws one mimetype per
    output and prefers HTML over Vega-Lite, so in one bundle with the table the chart is never drawn."""
    from IPython.display import display

    from ._charts import VEGALITE_MIME

    display({"text/plain": repr(result), "text/html": result._repr_html_()}, raw=True)
    spec = _chart_spec(make_chart)
    if spec is not None:
        display({VEGALITE_MIME: spec}, raw=True)


def bundle_with_chart(result: Display, make_chart: Callable[[], Any]) -> dict:
    """``_repr_mimebundle_`` of a result that draws a chart (nbconvert, a front end that asks for a
    bundle): text, HTML and the chart's Vega-Lite 5 spec."""
    from ._charts import VEGALITE_MIME

    out: dict[str, Any] = {"text/plain": repr(result), "text/html": result._repr_html_()}
    spec = _chart_spec(make_chart)
    if spec is not None:
        out[VEGALITE_MIME] = spec
    return out
