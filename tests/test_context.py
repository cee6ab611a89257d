"""Provenance of a call: user, notebook path, git commit."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from nbprod import _context


def _git(repo, *args):
    subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=repo,
                   check=True, capture_output=True)


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("JUPYTERHUB_USER", "JPY_SESSION_NAME", "NBPROD_NOTEBOOK", "PAPERMILL_INPUT_PATH"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_current_outside_a_repo(tmp_path, clean_env):
    clean_env.chdir(tmp_path)
    ctx = _context.current()
    assert ctx.user and ctx.host and ctx.python.count(".") == 2
    assert ctx.notebook_path is None and ctx.git_commit is None and ctx.git_dirty is None
    assert set(ctx.to_dict()) == {"user", "host", "notebook_path", "git_commit", "git_dirty", "python", "platform"}
    assert "no git repository" in str(ctx)


def test_user_and_notebook_from_jupyter_environment(tmp_path, clean_env):
    clean_env.chdir(tmp_path)
    clean_env.setenv("JUPYTERHUB_USER", "ada")
    clean_env.setenv("JPY_SESSION_NAME", str(tmp_path / "train.ipynb"))
    ctx = _context.current()
    assert ctx.user == "ada" and ctx.notebook_path == str(tmp_path / "train.ipynb")


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_commit_and_dirty_flag_follow_the_notebooks_repo(tmp_path, clean_env):
    repo = tmp_path / "repo"
    (repo / "nb").mkdir(parents=True)
    _git(repo, "init", "-q")
    (repo / "nb" / "train.ipynb").write_text("{}")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "one")
    clean_env.chdir(tmp_path)  # cwd outside the repo: the notebook's folder decides
    clean_env.setenv("NBPROD_NOTEBOOK", str(repo / "nb" / "train.ipynb"))
    first = _context.current()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert first.git_commit == head and first.git_dirty is False
    (repo / "nb" / "train.ipynb").write_text('{"cells": []}')
    assert _context.current().git_dirty is True
    _git(repo, "commit", "-q", "-am", "two")  # a commit made while the kernel runs is noticed
    second = _context.current()
    assert second.git_commit != head and second.git_dirty is False


def test_notebook_path_from_the_kernels_namespace(tmp_path, clean_env):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.user_ns["__session__"] = str(tmp_path / "explore.ipynb")
    try:
        assert _context.current().notebook_path == str(tmp_path / "explore.ipynb")
        shell.user_ns["PAPERMILL_INPUT_PATH"] = "jobs/train.ipynb"  # papermill (inject_paths=True) wins
        assert _context.notebook_path() == "jobs/train.ipynb"
    finally:
        shell.user_ns.pop("__session__", None)
        shell.user_ns.pop("PAPERMILL_INPUT_PATH", None)
