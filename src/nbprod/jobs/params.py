"""A job's parameters: what the notebook declares, what it is given, and what it does with them.

papermill injects whatever it is given. Given a name the notebook does not declare, it runs with
its own hard-coded value and exits 0. nbprod refuses an unknown name when the notebook has a
``parameters`` cell, and when it has none (papermill then injects at the top) names the
parameters the notebook later overwrites or never reads.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._display import Display, Table, View
from ..errors import JobError

#: The kernel of a notebook whose kernelspec is missing or unknown here: this environment's Python
#: (``make install`` registers it; jupyter_client falls back to ``sys.executable`` without it).
DEFAULT_KERNEL = "python3"

__all__ = ["Parameter", "Parameters", "inspect", "declared", "notebook_language", "load_file", "merge", "usage",
           "user_code_cells", "python_source"]


@dataclass
class Parameter:
    """One parameter declared in the ``parameters`` cell (papermill's inspection)."""

    name: str
    type: str
    default: str
    help: str = ""


@dataclass(repr=False)
class Parameters(Display):
    """``nbprod inspect``: the parameters a notebook declares, or that it declares none."""

    notebook: Path
    declared: list[Parameter] = field(default_factory=list)
    has_cell: bool = False
    ok = True

    def to_dict(self) -> dict[str, Any]:
        return {"notebook": str(self.notebook), "has_parameters_cell": self.has_cell,
                "parameters": [vars(p) for p in self.declared]}

    def _view(self) -> View:
        if not self.has_cell:
            return View(f"{self.notebook} has no cell tagged 'parameters': values given with -p are injected at the "
                        "top, and the notebook's own assignments win. Tag the cell holding its settings 'parameters'.",
                        tone="warn")
        if not self.declared:
            return View(f"{self.notebook}: the 'parameters' cell declares nothing")
        rows = [[p.name, p.type, p.default, p.help] for p in self.declared]
        return View(f"{self.notebook} declares {len(self.declared)} parameter(s):",
                    [Table(["parameter", "type", "default", "help"], rows, limit=0)])


def read_notebook(path: Path):
    from .deferred import defer_iri_grammars

    defer_iri_grammars()  # before nbformat imports jsonschema: ~1.5 s a fresh process never uses
    import nbformat

    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as exc:  # JSON or schema errors
        raise JobError(f"cannot read {path} as a notebook: {exc}", "pass a valid .ipynb file (JSON)") from exc


def has_parameters_cell(nb) -> bool:
    return any("parameters" in c.metadata.get("tags", []) for c in nb.cells if c.cell_type == "code")


def declared(nb) -> list[Any]:
    """papermill's inference of the ``parameters`` cell (it needs every cell to carry a tags list).

    A notebook without a kernelspec (written by jupytext or a script) is read as Python, the kernel a job
    runs it on (:data:`DEFAULT_KERNEL`): papermill alone refuses it ("No kernel name found")."""
    import copy

    from papermill.inspection import _infer_parameters

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        cell.metadata.setdefault("tags", [])
    if not has_parameters_cell(nb):
        return []
    named = bool((nb.metadata.get("kernelspec") or {}).get("name"))
    return _infer_parameters(nb, name=None if named else DEFAULT_KERNEL, language=notebook_language(nb) or "python")


def notebook_language(nb) -> str | None:
    """The language a notebook says it is in (its kernelspec's, else its language_info's), or None."""
    meta = nb.metadata
    language = (meta.get("kernelspec") or {}).get("language") or (meta.get("language_info") or {}).get("name")
    return str(language).lower() if language else None


def _type(annotated: str | None, default: str | None) -> str:
    """The annotated type, else the type of a literal default (papermill only reads annotations)."""
    if annotated and annotated != "None":
        return annotated
    try:
        return type(ast.literal_eval(default or "")).__name__
    except (ValueError, SyntaxError):
        return ""


def inspect(notebook: str | Path) -> Parameters:
    """The parameters ``notebook`` declares in its ``parameters`` cell (papermill's inference)."""
    path = Path(notebook)
    if not path.is_file():
        raise JobError(f"no notebook at {path}", "pass the path of an existing .ipynb file")
    nb = read_notebook(path)
    found = declared(nb)
    params = [Parameter(p.name, _type(p.inferred_type_name, p.default), p.default or "", p.help or "") for p in found]
    return Parameters(path, params, has_parameters_cell(nb))


def load_file(path: str | Path) -> dict[str, Any]:
    """A parameter file as papermill's ``-f`` takes it: a YAML (or JSON) mapping of names to values."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise JobError(f"cannot read the parameter file {p}: {exc.strerror or exc}",
                       "pass an existing YAML file") from exc
    except yaml.YAMLError as exc:
        raise JobError(f"{p} is not valid YAML: {exc}", "write the parameters as `name: value` lines") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise JobError(f"{p} holds a {type(data).__name__}, not a mapping of parameters",
                       "write the parameters as `name: value` lines")
    return {str(k): v for k, v in data.items()}


def merge(parameters: dict[str, Any] | None, parameters_file: str | Path | None) -> dict[str, Any]:
    """The file's values, overridden by the explicit ones (papermill: ``-f`` then ``-p``)."""
    merged = load_file(parameters_file) if parameters_file else {}
    merged.update(parameters or {})
    return merged


def python_source(source: str) -> str:
    """A cell's source as plain Python (``%magics`` and ``!shell`` lines become calls), for ``ast``."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return TransformerManager().transform_cell(source)
    except Exception:
        return source


def user_code_cells(nb) -> list[tuple[int, Any]]:
    """``(number, cell)`` of the notebook's own code cells, numbered from 1, the injected one left out."""
    cells = [c for c in nb.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]
    return list(enumerate(cells, start=1))


def usage(nb, names: list[str]) -> dict[str, str]:
    """For each name: ``"overwritten"`` (assigned before it is read), ``"unread"`` (never used) or
    ``"read"``, following the cells in order. Only meaningful when the values are injected at the
    top, before every cell."""
    first: dict[str, str] = {}
    wanted = set(names)
    for _, cell in user_code_cells(nb):
        try:
            tree = ast.parse(python_source(cell.source))
        except SyntaxError:
            continue
        events: list[tuple[int, int, int, str, str]] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in wanted:
                kind = "read" if isinstance(node.ctx, ast.Load) else "overwritten"
                # an assignment's value is evaluated before its target: `a = a + 1` reads first
                order = 1 if kind == "overwritten" else 0
                events.append((node.lineno, order, node.col_offset, node.id, kind))
            elif isinstance(node, ast.arg) and node.arg in wanted:
                continue
        for _, _, _, name, kind in sorted(events):
            first.setdefault(name, kind)
    return {name: first.get(name, "unread") for name in names}
