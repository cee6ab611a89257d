"""Where a bundle may be written, and what ``overwrite`` may replace.

Replacing a directory deletes it, so ``overwrite`` replaces only what nbprod wrote itself: a
previous bundle (it has ``bundle.json``) holding no file that its ``bundle.json`` does not list.
It never replaces a directory that holds ``NBPROD_HOME`` (the registry and the state DB) or the
working directory, and it follows no symlink: the bundle path itself must not be one, and a
previous bundle with a symlink inside is not replaced.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..config import settings
from ..errors import PackagingError

__all__ = ["bundle_path", "check_target", "MANIFEST"]

MANIFEST = "bundle.json"
_FIX = "choose another directory, or remove it yourself if it really should go"


def bundle_path(out_dir: str | os.PathLike) -> Path:
    """The absolute bundle path: its parents resolved, the last component kept as it is (a symlink
    there is refused by :func:`check_target`, not followed)."""
    path = Path(os.path.abspath(Path(out_dir).expanduser()))
    if path.parent == path:
        raise PackagingError(f"{path} is a file system root", "pass a directory for the bundle, e.g. build/credit-risk")
    return path.parent.resolve() / path.name


def _inside(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse a bundle path that must not be written (or replaced): see the module docstring."""
    if out.is_symlink():
        raise PackagingError(f"{out} is a symlink; nbprod does not write a bundle through one",
                             f"pass the real directory ({os.path.realpath(out)}) or another path")
    if not out.exists():
        return
    if not out.is_dir():
        raise PackagingError(f"{out} exists and is not a directory", "pass a directory path for the bundle")

    home = Path(settings.home_path).resolve()
    if _inside(home, out):
        raise PackagingError(f"{out} holds NBPROD_HOME ({home}): the registry and the state DB",
                             "write the bundle into a directory of its own, e.g. build/credit-risk")
    cwd = Path.cwd().resolve()
    if _inside(cwd, out):
        raise PackagingError(f"{out} holds the working directory ({cwd})",
                             "write the bundle into a directory of its own, e.g. build/credit-risk")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise PackagingError(f"{out} already exists and is not empty",
                             "pass overwrite=True (--overwrite) to replace a previous bundle, "
                             "or choose another directory")
    _check_previous_bundle(out)


def _check_previous_bundle(out: Path) -> None:
    manifest = out / MANIFEST
    if manifest.is_symlink() or not manifest.is_file():
        raise PackagingError(f"{out} is not an nbprod bundle (it has no {MANIFEST}); overwrite only replaces one",
                             _FIX)
    try:
        listed = json.loads(manifest.read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError):
        listed = None
    if not isinstance(listed, list) or not listed:
        raise PackagingError(f"{out}/{MANIFEST} does not list the bundle's files (an older nbprod wrote it, or it "
                             "is not an nbprod bundle), so nbprod cannot tell its files from others", _FIX)
    allowed = {MANIFEST}
    for rel in map(str, listed):
        parts = Path(rel).parts
        allowed.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    foreign, links = [], []
    for root, dirs, files in os.walk(out):  # os.walk follows no directory symlink
        for entry in dirs + files:
            path = Path(root, entry)
            rel = path.relative_to(out).as_posix()
            if path.is_symlink():
                links.append(rel)
            elif rel not in allowed:
                foreign.append(rel)
    if links:
        raise PackagingError(f"{out} holds symlinks nbprod did not write ({', '.join(sorted(links)[:3])}); "
                             "overwrite follows and deletes no symlink", _FIX)
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise PackagingError(f"{out} holds files nbprod did not write ({', '.join(sorted(foreign)[:3])}{more}); "
                             "overwrite only replaces a previous bundle as nbprod wrote it", _FIX)
