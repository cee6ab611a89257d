"""Show an Altair chart so that every notebook front end draws it, offline.

Altair 6 writes Vega-Lite 6 specs and displays them as ``application/vnd.vegalite.v6+json`` (or
through a script loaded from a CDN). JupyterLab 4.x, Notebook 7 and VS Code ship a Vega-Lite 5
renderer and nothing for v6, so they fall back to the bundle's text: the user sees ``<Chart>``.
What they all draw with no network is an ``application/vnd.vegalite.v5+json`` bundle, so every
chart nbprod shows goes through here: its spec is declared Vega-Lite 5 (nbprod's charts keep to
v5 features; ``tests/test_charts.py`` compiles each with Vega-Lite 5) and displayed as that one
mimetype, also inside an ``ipywidgets.Output`` (``output()``).

No static PNG rides along: rendering one needs vl-convert (an 84 MB engine, ~1.8 s to start and
~0.15 s per chart), too dear for a fallback that only front ends drawing neither would use.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["VEGALITE_MIME", "SCHEMA", "Chart", "spec", "bundle", "output", "wrap"]

VEGALITE_MIME = "application/vnd.vegalite.v5+json"
SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"


def spec(chart: Any) -> dict:
    """The chart's Vega-Lite spec, declared v5 (what the front ends' renderers accept)."""
    raw = chart.altair if isinstance(chart, Chart) else chart
    out = raw.to_dict()
    out["$schema"] = SCHEMA
    return out


def _title(chart: Any) -> str:
    title = getattr(chart, "title", None)
    text = getattr(title, "text", title)  # alt.Title(...) or a plain string
    if isinstance(text, (list, tuple)):
        text = " ".join(map(str, text))
    return text if isinstance(text, str) and text else "chart"


def bundle(chart: Any) -> dict:
    """The mime bundle that draws ``chart``: its Vega-Lite 5 spec, and a line of text for terminals."""
    raw = chart.altair if isinstance(chart, Chart) else chart
    return {VEGALITE_MIME: spec(raw),
            "text/plain": f"[chart: {_title(raw)} — Vega-Lite 5; drawn by JupyterLab, Notebook 7 and VS Code]"}


def output(chart: Any) -> dict:
    """One ``display_data`` output for ``ipywidgets.Output.outputs`` (settable from any thread)."""
    return {"output_type": "display_data", "metadata": {}, "data": bundle(chart)}


def _is_altair_chart(obj: Any) -> bool:
    return type(obj).__module__.startswith("altair") and hasattr(obj, "to_dict") and hasattr(obj, "_repr_mimebundle_")


def wrap(chart: Any) -> "Chart":
    """``chart`` as a Chart that displays itself as Vega-Lite 5 (a Chart is returned as it is)."""
    return chart if isinstance(chart, Chart) else Chart(chart)


class Chart:
    """An Altair chart that displays as Vega-Lite 5 in every notebook front end.

    ``.altair`` is the Altair object, for composing it with other Altair charts. Everything else
    is passed through to it, and methods that return a chart (``properties``, ``interactive``…)
    return a Chart again, so a customised chart still draws.
    """

    __slots__ = ("altair",)

    def __init__(self, chart: Any) -> None:
        self.altair = chart

    def to_dict(self, **kwargs: Any) -> dict:
        out = self.altair.to_dict(**kwargs)
        out["$schema"] = SCHEMA
        return out

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        return bundle(self.altair)

    def __getattr__(self, name: str) -> Any:
        if name == "altair" or name.startswith("__"):  # unset slot (copy, pickle): no recursion
            raise AttributeError(name)
        attr = getattr(self.altair, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            return Chart(result) if _is_altair_chart(result) else result

        call.__doc__ = getattr(attr, "__doc__", None)
        return call

    def __repr__(self) -> str:
        return f"<nbprod Chart: {_title(self.altair)}>"
