"""``package``: write a deployable bundle for one model version, atomically and with its audit row.

The bundle is written into a temporary sibling directory and renamed into place only when
complete, in the same transaction as its ``package`` audit row: there is never a half bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

from .. import audit, state
from .._files import scratch_path
from .._version import __version__
from ..errors import NbprodError, PackagingError
from ..registry import download, get_version, verify_manifest
from . import templates
from .openapi import write_openapi
from .pins import pinned_environment
from .results import Bundle
from .target import MANIFEST, bundle_path, check_target
from .wheel import nbprod_wheel

__all__ = ["package"]

_CPU = re.compile(r"^\d+(\.\d+)?m?\Z")  # \Z, not $: "$" accepts a final newline
_MEMORY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|K|M|G|T)?\Z")


# --- naming and validation --------------------------------------------------------------------

def _slug(name: str, max_len: int = 45) -> str:
    """A DNS-1035 label from a model name: lowercase, [a-z0-9-], starts with a letter."""
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not slug or not slug[0].isalpha():
        slug = "m-" + slug
    return slug[:max_len].rstrip("-")


def _check_args(canary_percent, replicas, cpu, memory, port, max_replicas) -> None:
    if canary_percent is not None and (isinstance(canary_percent, bool) or not isinstance(canary_percent, int)
                                       or not 0 <= canary_percent <= 100):
        raise PackagingError(f"canary_percent must be an integer from 0 to 100, got {canary_percent!r}",
                             "pass e.g. canary_percent=10 to send 10% of traffic to this version")
    for label, value, low in (("replicas", replicas, 1), ("port", port, 1), ("max_replicas", max_replicas, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise PackagingError(f"{label} must be a positive integer, got {value!r}", f"pass an integer {label}")
    if port > 65535:
        raise PackagingError(f"port {port} is not a TCP port", "pass a port from 1 to 65535 (default 8080)")
    if max_replicas < replicas:
        raise PackagingError(f"max_replicas ({max_replicas}) is below replicas ({replicas})",
                             "pass max_replicas >= replicas")
    if not isinstance(cpu, str) or not _CPU.match(cpu):
        raise PackagingError(f"cpu {cpu!r} is not a Kubernetes CPU quantity", "use e.g. '500m' or '2'")
    if not isinstance(memory, str) or not _MEMORY.match(memory):
        raise PackagingError(f"memory {memory!r} is not a Kubernetes memory quantity", "use e.g. '512Mi' or '1Gi'")


def _check_image(image) -> None:
    """A Docker image reference: ``[host[:port]/]path[:tag][@digest]``, the path in lowercase."""
    if not isinstance(image, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*\Z", image):
        raise PackagingError(f"image {image!r} is not a valid image reference",
                             "use e.g. registry.example.com/team/credit-risk:3")
    ref = image.split("@", 1)[0]
    first, slash, rest = ref.partition("/")
    # The first component is a registry host when it has a '.' or ':' or is localhost (may be mixed case).
    path = rest if slash and ("." in first or ":" in first or first == "localhost") else ref
    head, colon, tag = path.rpartition(":")
    repository = head if colon and "/" not in tag else path
    if repository != repository.lower():
        raise PackagingError(f"image {image!r}: the repository name {repository!r} has uppercase letters, "
                             "which Docker refuses",
                             f"use lowercase, e.g. image={image.replace(repository, repository.lower(), 1)!r}")


# --- the verb ---------------------------------------------------------------------------------

def package(uri: str, out_dir: str | os.PathLike, *, canary_percent: int | None = None, image: str | None = None,
            replicas: int = 2, max_replicas: int | None = None, cpu: str = "500m", memory: str = "1Gi",
            port: int = 8080, overwrite: bool = False) -> Bundle:
    """Write a self-contained, deployable bundle for the model version ``uri`` into ``out_dir``.

    ``image`` names the image the Kubernetes manifests run (default ``<model-slug>:<version>``);
    ``canary_percent`` adds KServe's ``canaryTrafficPercent``. Writes atomically; an existing
    non-empty ``out_dir`` is an error unless ``overwrite``, which replaces only a previous bundle
    as nbprod wrote it (:mod:`.target`). Appends a ``package`` audit row.
    """
    max_replicas = max(replicas * 5, 10) if max_replicas is None else max_replicas
    _check_args(canary_percent, replicas, cpu, memory, port, max_replicas)
    out = bundle_path(out_dir)
    check_target(out, overwrite)
    version = get_version(uri)
    slug = _slug(version.name)
    image = image or f"{slug}:{version.version}"
    _check_image(image)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    expected = version.tags.get("nbprod.manifest_sha256")

    tmp = scratch_path(out, "tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        downloaded = download(version.uri, tmp / ".download")
        if not (downloaded / "MLmodel").is_file():
            raise PackagingError(f"{version.uri} downloaded without an MLmodel file",
                                 "re-register the model with nbprod.register")
        downloaded.rename(tmp / "model")
        shutil.rmtree(tmp / ".download", ignore_errors=True)
        model_dir = tmp / "model"
        verify_manifest(model_dir, expected_digest=expected)  # ship exactly what was registered
        digest = hashlib.sha256((model_dir / "nbprod" / "manifest.json").read_bytes()).hexdigest()

        wheel = nbprod_wheel()
        (tmp / "wheels").mkdir()
        shutil.copy2(wheel, tmp / "wheels" / wheel.name)
        model_reqs_path = model_dir / "requirements.txt"
        model_reqs = model_reqs_path.read_text(encoding="utf-8").splitlines() if model_reqs_path.is_file() else []
        reqs = pinned_environment(model_reqs)
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        (tmp / "requirements.txt").write_text(
            f"# Pinned by nbprod {__version__} for {version.uri} on {stamp} (Python {python}).\n"
            f"# Install with: pip install -r requirements.txt  (from this directory)\n"
            + "\n".join(reqs) + f"\n./wheels/{wheel.name}\n", encoding="utf-8")

        profile = model_dir / "nbprod" / "profile.json"
        if profile.is_file():
            shutil.copy2(profile, tmp / "profile.json")
        write_openapi(tmp / "openapi.json", model_dir, version.name, str(version.version))  # GET /openapi.json
        (tmp / "Dockerfile").write_text(templates.dockerfile(python, wheel.name, port, version.uri), encoding="utf-8")
        _readable_in_the_image(tmp / "model", tmp / "wheels", tmp / "requirements.txt")
        (tmp / ".dockerignore").write_text(templates.DOCKERIGNORE, encoding="utf-8")
        (tmp / "k8s").mkdir()
        for fname, obj in templates.manifests(slug=slug, version=version.version, uri=version.uri, digest=digest,
                                     image=image, port=port, cpu=cpu, memory=memory, replicas=replicas,
                                     max_replicas=max_replicas, canary_percent=canary_percent).items():
            (tmp / "k8s" / fname).write_text(templates.to_yaml(obj), encoding="utf-8")
        readme = templates.readme(uri=version.uri, slug=slug, image=image, port=port, python=python,
                                  canary_percent=canary_percent, wheel=wheel.name)
        (tmp / "README.md").write_text(readme, encoding="utf-8")
        bundle = Bundle(path=out, uri=version.uri, name=version.name, version=str(version.version), image=image,
                        wheel=wheel.name, canary_percent=canary_percent, manifest_sha256=digest, python=python)
        # bundle.json lists every file written, itself included: a later overwrite replaces only those
        written = [p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file()]
        bundle.files = sorted([*written, MANIFEST])
        (tmp / MANIFEST).write_text(json.dumps({**bundle.to_dict(), "created_at": stamp,
                                                "nbprod_version": __version__, "port": port},
                                               indent=2) + "\n", encoding="utf-8")

        # The audit row and the rename commit together: no bundle without its row, nor the reverse.
        with state.write_transaction() as conn:
            audit.record("package", model_uri=version.uri, connection=conn,
                         details={"out_dir": str(out), "image": image, "canary_percent": canary_percent,
                                  "manifest_sha256": digest, "wheel": wheel.name})
            check_target(out, overwrite)  # again: nothing may have moved in while the bundle was built
            _swap_into_place(tmp, out)
    except NbprodError:
        raise
    except OSError as exc:
        raise PackagingError(f"cannot write the bundle to {out}: {exc.strerror or exc}",
                             "pass a directory you can write to, with free space, e.g. build/credit-risk") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return bundle


def _readable_in_the_image(*paths: Path) -> None:
    """Files 0644, folders 0755: ``COPY`` keeps a file's mode, and the image's server runs as an unprivileged
    user (``templates.APP_UID``). The registry's store keeps its copies private (0600), and a bundle made of
    those built an image that passed its build-time load (as root) and then could not read its model."""
    for top in paths:
        for path in (top, *top.rglob("*")) if top.is_dir() else (top,):
            path.chmod(0o755 if path.is_dir() else 0o644)


def _swap_into_place(tmp: Path, out: Path) -> None:
    aside = scratch_path(out, "old")  # also deletes a previous bundle a killed swap left aside: this one replaces it
    moved = out.exists()
    if moved:
        out.rename(aside)
    try:
        tmp.rename(out)
    except OSError:
        if moved:
            aside.rename(out)
        raise
    if moved:
        shutil.rmtree(aside, ignore_errors=True)
