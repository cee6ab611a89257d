"""The sha256 manifest: written last when a model directory is built, checked first when loaded.

``nbprod/manifest.json`` lists the sha256 and size of every other file of the model directory.
Verification refuses a changed byte, a missing file and an extra file alike: a model that is not
exactly what was registered is not served. The manifest's own sha256 is also kept as a tag on the
model version (outside the artefact store), so rewriting the manifest is detected too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import IntegrityError

__all__ = ["MANIFEST", "write_manifest", "verify_manifest", "verify_file", "sha256_file", "manifest_digest"]

MANIFEST = "nbprod/manifest.json"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(model_dir: Path) -> list[str]:
    return sorted(
        p.relative_to(model_dir).as_posix()
        for p in model_dir.rglob("*")
        if p.is_file() and p.relative_to(model_dir).as_posix() != MANIFEST
    )


def write_manifest(model_dir: str | Path) -> str:
    """Hash every file under ``model_dir`` into the manifest; return the manifest's own sha256."""
    model_dir = Path(model_dir)
    files = {rel: {"sha256": sha256_file(model_dir / rel), "size": (model_dir / rel).stat().st_size}
             for rel in _files(model_dir)}
    body = json.dumps({"algorithm": "sha256", "files": files}, indent=1, sort_keys=True).encode()
    target = model_dir / MANIFEST
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(body)
    return hashlib.sha256(body).hexdigest()


def manifest_digest(model_dir: str | Path) -> str | None:
    target = Path(model_dir) / MANIFEST
    return sha256_file(target) if target.is_file() else None


_FIX = "re-register the model from its notebook, or download it again; never edit a registered model's files"


def _read_manifest(model_dir: Path, expected_digest: str | None) -> dict:
    target = model_dir / MANIFEST
    if not target.is_file():
        raise IntegrityError(f"{model_dir} has no {MANIFEST}: it was not registered by nbprod or is incomplete", _FIX)
    raw = target.read_bytes()
    if expected_digest and hashlib.sha256(raw).hexdigest() != expected_digest:
        raise IntegrityError(f"the manifest of {model_dir} differs from the one recorded at registration", _FIX)
    try:
        manifest = json.loads(raw)
        if not isinstance(manifest["files"], dict):
            raise TypeError("'files' is not a mapping")
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"the manifest of {model_dir} is unreadable: {exc}", _FIX) from None
    return manifest


def verify_file(model_dir: str | Path, rel: str, *, expected_digest: str | None = None) -> bytes:
    """The bytes of one file of the model directory, checked against the manifest (and the manifest
    against ``expected_digest``); raise :class:`IntegrityError` when it is not what was registered."""
    model_dir = Path(model_dir)
    entry = _read_manifest(model_dir, expected_digest)["files"].get(rel)
    if not isinstance(entry, dict):
        raise IntegrityError(f"{rel} of {model_dir} is not in its sha256 manifest", _FIX)
    data = (model_dir / rel).read_bytes()
    if len(data) != entry.get("size") or hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise IntegrityError(f"model artefact {model_dir} does not match its sha256 manifest (changed: {rel})", _FIX)
    return data


def verify_manifest(model_dir: str | Path, *, expected_digest: str | None = None) -> dict:
    """Check every file against the manifest; return the manifest or raise :class:`IntegrityError`."""
    model_dir = Path(model_dir)
    manifest = _read_manifest(model_dir, expected_digest)
    listed: dict = manifest["files"]
    present = set(_files(model_dir))
    missing = sorted(set(listed) - present)
    extra = sorted(present - set(listed))
    changed = []
    for rel in sorted(set(listed) & present):
        path = model_dir / rel
        entry = listed[rel]
        if path.stat().st_size != entry.get("size") or sha256_file(path) != entry.get("sha256"):
            changed.append(rel)
    problems = []
    if changed:
        problems.append(f"changed: {', '.join(changed)}")
    if missing:
        problems.append(f"missing: {', '.join(missing)}")
    if extra:
        problems.append(f"not in the manifest: {', '.join(extra)}")
    if problems:
        raise IntegrityError(f"model artefact {model_dir} does not match its sha256 manifest "
                             f"({'; '.join(problems)})", _FIX)
    return manifest
