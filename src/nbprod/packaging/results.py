"""The result of ``package``: a written bundle, displayed as text in a terminal and a table in a notebook."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._display import Display, Facts, View

__all__ = ["Bundle"]


@dataclass(repr=False)
class Bundle(Display):
    """A written bundle: where it is, what it holds, and how it will run."""

    path: Path
    uri: str
    name: str
    version: str
    image: str
    files: list[str] = field(default_factory=list)
    wheel: str | None = None
    canary_percent: int | None = None
    manifest_sha256: str | None = None
    python: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "uri": self.uri, "name": self.name, "version": self.version,
                "image": self.image, "files": list(self.files), "wheel": self.wheel,
                "canary_percent": self.canary_percent, "manifest_sha256": self.manifest_sha256,
                "python": self.python}

    def _summary(self) -> list[tuple[str, str]]:
        model_files = sum(1 for f in self.files if f.startswith("model/"))
        k8s = ", ".join(f.split("/", 1)[1] for f in self.files if f.startswith("k8s/"))
        return [
            ("model", f"{self.uri} ({model_files} files, manifest {str(self.manifest_sha256)[:12]})"),
            ("image", f"{self.image} (python:{self.python}-slim)"),
            ("kubernetes", k8s + (f"; KServe canary {self.canary_percent}%"
                                  if self.canary_percent is not None else "")),
            ("wheel", self.wheel or "–"),
            ("build", f"docker build -t {self.image} {self.path}"),
        ]

    def _view(self) -> View:
        return View(f"bundle for {self.uri} in {self.path}", [Facts(self._summary(), code=True)])
