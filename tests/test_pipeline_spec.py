"""Pipeline files are checked before anything runs: each mistake is a PipelineError naming its line.

Also the cron parser of `schedule:` and the scheduler's missed-run arithmetic (no process, no kernel).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from nbprod.errors import PipelineError

ROOT = Path(__file__).resolve().parents[1]
NBPROD = str(Path(sys.executable).parent / "nbprod")


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


GOOD = """\
name: t
params:
  data: new.parquet
steps:
  train:
    notebook: train.ipynb
  evaluate:
    verb: evaluate
    model: ${train.model_uri}
    data: ${params.data}
"""


@pytest.mark.parametrize("text, line, words", [
    (GOOD.replace("${train.model_uri}", "${trian.model_uri}"), 9, "unknown step 'trian'"),
    (GOOD.replace("verb: evaluate", "verb: evalute"), 8, "unknown verb 'evalute'"),
    (GOOD.replace("${train.model_uri}", "${train.model}"), 9, "does not produce"),
    (GOOD.replace("${params.data}", "${params.dat}"), 10, "no parameter 'dat'"),
    (GOOD.replace("    data: ${params.data}", "    dta: x"), 10, "unknown argument 'dta'"),
    (GOOD.replace("    notebook: train.ipynb", "    notebook: train.ipynb\n    after: [evaluate]"), 5, "cycle"),
    (GOOD.replace("steps:", "  - bad: [\nsteps:"), None, "not valid YAML"),
    ("name: p\nsteps: []\n", 2, "`steps:` must map step names to steps"),
    (GOOD.replace("params:\n  data: new.parquet", "params: 3"), 2, "`params:` must be a mapping"),
])
def test_a_bad_pipeline_file_names_its_line(tmp_path, nbprod_home, text, line, words):
    from nbprod.pipelines import plan

    with pytest.raises(PipelineError) as err:
        plan(_file(tmp_path, text))
    assert words in str(err.value)
    if line is not None:
        assert err.value.line == line and f"p.yaml:{line}:" in str(err.value)
    assert err.value.fix and "\\n" not in err.value.fix  # a fix printed a literal \n ("e.g. steps:\n  train:…")


def test_a_cycle_names_the_steps_in_it(tmp_path, nbprod_home):
    from nbprod.pipelines import load

    text = GOOD.replace("    notebook: train.ipynb", "    notebook: train.ipynb\n    after: [evaluate]")
    with pytest.raises(PipelineError, match="train -> evaluate -> train|evaluate -> train -> evaluate"):
        load(_file(tmp_path, text))


def test_the_shipped_plan_lists_nine_steps_and_runs_nothing(nbprod_home):
    out = subprocess.run([NBPROD, "pipeline", "plan", str(ROOT / "notebooks/pipeline.yaml")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    steps = [line.split()[1] for line in out.stdout.splitlines() if line[:2].rstrip(".").isdigit()]
    assert steps == ["validate", "drift", "train", "evaluate", "register", "deploy", "canary", "promote",
                     "decommission"]
    assert "model: <train.model_uri>" in out.stdout
    # nothing ran: no pipeline runs recorded
    runs = subprocess.run([NBPROD, "pipeline", "runs", "--json"], capture_output=True, text=True, timeout=120)
    assert runs.returncode == 0 and runs.stdout.strip() == ""


def test_the_plan_renders_as_a_graph_of_steps_in_a_notebook(nbprod_home):
    from nbprod.pipelines import plan

    html = plan(ROOT / "notebooks/pipeline.yaml")._repr_html_()
    assert html.count("<rect") == 9 and "<svg" in html and "marker-end" in html


def test_a_bad_file_exits_2_and_says_where(tmp_path, nbprod_home):
    path = _file(tmp_path, GOOD.replace("verb: evaluate", "verb: evalute"))
    out = subprocess.run([NBPROD, "pipeline", "run", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "p.yaml:8" in out.stderr and "evalute" in out.stderr


@pytest.mark.parametrize("expr, after, expected", [
    ("0 3 * * 1", datetime(2026, 12, 6, 22, 0), datetime(2026, 12, 7, 3, 0)),  # Sunday -> Monday 03:00
    ("*/15 * * * *", datetime(2026, 1, 1, 10, 7), datetime(2026, 1, 1, 10, 15)),
    ("0 9-17/4 * * *", datetime(2026, 1, 1, 13, 30), datetime(2026, 1, 1, 17, 0)),
    ("30 2 1,15 * *", datetime(2026, 1, 2, 0, 0), datetime(2026, 1, 15, 2, 30)),
    ("0 0 * * 0", datetime(2026, 12, 7, 0, 0), datetime(2026, 12, 13, 0, 0)),
])
def test_cron_next_time(expr, after, expected):
    from nbprod.pipelines.cron import next_after, parse

    assert next_after(parse(expr), after) == expected


@pytest.mark.parametrize("expr", ["0 3 * *", "61 * * * *", "*/0 * * * *", "a * * * *", "5-1 * * * *"])
def test_bad_cron_is_refused(expr):
    from nbprod.pipelines.cron import parse

    with pytest.raises(ValueError):
        parse(expr)


def test_a_bad_schedule_names_its_line(tmp_path, nbprod_home):
    from nbprod.pipelines import load

    with pytest.raises(PipelineError, match="p.yaml:2: schedule"):
        load(_file(tmp_path, GOOD.replace("name: t\n", 'name: t\nschedule: "0 25 * * *"\n')))


def test_missed_scheduled_runs_are_counted_not_doubled():
    from nbprod.pipelines.scheduler import due

    # down from Monday 02:00 for three weeks: one run now, two missed
    assert due("0 3 * * 1", datetime(2026, 12, 7, 2, 0), datetime(2026, 12, 22, 4, 0)) == (True, 2)
    assert due("0 3 * * 1", datetime(2026, 12, 7, 3, 0), datetime(2026, 12, 8, 4, 0)) == (False, 0)


def test_runs_json_is_one_object_per_line(nbprod_home):
    from nbprod.pipelines import runs

    assert str(runs(as_json=True)) == ""
    json.loads("{}")


def test_the_magic_is_the_same_command(nbprod_home, capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbprod")
    try:
        shown = shell.run_line_magic("nbprod", f"pipeline plan {ROOT / 'notebooks/pipeline.yaml'} -p C 0.5")
        assert shown.params["C"] == 0.5 and [s["name"] for s in shown.steps][-1] == "decommission"
        assert "<svg" in shown._repr_html_()
        with pytest.raises(PipelineError, match="no parameter 'nope'"):
            shell.run_line_magic("nbprod", f"pipeline plan {ROOT / 'notebooks/pipeline.yaml'} -p nope 1")
    finally:
        shell.run_line_magic("unload_ext", "nbprod")


@pytest.mark.parametrize("text, line, words", [
    # the tester's file: the first step `a` was dropped without a word, plan showed only the second
    ("name: t\nsteps:\n  a:\n    verb: wait\n    seconds: 0\n  a:\n    verb: wait\n    seconds: 1\n", 6,
     "step 'a' is given twice (lines 3 and 6)"),
    (GOOD.replace("  data: new.parquet", "  data: new.parquet\n  data: old.parquet"), 4,
     "parameter 'data' is given twice"),
    (GOOD.replace("    data: ${params.data}", "    data: ${params.data}\n    model: other"), 11,
     "step 'evaluate': 'model' is given twice (lines 9 and 11)"),
    (GOOD.replace("    verb: evaluate", "    verb: evaluate\n    thresholds: {roc_auc: 0.5, roc_auc: 0.9}"), 9,
     "step 'evaluate': 'thresholds.roc_auc' is given twice"),
    (GOOD + "name: u\n", 11, "'name' is given twice (lines 1 and 11)"),
])
def test_a_key_given_twice_is_refused_not_dropped(tmp_path, nbprod_home, text, line, words):
    from nbprod.pipelines import load

    with pytest.raises(PipelineError) as err:
        load(_file(tmp_path, text))
    assert words in str(err.value) and err.value.line == line and f"p.yaml:{line}:" in str(err.value)
    assert "rename one of them" in err.value.fix


def _notebook(path: Path, parameters: str | None, *, kernelspec: bool = True) -> Path:
    """A small notebook: a 'parameters' cell holding ``parameters`` (none when None), then a print."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    if kernelspec:
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if parameters is not None:
        nb.cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb.cells.append(nbformat.v4.new_code_cell("print('hi')"))
    nbformat.write(nb, path)
    return path


