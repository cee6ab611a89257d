"""A job's environment (the pinned package list and its digest) comes from a cache that only a
change to a folder holding distributions invalidates — not a file written next to the script."""

import os
import sys
from pathlib import Path

from nbprod.jobs import environment


def _dist(folder: Path, name: str, version: str) -> None:
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def _bump(folder: Path) -> None:
    """Make the folder's modification time certainly differ (coarse file-system clocks)."""
    st = folder.stat()
    os.utime(folder, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def _cached(home: Path) -> list[Path]:
    return sorted((home / "cache").glob("environment-*.json"))


def test_files_written_in_a_folder_on_sys_path_keep_the_cached_list(nbprod_home, tmp_path, monkeypatch):
    scripts = tmp_path / "scripts"  # like the folder of `python script.py`, or the cwd of `python -m`
    scripts.mkdir()
    monkeypatch.syspath_prepend(str(scripts))
    environment._cache.clear()
    first = environment.capture()
    (scripts / "executed.ipynb").write_text("{}")
    _bump(scripts)
    environment._cache.clear()  # a new `nbprod run` process: only the disk cache is left
    assert environment.capture() == first
    assert len(_cached(nbprod_home)) == 1, "one list on disk, read again by the second process"


def test_installing_or_upgrading_a_distribution_changes_the_list_and_digest(nbprod_home, tmp_path, monkeypatch):
    site = tmp_path / "site-packages"
    _dist(site, "nbprod_probe_pkg", "1.0")
    monkeypatch.syspath_prepend(str(site))
    environment._cache.clear()
    before = environment.capture()
    assert before["packages"]["nbprod-probe-pkg"] == "1.0"
    assert before["executable"] == sys.executable and len(before["digest"]) == 64

    _dist(site, "nbprod_probe_other", "2.0")  # pip install ...
    for old in site.glob("nbprod_probe_pkg-*"):  # pip install -U: the old metadata goes, the new comes
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    _dist(site, "nbprod_probe_pkg", "1.1")
    _bump(site)
    environment._cache.clear()
    after = environment.capture()
    assert after["packages"]["nbprod-probe-other"] == "2.0" and after["packages"]["nbprod-probe-pkg"] == "1.1"
    assert after["digest"] != before["digest"]
