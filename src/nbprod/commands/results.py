"""Results of the front-end verbs that have no capability of their own (``nbprod serve``, ``nbprod demo``).

A module of its own, imported when such a verb runs: the command definitions are loaded by
``%load_ext nbprod`` and the CLI's start-up, which stay as light as before (no display base yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._display import Display, Lines, View

__all__ = ["ServeResult", "DemoSummary"]


@dataclass(repr=False)
class ServeResult(Display):
    """What ``nbprod serve`` returns once the server has stopped."""

    url: str
    source: str
    ok: bool = True

    def to_dict(self) -> dict:
        return {"url": self.url, "source": self.source, "ok": self.ok}

    def _view(self) -> View:
        return View(f"server for {self.source} at {self.url} stopped")


class DemoSummary(Display):
    """What ``make demo`` prints: where the executed notebook is and the quickstart's own summary."""

    ok = True

    def __init__(self, result: Any) -> None:
        self.result = result

    def _view(self) -> View:
        """The job's own display, then the quickstart's summary as it printed it."""
        return View("", [self.result, Lines(["", *self.result.tagged_output("summary").splitlines()], style="pre")])
