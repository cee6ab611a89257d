"""Where a pipeline's relative paths point: one rule for every front end.

A relative path written in the pipeline file — a notebook, a step's ``data:``, a parameter's default
such as ``holdout: holdout.parquet`` — means the file beside the pipeline file, as in docker-compose,
GitHub Actions and Kubeflow: ``nbprod pipeline run``, ``%nbprod pipeline run``, ``nbprod.pipeline()``,
``nbprod pipeline resume`` and a run an alert started all read the same files whatever folder they
were started from. A relative path the caller gives as a parameter (``-p data new.parquet``) is the
caller's: it is made absolute against the caller's working directory when the run starts (or
resumes) and recorded so, which is what lets a resume work from anywhere.

Only the verbs' file arguments are paths (:data:`PATH_ARGS`); a value is taken for one when it is a
relative path with a file suffix (``new.parquet``, ``rules.yaml``), so model URIs such as
``credit-risk@champion`` or ``models:/credit-risk/2`` are left alone. A notebook step's
``parameters:`` are the notebook's own business: it runs in its own folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["PATH_ARGS", "SUFFIXES", "is_relative_file", "anchor", "anchor_args", "anchor_given", "notebook"]

#: verb -> the arguments that name files (a model URI is also accepted by some: left alone)
PATH_ARGS: dict[str, tuple[str, ...]] = {
    "validate": ("data", "against", "rules"),
    "drift": ("reference", "current"),
    "evaluate": ("data",),
    "deploy": ("data",),
    "canary": ("data",),
}
#: what a file a verb reads ends in: data files, profiles (.json) and rules (.yaml)
SUFFIXES = frozenset({".parquet", ".pq", ".csv", ".tsv", ".json", ".jsonl", ".feather", ".arrow", ".xlsx",
                      ".yaml", ".yml"})


def is_relative_file(value: Any) -> bool:
    """A string naming a file by a relative path (not a model URI, not a ``${…}`` still to substitute)."""
    if not isinstance(value, str) or not value.strip() or "${" in value or ":" in value or "@" in value:
        return False
    path = Path(value).expanduser()
    return not path.is_absolute() and path.suffix.lower() in SUFFIXES


def anchor(value: Any, folder: Path) -> Any:
    """``value`` made absolute against ``folder`` if it is a relative file path; else as it is."""
    return str(folder / Path(value).expanduser()) if is_relative_file(value) else value


def anchor_args(kind: str, args: dict, folder: Path) -> dict:
    """A verb step's substituted ``args`` with their relative file paths anchored at ``folder`` (the
    pipeline file's)."""
    names = PATH_ARGS.get(kind, ())
    return {k: anchor(v, folder) if k in names else v for k, v in args.items()}


def anchor_given(params: dict | None) -> dict | None:
    """Parameters the caller gives, with relative file paths made absolute against the working
    directory now: recorded so, a resume started from another folder reads the same files."""
    if params is None:
        return None
    cwd = Path.cwd()
    return {k: anchor(v, cwd) for k, v in params.items()}


def notebook(value: str, folder: Path) -> Path:
    """The notebook a notebook step's ``notebook:`` names: a relative path is beside the pipeline file."""
    return folder / Path(value).expanduser()
