"""A wheel of the running nbprod for the bundle's image: built from the source tree, or repacked.

Built once and cached under ``$NBPROD_HOME/wheels`` (keyed by a digest of the sources, so an
edited checkout gets a new wheel), so packaging twice does not rebuild.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Callable

from .._version import __version__
from ..config import settings
from ..errors import PackagingError

__all__ = ["nbprod_wheel"]


def _source_root() -> Path | None:
    """The project root when nbprod runs from its source tree (editable install), else None."""
    root = Path(__file__).resolve().parents[3]  # <root>/src/nbprod/packaging/wheel.py
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return None
    try:
        import tomllib  # here, in the try: Python 3.10 has none (the except reads the name by hand)

        name = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("name")
    except (ImportError, ValueError, OSError):
        name = "nbprod" if 'name = "nbprod"' in pyproject.read_text(encoding="utf-8") else None
    return root if name == "nbprod" else None


def _source_digest(root: Path) -> str:
    """A digest of everything that goes into the wheel, so an edited source tree gets a new wheel."""
    digest = hashlib.sha256()
    paths = [root / "pyproject.toml", *sorted((root / "src" / "nbprod").rglob("*"))]
    for p in paths:
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"):
            digest.update(p.relative_to(root).as_posix().encode() + b"\0")
            digest.update(p.read_bytes())
    return digest.hexdigest()[:16]


def _build_from_source(root: Path, out: Path) -> None:
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if Path(uv).exists() or shutil.which("uv"):
        cmd = [uv, "build", "--wheel", "--out-dir", str(out), str(root)]
    else:
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(root)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PackagingError(f"cannot build the nbprod wheel ({' '.join(cmd[:3])}…): {exc}",
                             "install uv or pip in this environment, or build it yourself: `uv build --wheel`") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise PackagingError(f"building the nbprod wheel from {root} failed:\n{tail}",
                             "run `uv build --wheel` in the project root to see the full error")


def _repack_installed(out: Path) -> None:
    """Rebuild a wheel from a regular (non-editable) installation, file for file, from its RECORD."""
    dist = metadata.distribution("nbprod")
    files = [f for f in (dist.files or []) if not str(f).startswith("..") and "__pycache__" not in str(f)]
    info = f"nbprod-{dist.version}.dist-info"
    skip = {f"{info}/RECORD", f"{info}/INSTALLER", f"{info}/REQUESTED", f"{info}/direct_url.json"}
    if not any(str(f).startswith("nbprod/") for f in files):
        raise PackagingError("nbprod is installed without its source tree and without package files to copy",
                             "install nbprod from a wheel or run from a source checkout (`pip install -e .`)")
    target = out / f"nbprod-{dist.version}-py3-none-any.whl"
    record: list[str] = []
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            rel = str(f).replace(os.sep, "/")
            if rel in skip:
                continue
            data = Path(f.locate()).read_bytes()
            zf.writestr(rel, data)
            h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{rel},sha256={h},{len(data)}")
        record.append(f"{info}/RECORD,,")
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    tmp.replace(target)


def _is_editable() -> bool:
    try:
        raw = metadata.distribution("nbprod").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return True  # running from a path on sys.path, not installed at all
    if not raw:
        return False
    try:
        return bool(json.loads(raw).get("dir_info", {}).get("editable"))
    except ValueError:
        return False


def nbprod_wheel() -> Path:
    """A wheel of the running nbprod, built once and cached under ``$NBPROD_HOME/wheels``.

    From the source tree when nbprod runs from one (keyed by a digest of the sources, so edits
    give a new wheel); otherwise repacked from the installed distribution.
    """
    root = _source_root()
    build: Callable[[Path], None]
    if root is not None:
        source = root
        cache = settings.home_path / "wheels" / f"src-{_source_digest(root)}"
        build = lambda out: _build_from_source(source, out)  # noqa: E731
    elif not _is_editable():
        cache = settings.home_path / "wheels" / f"installed-{__version__}"
        build = _repack_installed
    else:
        raise PackagingError("nbprod is installed in editable mode but its source tree is gone",
                             "reinstall nbprod (`pip install nbprod` or `pip install -e <checkout>`)")
    found = sorted(cache.glob("nbprod-*.whl"))
    if found:
        return found[-1]
    staging = cache.parent / f".{cache.name}.{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        build(staging)
        wheels = sorted(staging.glob("nbprod-*.whl"))
        if not wheels:
            raise PackagingError(f"the wheel build wrote no nbprod wheel into {staging}",
                                 "run `uv build --wheel` in the project root and check its output")
        try:
            staging.rename(cache)
        except OSError:  # another process cached the same wheel first: use theirs
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(cache.glob("nbprod-*.whl"))[-1]
