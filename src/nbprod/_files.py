"""Small file helpers shared by the modules that write user-facing files.

Privacy: ``NBPROD_HOME`` holds the prediction log (the inputs of every request: possibly personal
data), the model store and executed notebooks. nbprod creates its folders 0700 and its files 0600
(:func:`private_dir`, :func:`private_file`, :func:`private_umask`), as ssh and Jupyter do with their
secrets; folders and files that already exist keep the permissions their owner gave them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from ._pids import alive

__all__ = ["write_text_atomic", "scratch_path", "sqlite_path", "private_dir", "private_file", "private_umask"]


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename, so a failed write never
    leaves a partial file behind. Raises ``OSError``; callers turn it into their own error."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    return path


def scratch_path(target: Path, kind: str) -> Path:
    """A hidden sibling of ``target`` to build it in, ``.<name>.nbprod-<kind>-<pid>-<random>``, once the ones
    a killed process left for the same target are deleted: a SIGKILL runs no clean-up, and a half-built
    bundle or score output stayed beside the user's files for good. A live process's are never touched."""
    prefix = f".{target.name}.nbprod-{kind}-"
    for old in target.parent.glob(glob.escape(prefix) + "*"):
        pid = old.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not alive(int(pid)):
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):  # best effort: the new build does not need it gone
                    old.unlink()
    return target.parent / f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def private_dir(path: Path) -> Path:
    """``mkdir -p path``, each folder it creates readable by the owner only (0700)."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)  # the umask can only take bits away
        except FileExistsError:
            pass  # created concurrently: whoever won chose its mode
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty and 0600 if it does not exist (its folders 0700), so whatever opens it
    next — SQLite, MLflow, papermill — writes into a file only the owner can read. SQLite gives
    its ``-wal`` and ``-shm`` files the database file's permissions."""
    path = Path(path)
    private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    return path


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Files and folders created inside are 0600 / 0700 (umask 077), whoever creates them (MLflow's
    artefact copies keep the mode of the files they copy). The umask is per process: other threads
    creating files meanwhile get private files too, never more open ones."""
    before = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(before)


def sqlite_path(uri: str) -> Path | None:
    """The database file a ``sqlite:///…`` URI names (None for any other URI, or ``:memory:``)."""
    if not uri.lower().startswith("sqlite:///"):  # the scheme in any case, as urlparse reads it
        return None
    path = uri[len("sqlite:///"):]
    return Path(path) if path and path != ":memory:" else None
