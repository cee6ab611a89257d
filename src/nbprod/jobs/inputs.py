"""``nbprod.track_input(path_or_frame, name=...)``: the content hash of what a job read.

Called inside a job's notebook, it records the input's sha256 on the job's run (tag
``nbprod.input.<name>``), so ``nbprod diff`` can say that two jobs read different data and
``nbprod rerun`` can refuse to run on data that changed since. On a re-run the expected hashes
travel in ``NBPROD_EXPECT_INPUTS``: a changed input stops the notebook at the line that read it,
naming both hashes, unless the re-run allows changed inputs. Outside a job it only returns the hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..errors import InputChanged, JobError

__all__ = ["track_input", "file_hash", "frame_hash", "TAG_PREFIX", "recorded_inputs"]

TAG_PREFIX = "nbprod.input."
JOB_RUN_ENV = "NBPROD_JOB_RUN_ID"
EXPECT_ENV = "NBPROD_EXPECT_INPUTS"
ALLOW_ENV = "NBPROD_ALLOW_CHANGED_INPUTS"


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def frame_hash(frame) -> str:
    """sha256 over the column names, dtypes and pandas' per-row hashes (index included)."""
    import pandas as pd

    h = hashlib.sha256()
    h.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return h.hexdigest()


def _describe(source: Any) -> dict[str, Any]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise JobError(f"track_input: no file at {path}",
                           "pass the path of the file the notebook reads, or the frame")
        return {"kind": "file", "path": str(path.resolve()), "sha256": file_hash(path), "bytes": path.stat().st_size}
    if hasattr(source, "dtypes") and hasattr(source, "index"):
        return {"kind": "frame", "sha256": frame_hash(source), "rows": int(len(source))}
    raise JobError(f"track_input: cannot hash a {type(source).__name__}", "pass a file path or a pandas DataFrame")


def track_input(source: Any, name: str | None = None) -> str:
    """Record the content hash of ``source`` (a file path or a DataFrame) as input ``name`` of the
    running job, and return the hash."""
    info = _describe(source)
    if name is None:
        if info["kind"] != "file":
            raise JobError("track_input: a frame needs a name", "pass name=..., e.g. track_input(df, name='train')")
        name = Path(info["path"]).name
    expected = json.loads(os.environ.get(EXPECT_ENV) or "{}").get(name)
    if expected and expected != info["sha256"] and os.environ.get(ALLOW_ENV) != "1":
        raise InputChanged(
            f"input {name!r} changed since the recorded job: it was sha256 {expected[:16]}…, it is now "
            f"{info['sha256'][:16]}… (full: {expected} -> {info['sha256']})",
            "re-run with --allow-changed-inputs (allow_changed_inputs=True) to run on the new data, "
            "or restore the old data")
    run_id = os.environ.get(JOB_RUN_ENV)
    if run_id:
        from ..registry.store import client

        client().set_tag(run_id, TAG_PREFIX + name, json.dumps(info, sort_keys=True))
    return info["sha256"]


def recorded_inputs(tags: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The inputs a run recorded, by name."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in tags.items():
        if key.startswith(TAG_PREFIX):
            try:
                out[key[len(TAG_PREFIX):]] = json.loads(value)
            except ValueError:
                out[key[len(TAG_PREFIX):]] = {"sha256": value}
    return out
