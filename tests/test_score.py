"""nbprod.score / `nbprod score`: a registered model over partitioned parquet, as the server scores it.

Runs on Dask's local scheduler here; tests/test_dask.py runs the same calls on a LocalCluster.
"""

from __future__ import annotations

import json
import re

import pytest
from _batch_helpers import credit_home

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def credit_model(tmp_path_factory):
    with credit_home(tmp_path_factory, "score") as home:
        yield home


def _input(tmp_path, n=1000, parts=1, seed=5, ood=False):
    from nbprod import datasets

    X, _ = datasets.credit(n, seed=seed)
    if ood:  # rows outside the training distribution: the server flags them, so must score
        X.loc[[5, n - 100], "income"] = 1e9
        X.loc[n // 2, "country"] = "Atlantis"
    if parts == 1:
        path = tmp_path / "input.parquet"
        X.to_parquet(path, row_group_size=150)
    else:
        path = tmp_path / "input"
        path.mkdir()
        size = -(-n // parts)
        for i in range(parts):
            X.iloc[i * size:(i + 1) * size].to_parquet(path / f"part.{i}.parquet", row_group_size=100)
    return X, path


def test_score_matches_the_server_keeps_order_and_logs_as_batch(credit_model, tmp_path):
    import numpy as np
    import pandas as pd

    import nbprod
    from nbprod.data.validate import row_flags
    from nbprod.monitoring.logread import rows as log_rows
    from nbprod.monitoring.predlog import ensure_tables, prediction_records
    from nbprod.registry.loading import load_model
    from nbprod.service import load_version

    X, src = _input(tmp_path, n=1000, parts=3, ood=True)
    out = tmp_path / "scored.parquet"
    result = nbprod.score("credit@champion", src, out, batch_rows=120, progress=False)
    assert (result.rows, result.scored, result.rejected) == (1000, 1000, 0)
    assert result.partitions > 3  # parts of ~120 rows, not one task per file
    scored = pd.read_parquet(out)
    pd.testing.assert_frame_equal(scored[list(X.columns)], X.reset_index(drop=True), check_dtype=False)
    assert {"prediction", "prediction_id", "model_version", "ood", "proba_0", "proba_1"} <= set(scored.columns)
    assert scored.prediction_id.is_unique and (scored.model_version == "1").all()
    # the same answer as the server's code path (load_version + coerce + fast path) on the whole frame
    served = load_version("credit@champion")
    expected = load_model("credit@champion").predict(X)
    assert np.array_equal(scored.prediction.to_numpy(), np.asarray(expected))
    assert served.ood is not None
    flags, reasons = row_flags(X, nbprod.load_profile("credit@champion"))
    assert flags.sum() == 3 and [list(r) for r in scored.ood] == reasons and result.ood == 3
    # fed to the prediction log as batch rows, ids joinable to the output
    with ensure_tables().connect() as conn:  # one record per scored batch, not one row per scored row
        records = conn.execute(prediction_records.select().where(prediction_records.c.role == "batch")).fetchall()
    assert len(records) < 1000 // 10 and sum(r.n_rows for r in records) == 1000  # batches of up to 120 rows
    rows = [r for r in log_rows() if r.role == "batch"]
    assert len(rows) == 1000 and {r.deployment for r in rows} == {"credit"}
    assert {r.prediction_id for r in rows} == set(scored.prediction_id)
    sample = next(r for r in rows if r.prediction_id == scored.prediction_id[7])
    assert json.loads(sample.inputs)["age"] == int(X.age.iloc[7])


def test_monitor_covers_a_batch_job_marked_as_batch(credit_model, tmp_path):
    """The issue: results fed to the prediction log so ``nbprod.monitor`` covers batch jobs too (marked as
    batch): health, OOD rate, input drift and — once labels arrive for the output's prediction ids —
    realised performance, all over the job's rows."""
    import numpy as np
    import pandas as pd
    from _registry_helpers import pipeline

    import nbprod
    from nbprod import datasets
    from nbprod.monitoring.logread import rows as log_rows

    train_X, train_y = datasets.credit(1500, seed=21)
    nbprod.register(pipeline(train_X, train_y), "nightly", train_X, train_y, alias="champion")
    X, y = datasets.credit(800, seed=22)
    X.loc[[4, 400], "income"] = 1e9  # two rows the server would flag out of distribution
    src = tmp_path / "month"
    src.mkdir()
    for i in range(2):
        X.iloc[i * 400:(i + 1) * 400].to_parquet(src / f"part.{i}.parquet", row_group_size=100)
    out = tmp_path / "scored"
    result = nbprod.score("nightly@champion", src, out, batch_rows=100, progress=False)
    assert (result.scored, result.logged, result.ood) == (800, 800, 2)

    roles = [r.role for r in log_rows("nightly")]
    assert len(roles) == 800 and set(roles) == {"batch"}  # marked as batch in the log

    scored = pd.read_parquet(out)
    assert nbprod.feedback(list(scored.prediction_id), list(y)).ok  # the output's ids join to the log
    report = nbprod.monitor("nightly")
    assert report.latest("rows")[0] == 800
    assert report.latest("ood_rate")[0] == pytest.approx(2 / 800)
    accuracy, status, _ = report.latest("accuracy")
    assert status == "ok" and accuracy == pytest.approx(float(np.mean(scored.prediction.to_numpy() == y.to_numpy())))
    assert report.last_drift is not None and "income" in {c.column for c in report.last_drift.columns}


def test_bad_rows_go_to_the_reject_file_with_their_reason(credit_model, tmp_path):
    import pandas as pd

    import nbprod

    X, _ = _input(tmp_path, n=400)
    bad = X.astype({"income": object, "age": "Int64"})
    bad.loc[[3, 250], "income"] = "lots"
    bad.loc[77, "age"] = pd.NA
    src = tmp_path / "bad.parquet"
    bad.assign(income=bad.income.astype(str)).to_parquet(src, row_group_size=100)
    out = tmp_path / "scored"
    result = nbprod.score("credit@champion", src, out, batch_rows=100, progress=False, log=False)
    assert (result.rows, result.scored, result.rejected) == (400, 397, 3)
    assert out.is_dir() and len(list(out.glob("part-*.parquet"))) == 4
    rejects = pd.read_parquet(result.rejects)
    assert list(rejects._row) == [3, 77, 250]
    assert "income" in rejects._reason[0] and "lots" in rejects._reason[0]
    assert "missing value" in rejects._reason[1]
    scored = pd.read_parquet(out)
    assert len(scored) == 397 and list(scored.age) == [a for i, a in enumerate(X.age) if i not in (3, 77, 250)]
    assert "scored 397 of 400" in str(result) and re.search(r"rejected +3 → ", str(result))


def test_on_bad_rows_fail_stops_and_writes_nothing(credit_model, tmp_path):
    import nbprod
    from nbprod.errors import DataError

    X, _ = _input(tmp_path, n=300)
    X = X.astype({"income": object})
    X.loc[123, "income"] = "n/a"
    src = tmp_path / "bad.parquet"
    X.assign(income=X.income.astype(str)).to_parquet(src)
    out = tmp_path / "scored.parquet"
    with pytest.raises(DataError, match=r"row 123: .*income"):
        nbprod.score("credit@champion", src, out, on_bad_rows="fail", progress=False, log=False)
    assert not out.exists() and not any(p.name.startswith(".scored") for p in tmp_path.iterdir())


def test_a_missing_column_stops_before_anything_runs(credit_model, tmp_path):
    import nbprod
    from nbprod.errors import DataError

    X, _ = _input(tmp_path, n=50)
    src = tmp_path / "partial.parquet"
    X.drop(columns=["income"]).to_parquet(src)
    with pytest.raises(DataError, match="no column 'income'"):
        nbprod.score("credit@champion", src, tmp_path / "o.parquet", progress=False)


def test_an_output_that_cannot_be_written_is_a_data_error(credit_model, tmp_path):
    """An output folder that cannot be made raised the raw NotADirectoryError (a traceback in the terminal)."""
    import nbprod
    from nbprod.errors import DataError

    X, _ = _input(tmp_path, n=20)
    (tmp_path / "a-file").write_text("x")
    for out in (tmp_path / "a-file" / "scored.parquet", tmp_path / "a-file" / "parts"):
        with pytest.raises(DataError, match=r"cannot write the output beside .*a-file/.*: Not a directory"):
            nbprod.score("credit@champion", X, out, progress=False, log=False)


def test_what_a_killed_score_left_is_cleared_by_the_next_one(credit_model, tmp_path):
    """A SIGKILLed ``nbprod score`` left its staging folder (parts of the output) beside the output for good."""
    import subprocess

    import nbprod

    X, _ = _input(tmp_path, n=20)
    child = subprocess.Popen(["true"])
    child.wait()  # its pid names no process now
    left = tmp_path / f".scored.parquet.nbprod-score-{child.pid}-0a1b2c3d"
    (left / "out").mkdir(parents=True)
    nbprod.score("credit@champion", X, tmp_path / "scored.parquet", progress=False, log=False)
    assert not left.exists() and (tmp_path / "scored.parquet").is_file()


def test_a_frame_and_a_dask_frame_give_the_same_rows(credit_model, tmp_path):
    import dask.dataframe as dd
    import pandas as pd

    import nbprod

    X, _ = _input(tmp_path, n=500)
    a = nbprod.score("credit@champion", X, batch_rows=64, progress=False, log=False).frame
    b = nbprod.score("credit@champion", dd.from_pandas(X, npartitions=4), batch_rows=64, progress=False,
                     log=False).frame
    pd.testing.assert_frame_equal(a.drop(columns=["prediction_id"]), b.drop(columns=["prediction_id"]),
                                  check_dtype=False)  # dask reads text as pyarrow strings
    assert len(a) == 500


def test_cli_score(credit_model, tmp_path):
    import pandas as pd

    from nbprod.cli import main

    _, src = _input(tmp_path, n=200)
    out = tmp_path / "cli.parquet"
    assert main(["score", "credit@champion", str(src), str(out), "--no-progress"]) == 0
    assert len(pd.read_parquet(out)) == 200
    assert main(["score", "credit@champion", str(src), str(out), "--no-progress"]) != 0  # exists: refused


def test_a_compiled_version_scores_big_batches_without_its_mlflow_model(credit_model, tmp_path):
    """The server's compiled plan predicts every batch — text columns handed to it as dictionary codes — so
    a job without class probabilities never loads the MLflow model, and gets the MLflow model's answers."""
    import numpy as np
    import pandas as pd

    import nbprod
    from nbprod.batch import score as job
    from nbprod.data.validate import row_flags
    from nbprod.registry.loading import load_model
    from nbprod.service import load_version

    X, src = _input(tmp_path, n=6000, ood=True)  # batches of 5,000 rows, over row groups of 150
    load_version("credit@champion")  # the server's start-up cache: a later load does not open the MLflow model
    job._loaded.clear()
    out = tmp_path / "scored"
    result = nbprod.score("credit@champion", src, out, batch_rows=5000, probabilities=False, progress=False, log=False)
    (served,) = job._loaded.values()
    assert served.plan is not None and served._pyfunc is None
    scored = pd.read_parquet(out)
    flags, reasons = row_flags(X, nbprod.load_profile("credit@champion"))
    assert (result.scored, result.ood) == (6000, flags.sum()) and [list(r) for r in scored.ood] == reasons
    assert np.array_equal(scored.prediction.to_numpy(), np.asarray(load_model("credit@champion").predict(X)))
    assert list(scored.prediction_id.str.split("-", n=1).str[1][[0, 4999, 5000]]) == ["0.0-0", "0.0-4999", "0.1-0"]
