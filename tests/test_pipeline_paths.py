"""A pipeline reads the same files whichever folder it is run or resumed from.

The file's relative paths (a rules file, a parameter's default ``holdout.parquet``) are beside the
pipeline file; a relative file path given with ``-p`` is the caller's, recorded absolute, so
``nbprod pipeline resume`` from yet another folder finds it. Real CLI processes, a real MLflow store
and state DB; no kernel, no server (the steps are ``validate`` gates).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

NBPROD = str(Path(sys.executable).parent / "nbprod")

PIPELINE = """\
name: paths
params:
  data: new.parquet
  holdout: holdout.parquet
steps:
  new:
    verb: validate
    data: ${params.data}
    against: rules.yaml
  holdout:
    verb: validate
    after: [new]
    data: ${params.holdout}
    against: rules.yaml
"""


def _layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    """project/ (the pipeline, its rules), caller/ (the data the caller passes), elsewhere/ (empty)."""
    project, caller, elsewhere = (tmp_path / d for d in ("project", "caller", "elsewhere"))
    for d in (project, caller, elsewhere):
        d.mkdir()
    (project / "p.yaml").write_text(PIPELINE)
    (project / "rules.yaml").write_text("income: {min: 0}\n")
    pd.DataFrame({"income": [1.0, 2.0]}).to_parquet(caller / "new.parquet")
    return project, caller, elsewhere


def _nbprod(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([NBPROD, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_run_and_resume_from_other_folders_read_the_files_beside_the_pipeline(tmp_path, env):
    from nbprod.pipelines import get_run

    project, caller, elsewhere = _layout(tmp_path)
    # run from caller/: rules.yaml is project/'s, new.parquet the caller's; holdout.parquet (beside
    # the pipeline file) is missing, so the second step fails and the run is recorded
    out = _nbprod(["pipeline", "run", "../project/p.yaml", "-p", "data", "new.parquet"], caller, env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert str(project / "holdout.parquet") in out.stderr, out.stderr
    run_id = _last_run_id(env, elsewhere)
    failed = get_run(run_id)
    assert [s["status"] for s in failed.steps] == ["done", "failed"], str(failed)
    assert failed.params["data"] == str(caller / "new.parquet")  # recorded absolute
    assert Path(failed.path) == (project / "p.yaml").resolve()

    # fix it beside the pipeline file, resume from a folder that has neither file
    pd.DataFrame({"income": [3.0]}).to_parquet(project / "holdout.parquet")
    out = _nbprod(["pipeline", "resume", run_id], elsewhere, env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert get_run(run_id).status == "FINISHED"


def test_the_python_api_and_the_plan_read_beside_the_file_too(tmp_path, nbprod_home, monkeypatch):
    import nbprod
    from nbprod.pipelines import plan

    project, caller, elsewhere = _layout(tmp_path)
    pd.DataFrame({"income": [3.0]}).to_parquet(project / "holdout.parquet")
    monkeypatch.chdir(elsewhere)
    shown = plan(project / "p.yaml", {"data": str(caller / "new.parquet")})
    inputs = {s["name"]: s["inputs"] for s in shown.steps}
    assert inputs["holdout"]["data"] == str(project / "holdout.parquet")
    assert inputs["new"]["against"] == str(project / "rules.yaml")
    run = nbprod.pipeline(project / "p.yaml", {"data": str(caller / "new.parquet")})
    assert run.ok, str(run)


def _last_run_id(env: dict, cwd: Path) -> str:
    import json

    out = _nbprod(["pipeline", "runs", "--json"], cwd, env)
    return json.loads(out.stdout.splitlines()[0])["run_id"]