NOTEBOOK_STEP = """\
name: t
params:
  n: 2
steps:
  look:
    verb: wait
    deployment: none
    seconds: 0
  train:
    notebook: train.ipynb
    parameters:
      n: ${params.n}
      seed: 1
"""


@pytest.mark.parametrize("text, line, words", [
    (NOTEBOOK_STEP.replace("train.ipynb", "nope.ipynb"), 10, "step 'train': no notebook at "),
    (NOTEBOOK_STEP.replace("train.ipynb", "p.yaml"), 10, "p.yaml is not a notebook (.ipynb)"),
    (NOTEBOOK_STEP.replace("train.ipynb", "broken.ipynb"), 10, "step 'train': cannot read "),
    (NOTEBOOK_STEP.replace("      seed: 1", "      seed: 1\n      zzz: 3"), 14,
     "step 'train': train.ipynb declares no parameter 'zzz'"),
    (NOTEBOOK_STEP.replace("      n: ${params.n}\n      seed: 1", "    - n"), 11,
     "`parameters:` must map the notebook's parameter names to values"),
])
def test_a_notebook_step_is_checked_against_its_notebook(tmp_path, nbprod_home, text, line, words):
    from nbprod.pipelines import plan

    _notebook(tmp_path / "train.ipynb", "n = 1\nseed = 0\n")
    (tmp_path / "broken.ipynb").write_text("{not json")
    with pytest.raises(PipelineError) as err:
        plan(_file(tmp_path, text))
    assert words in str(err.value) and err.value.line == line and f"p.yaml:{line}:" in str(err.value)
    assert err.value.fix
    if "zzz" in words:  # the fix names what the notebook does declare
        assert "n, seed" in err.value.fix


