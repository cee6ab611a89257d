"""The objects ``%nbprod status`` and ``%nbprod models`` return in a notebook.

A panel holds the API's result and behaves as it does (``table["credit"]``, ``len``, iteration,
``to_dict()``, ``ok``, its text and HTML), so code that kept ``t = %nbprod status`` still works.
Only its display differs: inside a kernel, ``_repr_mimebundle_`` adds the interactive view (built
on first display by :mod:`.view`); outside one it returns nothing, so IPython shows the result's
own text (a terminal) or HTML, exactly as before.
"""

from __future__ import annotations

from typing import Any

__all__ = ["StatusPanel", "ModelsPanel", "in_kernel"]

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def in_kernel() -> bool:
    """True inside a Jupyter kernel (a front end can draw widgets), False in a terminal or a script."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with nbprod
        return False
    shell = get_ipython()
    return getattr(shell, "kernel", None) is not None


class _Panel:
    """The result of a verb, shown as an interactive view in a kernel. ``view`` is built on first use."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self._view: Any = None

    def _make_view(self) -> Any:
        raise NotImplementedError

    @property
    def view(self) -> Any:
        """The ipywidgets view (built, and its data read, on first access)."""
        if self._view is None:
            self._view = self._make_view()
        return self._view

    @property
    def widget(self) -> Any:
        return self.view.widget

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict | None:
        if not in_kernel():
            return None  # IPython falls back to the result's own text / HTML
        bundle = dict(self.widget._repr_mimebundle_(include=include, exclude=exclude))
        # a saved notebook, nbconvert or a viewer without the widget manager still shows the table
        bundle["text/plain"] = str(self.result)
        html = getattr(self.result, "_repr_html_", None)
        if html is not None:
            bundle["text/html"] = html()
        return bundle

    # -- everything else is the wrapped result ------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("result", "_view"):
            raise AttributeError(name)
        return getattr(self.result, name)

    def __len__(self) -> int:
        return len(self.result)

    def __iter__(self):
        return iter(self.result)

    def __getitem__(self, key: Any) -> Any:
        return self.result[key]

    def __str__(self) -> str:
        return str(self.result)

    def __repr__(self) -> str:
        return repr(self.result)

    def _repr_html_(self) -> str | None:
        html = getattr(self.result, "_repr_html_", None)
        return html() if html is not None else None

    def to_dict(self) -> Any:
        return self.result.to_dict()


class StatusPanel(_Panel):
    """``%nbprod status [NAME]``: the deployments with their buttons (Promote, Roll back, Set split)."""

    def __init__(self, result: Any, name: str | None = None) -> None:
        super().__init__(result)
        self.name = name

    def _make_view(self) -> Any:
        from .view import ProductionView

        return ProductionView(deployment=self.name, show_models=False)


class ModelsPanel(_Panel):
    """``%nbprod models [NAME]``: the registered versions (alias badges, key metrics) and the
    deployments that serve them, with the same buttons as the status panel."""

    def __init__(self, result: Any, name: str | None = None) -> None:
        super().__init__(result)
        self.name = name

    def _make_view(self) -> Any:
        from .view import ProductionView

        return ProductionView(model=self.name, show_models=True)
