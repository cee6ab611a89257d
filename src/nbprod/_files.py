"""Small file helpers shared by the modules that write user-facing files."""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_text_atomic", "sqlite_path"]


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


def sqlite_path(uri: str) -> Path | None:
    """The database file a ``sqlite:///…`` URI names (None for any other URI, or ``:memory:``)."""
    if not uri.lower().startswith("sqlite:///"):  # the scheme in any case, as urlparse reads it
        return None
    path = uri[len("sqlite:///"):]
    return Path(path) if path and path != ":memory:" else None