def test_a_bad_notebook_step_runs_no_step_before_it(tmp_path, nbprod_home, env):
    """The tester's case: the `wait` step before it used to run, then the run failed at the notebook."""
    _notebook(tmp_path / "train.ipynb", "n = 1\nseed = 0\n")
    _refused_before_anything_runs(_file(tmp_path, NOTEBOOK_STEP.replace("seed: 1", "zzz: 1")), env,
                                  "declares no parameter 'zzz'")


def _refused_before_anything_runs(path: Path, env: dict, message: str) -> None:
    """`nbprod pipeline run` of a bad file: exit 2 at line 13 with ``message``, and no run recorded."""
    out = subprocess.run([NBPROD, "pipeline", "run", str(path)], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "p.yaml:13:" in out.stderr and message in out.stderr
    runs = subprocess.run([NBPROD, "pipeline", "runs", "--json"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert runs.returncode == 0 and runs.stdout.strip() == ""


@pytest.mark.slow
def test_a_failing_notebook_step_says_what_failed_once(tmp_path, nbprod_home):
    """The error named the notebook twice ("notebook train.ipynb failed: /…/train.ipynb failed: …"), and the
    runs table's reason held the fix after a line break."""
    import nbformat

    from nbprod.pipelines import pipeline, runs

    nb = _notebook(tmp_path / "train.ipynb", "n = 1\nseed = 0\n")
    notebook = nbformat.read(nb, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell("raise ValueError('no data today')"))
    nbformat.write(notebook, nb)
    with pytest.raises(PipelineError) as err:
        pipeline(_file(tmp_path, NOTEBOOK_STEP))
    said = "notebook train.ipynb failed: cell 3 (`raise ValueError('no data today')`) raised ValueError: no data today"
    assert err.value.problem.endswith(f"failed at train: {said}")
    (run,) = runs().runs
    assert run["reason"] == f"train: {said}"


@pytest.mark.parametrize("parameters, kernelspec", [
    (None, True),  # no 'parameters' cell: values are injected at the top, as `nbprod run -p` does (it warns)
    ("n = 1\nseed = 0\n", False),  # no kernelspec: the declared names are still fine
])
def test_a_notebook_step_passes_what_a_job_would_take(tmp_path, nbprod_home, parameters, kernelspec):
    from nbprod.pipelines import plan

    _notebook(tmp_path / "train.ipynb", parameters, kernelspec=kernelspec)
    shown = plan(_file(tmp_path, NOTEBOOK_STEP))
    assert shown.steps[1]["inputs"]["parameters"] == {"n": 2, "seed": 1}


def test_a_notebook_named_by_a_parameter_is_read_when_the_step_runs(tmp_path, nbprod_home):
    from nbprod.pipelines import plan

    text = NOTEBOOK_STEP.replace("  n: 2", "  n: 2\n  nb: later.ipynb").replace("train.ipynb", "${params.nb}")
    assert plan(_file(tmp_path, text)).steps[1]["inputs"]["notebook"] == "later.ipynb"


NUMBERS = """\
name: t
params:
  share: 0.3
steps:
  look:
    verb: wait
    deployment: none
    seconds: 0
  drift:
    verb: drift
    reference: ref.parquet
    current: cur.parquet
    max_share: 0.3
  evaluate:
    verb: evaluate
    model: m@challenger
    data: cur.parquet
    thresholds: {roc_auc: {min_absolute_change: 0}}
  deploy:
    verb: deploy
    model: m@challenger
    deployment: staging
    smoke_rows: 5
  canary:
    verb: canary
    after: [deploy]
    model: m@challenger
    deployment: prod
    percent: 5
    hold:
      requests: 200
      timeout: 600
    gates: {p95_ms: 250, error_rate: 0.01}
"""


@pytest.mark.parametrize("old, new, line, words", [
    # the tester's two: a raw ValueError / TypeError mid-run, after the steps before had run
    ("max_share: 0.3", "max_share: lots", 13,
     "step 'drift' (drift): max_share must be a number from 0 to 1, got 'lots'"),
    ("seconds: 0", "seconds: 0\n    timeout_s: soon", 9,
     "step 'look' (wait): timeout_s must be a number > 0, got 'soon'"),
    ("max_share: 0.3", "max_share: 1.5", 13, "max_share must be a number from 0 to 1, got 1.5"),
    ("max_share: 0.3", "max_share: .nan", 13, "max_share must be a number"),
    ("seconds: 0", "seconds: 0\n    timeout_s: 0", 9, "timeout_s must be a number > 0, got 0"),
    ("seconds: 0", "seconds: 0\n    timeout_s: true", 9, "timeout_s must be a number > 0, got True"),
    ("seconds: 0", "seconds: -1", 8, "step 'look' (wait): seconds must be a number >= 0"),
    ("seconds: 0", "seconds: 0\n    requests: many", 9, "requests must be a whole number >= 0, got 'many'"),
    ("smoke_rows: 5", "smoke_rows: 2.5", 23, "step 'deploy' (deploy): smoke_rows must be a whole number >= 0"),
    ("percent: 5", "percent: 100", 29, "percent must be a number between 0 and 100 (exclusive), got 100"),
    ("requests: 200", "requests: -1", 31, "hold.requests must be a whole number >= 0, got -1"),
    ("timeout: 600", "timeout: soon", 32, "hold.timeout must be a number > 0, got 'soon'"),
    ("requests: 200", "request: 200", 31, "hold: unknown 'request'"),
    ("    hold:\n      requests: 200\n      timeout: 600", "    hold: 200", 30,
     "hold must map requests, seconds, timeout"),
    ("error_rate: 0.01", "error_rate: 1%", 33, "gates.error_rate must be a number from 0 to 1, got '1%'"),
    ("p95_ms: 250", "roc_auc: 0.8", 33, "gates: unknown 'roc_auc'"),
    ("min_absolute_change: 0", "min_absolute_change: big", 18, "threshold roc_auc.min_absolute_change='big'"),
])
def test_a_numeric_argument_is_a_number_in_its_range(tmp_path, nbprod_home, old, new, line, words):
    from nbprod.pipelines import plan

    assert old in NUMBERS
    with pytest.raises(PipelineError) as err:
        plan(_file(tmp_path, NUMBERS.replace(old, new)))
    assert words in str(err.value) and err.value.line == line and f"p.yaml:{line}:" in str(err.value)
    assert err.value.fix


def test_numeric_text_reads_as_the_number(tmp_path, nbprod_home):
    """PyYAML reads `1e-1` as text, and a quoted number is text: the step gets the number."""
    from nbprod.pipelines import load

    text = NUMBERS.replace("max_share: 0.3", "max_share: 1e-1").replace("smoke_rows: 5", 'smoke_rows: "5"')
    p = load(_file(tmp_path, text))
    assert p.step("drift").args["max_share"] == 0.1 and p.step("deploy").args["smoke_rows"] == 5


def test_a_parameter_in_a_numeric_argument_is_checked_with_the_run_s_value(tmp_path, nbprod_home):
    from nbprod.pipelines import load, plan

    path = _file(tmp_path, NUMBERS.replace("max_share: 0.3", "max_share: ${params.share}"))
    load(path)  # the placeholder is fine in the file
    assert plan(path).steps[1]["inputs"]["max_share"] == 0.3
    assert plan(path, {"share": "0.5"}).params["share"] == "0.5"
    with pytest.raises(PipelineError) as err:
        plan(path, {"share": "lots"})
    assert "max_share must be a number from 0 to 1, got 'lots' (from ${params.share})" in str(err.value)
    assert err.value.line == 13


def test_a_bad_number_runs_no_step_before_it(tmp_path, nbprod_home, env):
    _refused_before_anything_runs(_file(tmp_path, NUMBERS.replace("max_share: 0.3", "max_share: lots")), env,
                                  "max_share must be a number")


def test_a_numeric_argument_from_an_output_is_checked_when_its_step_runs(tmp_path, nbprod_home, env):
    """An earlier step's output is only known when the run reaches the step: checked there, by the same
    rule, a failed step naming the line (not a raw exception, nor a value passed on unchecked)."""
    text = NUMBERS.split("  drift:")[0] + "  again:\n    verb: wait\n    deployment: none\n    seconds: 0\n" \
        "    timeout: ${look.requests}\n"
    out = subprocess.run([NBPROD, "pipeline", "run", str(_file(tmp_path, text))], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    runs = subprocess.run([NBPROD, "pipeline", "runs", "--json"], env=env, capture_output=True, text=True,
                          timeout=120)
    run = json.loads(runs.stdout)
    assert run["status"] == "FAILED"
    assert "p.yaml:13: step 'again' (wait): timeout must be a number > 0, got 0 (from ${look.requests})" \
        in run["reason"]


def test_a_runner_refused_while_the_other_starts_is_not_told_run_none(tmp_path, nbprod_home, env):
    """The lock is taken before the run id exists: the refusal names the process, not "run None"."""
    from nbprod.errors import PipelineConflict
    from nbprod.pipelines import pipeline

    holder = subprocess.Popen([sys.executable, "-c", "import sys; from nbprod.pipelines import store; "
                               "store.acquire('t', None); print('held', flush=True); sys.stdin.read()"],
                              env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(PipelineConflict) as err:
            pipeline(_file(tmp_path, NUMBERS.split("  drift:")[0]))
        assert f"being run right now by process {holder.pid}; nothing was run" in str(err.value)
        assert "None" not in str(err.value)
    finally:
        holder.communicate("", timeout=60)


def test_a_run_is_named_by_a_unique_prefix_of_its_id(tmp_path, nbprod_home, env):
    """As job ids are (and README's `nbprod pipeline show 6f1c…`): 4 or more characters, unique."""
    from nbprod.pipelines import get_run, resume, store

    steps = {"look": {"status": "done", "kind": "wait", "needs": [], "outputs": {"requests": 0}}}
    for rid in ("9541ef" + "0" * 26, "abcd11" + "0" * 26, "abcd22" + "0" * 26):
        store.create_run(rid, "t", str(tmp_path / "gone.yaml"), {}, steps, None, status="FINISHED")
    shown = subprocess.run([NBPROD, "pipeline", "show", "9541"], env=env, capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 0 and "9541ef" + "0" * 26 in shown.stdout, shown.stderr
    assert get_run("9541e").run_id == "9541ef" + "0" * 26
    with pytest.raises(PipelineError, match=r"'abcd' is ambiguous: it starts 2 runs \(abcd[12]{2}0{6} \(t\), abcd"):
        get_run("abcd")
    with pytest.raises(PipelineError, match="too short") as err:
        get_run("954")
    assert "at least 4 characters" in (err.value.fix or "")
    with pytest.raises(PipelineError, match="no pipeline run 'ffff'"):
        get_run("ffff")
    with pytest.raises(PipelineError, match=f"pipeline run abcd11{'0' * 26} already finished"):
        resume("abcd1")
