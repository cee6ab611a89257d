"""Who is running nbprod, from which notebook and which git commit.

Every audit row, every registered model and every job records *where it came from*. This module
answers that once, cheaply, for the current process:

- ``user``: ``JUPYTERHUB_USER`` on a JupyterHub (the login the hub knows), else the OS login;
- ``notebook_path``: in a Jupyter kernel, the ``__session__`` variable of the IPython user
  namespace (JupyterLab / Notebook 7 set it) or ``JPY_SESSION_NAME``; under papermill the input
  path when papermill injected it (``PAPERMILL_INPUT_PATH``, ``inject_paths=True``) or the
  ``NBPROD_NOTEBOOK`` variable; VS Code's ``__vsc_ipynb_file__``; else ``None``;
- ``git_commit`` / ``git_dirty``: of the repository holding the notebook (or the working
  directory), ``None`` outside a repository or without git. The commit is cached per process and
  repository; the dirty flag is recomputed (it changes as the user edits) but bounded in time.

Nothing here imports anything heavy; ``git`` runs only when a field asks for it.
"""

from __future__ import annotations

import getpass
import os
import platform
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["RunContext", "current", "notebook_path", "git_info"]

_GIT_TIMEOUT = 10.0  # seconds; a hung network filesystem must not hang a register call


@dataclass(frozen=True)
class RunContext:
    """Provenance of the current call: who, where, from which notebook and commit."""

    user: str
    host: str
    notebook_path: str | None
    git_commit: str | None
    git_dirty: bool | None
    python: str
    platform: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        commit = "no git repository" if self.git_commit is None else (
            self.git_commit[:12] + (" (dirty)" if self.git_dirty else ""))
        return (f"{self.user}@{self.host} · notebook {self.notebook_path or '-'} · {commit} · "
                f"Python {self.python} on {self.platform}")


def _user() -> str:
    hub = os.environ.get("JUPYTERHUB_USER")
    if hub:
        return hub
    try:
        return getpass.getuser()
    except Exception:  # no login name (some containers run with an unnamed uid)
        return f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def _user_namespace() -> dict | None:
    """The IPython user namespace when running inside a kernel / IPython shell, else None."""
    ipython_mod = sys.modules.get("IPython")
    if ipython_mod is None:
        return None
    try:
        shell = ipython_mod.get_ipython()
    except Exception:
        return None
    return getattr(shell, "user_ns", None) if shell is not None else None


def notebook_path() -> str | None:
    """The path of the notebook running this code, when it can be known cheaply; else None."""
    ns = _user_namespace() or {}
    for key in ("PAPERMILL_INPUT_PATH", "__session__", "__vsc_ipynb_file__"):
        value = ns.get(key)
        if isinstance(value, str) and value:
            return value
    for var in ("NBPROD_NOTEBOOK", "PAPERMILL_INPUT_PATH", "JPY_SESSION_NAME"):
        value = os.environ.get(var)
        if value:
            return value
    return None


class _GitUnavailable(Exception):
    """git timed out or could not start: an answer not to be cached."""


def _git(args: list[str], cwd: Path) -> str | None:
    """git's output, ``None`` when git says no (not a repository, no commit yet)."""
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                             timeout=_GIT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _GitUnavailable(str(exc)) from exc
    return out.stdout.strip() if out.returncode == 0 else None


_roots: dict[str, str | None] = {}
_commits: dict[tuple, str | None] = {}


def _repo_root(folder: str) -> str | None:
    if folder not in _roots:
        _roots[folder] = _git(["rev-parse", "--show-toplevel"], Path(folder))
    return _roots[folder]


def _commit(root: str) -> str | None:
    """HEAD's commit, cached per process. A new commit or checkout in the meantime is noticed:
    the cache key includes the modification time and size of ``.git/HEAD`` and of its reflog."""
    gitdir = Path(root) / ".git"
    key: list = [root]
    for name in ("HEAD", "logs/HEAD"):
        try:
            st = (gitdir / name).stat()
            key += [st.st_mtime_ns, st.st_size]
        except OSError:
            key += [0, 0]
    k = tuple(key)
    if k not in _commits:
        if len(_commits) > 64:
            _commits.clear()
        _commits[k] = _git(["rev-parse", "HEAD"], Path(root))
    return _commits[k]


def _start_folder(nb_path: str | None) -> Path:
    if nb_path:
        p = Path(nb_path).expanduser()
        if not p.is_absolute():
            p = Path.cwd() / p
        if p.parent.is_dir():
            return p.parent
    return Path.cwd()


def git_info(nb_path: str | None = None) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the repository holding ``nb_path`` or the cwd; ``(None, None)`` outside one."""
    try:
        root = _repo_root(str(_start_folder(nb_path)))
        if not root:
            return None, None
        commit = _commit(root)
        if commit is None:  # a repository without commits yet
            return None, None
    except (OSError, _GitUnavailable):  # cwd deleted, no git, or git hung: unknown, not cached
        return None, None
    try:
        status = _git(["status", "--porcelain", "--untracked-files=no"], Path(root))
    except _GitUnavailable:
        return commit, None
    return commit, (None if status is None else bool(status))


def current() -> RunContext:
    """The provenance of the current call (cheap: git's commit is cached per process)."""
    nb = notebook_path()
    commit, dirty = git_info(nb)
    return RunContext(
        user=_user(),
        host=socket.gethostname(),
        notebook_path=nb,
        git_commit=commit,
        git_dirty=dirty,
        python=platform.python_version(),
        platform=f"{platform.system()}-{platform.machine()}",
    )
