"""The environment a job ran in: Python, platform, every installed distribution pinned, a digest.

Read from ``importlib.metadata`` in this process (no ``pip freeze`` subprocess: that costs about a
second per job). The list only changes when something is installed, which touches the
``site-packages`` folders, so the answer is cached per process and keyed on those folders'
modification times, in this process and on disk under ``$NBPROD_HOME/cache``. Only the folders
that hold distributions count: ``sys.path`` also holds the script's or the working folder, whose
time changes with every file written there (an executed copy, a log), which would make each
``nbprod run`` process miss the cache and read ~300 distributions again.
A kernel running another interpreter (a kernelspec pointing at another
environment) is asked once, through that interpreter, and cached the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["capture", "digest"]

_cache: dict[tuple, dict[str, Any]] = {}

_PROBE = """
import importlib.metadata as m, json, platform, sys
pk = {}
for d in m.distributions():
    name = (d.metadata["Name"] or "").strip()
    if name:
        pk[name.lower().replace("_", "-")] = d.version
print(json.dumps({"python": platform.python_version(), "platform": platform.platform(),
                  "executable": sys.executable, "packages": dict(sorted(pk.items()))}))
"""


def digest(packages: dict[str, str]) -> str:
    """sha256 of the pinned list (``name==version`` lines, sorted): equal lists, equal digests."""
    text = "\n".join(f"{k}=={v}" for k, v in sorted(packages.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def _key(paths: list[str]) -> tuple:
    key: list[Any] = []
    for entry in paths:
        try:
            key += [entry, os.stat(entry).st_mtime_ns]
        except OSError:
            key += [entry, 0]
    return tuple(key)


def _holds_distributions(entry: str) -> bool:
    try:
        with os.scandir(entry) as found:
            return any(e.name.endswith((".dist-info", ".egg-info")) for e in found)
    except OSError:  # not a folder (a zip of the standard library), gone, unreadable
        return False


def _here() -> dict[str, Any]:
    import importlib.metadata as metadata

    packages: dict[str, str] = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").strip()
        if name:
            packages[name.lower().replace("_", "-")] = dist.version
    return {"python": platform.python_version(), "platform": platform.platform(), "executable": sys.executable,
            "packages": dict(sorted(packages.items()))}


def _site_dirs(executable: str) -> list[str]:
    # not resolve(): a venv's python is a symlink to the base interpreter, its packages are the venv's
    prefix = Path(executable).absolute().parent.parent if executable != sys.executable else Path(sys.prefix)
    return [str(p) for p in prefix.glob("lib*/python*/site-packages")] or [str(prefix)]


def _disk_path(key: tuple) -> Path:
    from ..config import settings

    name = hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()[:24]
    return Path(settings.home) / "cache" / f"environment-{name}.json"


def _read_disk(key: tuple) -> dict[str, Any] | None:
    """The list captured by an earlier process (``nbprod run`` is one job per process)."""
    try:
        return json.loads(_disk_path(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_disk(key: tuple, found: dict[str, Any]) -> None:
    from .._files import write_text_atomic

    try:
        path = _disk_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(found))
    except OSError:
        pass  # a read-only home: capture again next time


def capture(executable: str | None = None) -> dict[str, Any]:
    """``{python, platform, executable, packages: {name: version}, digest}`` for ``executable``
    (default: this interpreter), cached until something is installed or removed."""
    executable = executable or sys.executable
    # compared unresolved: two venvs on one base interpreter resolve to the same file
    same = os.path.abspath(executable) == os.path.abspath(sys.executable)
    paths = [p for p in sys.path if p and _holds_distributions(p)] if same else _site_dirs(executable)
    key = (executable, _key(paths))
    found = _cache.get(key) or _read_disk(key)
    if found is None:
        if same:
            found = _here()
        else:
            try:
                out = subprocess.run([executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True)
                found = json.loads(out.stdout.strip().splitlines()[-1])
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                found = {"python": None, "platform": None, "executable": executable, "packages": {}}
        found["digest"] = digest(found["packages"])
        _write_disk(key, found)
    _cache[key] = found
    return dict(found)
