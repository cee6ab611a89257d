"""Past one machine: the same verbs on a real distributed.LocalCluster (2 worker processes on 127.0.0.1)
and on Dask's local scheduler — profile / validate / drift of a dask frame, nbprod.score.
"""

from __future__ import annotations

import pytest
from _batch_helpers import credit_home, local_cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with credit_home(tmp_path_factory, "dask") as home:
        yield home


@pytest.fixture(scope="module")
def client(home):
    with local_cluster() as c:
        yield c


def _frame(n=40_000, seed=3):
    import numpy as np

    from nbprod import datasets

    X, y = datasets.credit(n, seed=seed)
    X = X.assign(default=y.to_numpy())
    X.loc[X.index[::97], "income"] = np.nan  # nulls spread over every partition
    X.loc[X.index[5], "debt_ratio"] = np.inf
    X["flag"] = X.age > 40
    return X


def _check_merged(merged, single, data):
    """Exact where the statistic is exact; quantile edges within 1% in rank (the documented sketch)."""
    import numpy as np

    assert merged.n_rows == single.n_rows
    assert merged.column_names == single.column_names
    for name in single.column_names:
        a, b = merged[name], single[name]
        for stat in ("dtype", "kind", "null_count", "count", "min", "max", "neg_inf_count", "pos_inf_count",
                     "categories", "other_count"):
            assert getattr(a, stat) == getattr(b, stat), (name, stat)
        if b.kind in ("numeric", "boolean") and b.mean is not None:
            assert a.mean == pytest.approx(b.mean, rel=1e-9), name
        if b.std is not None and b.kind == "numeric":
            assert a.std == pytest.approx(b.std, rel=1e-9), name
        if b.kind in ("categorical", "boolean") or b.categories is not None:
            assert a.distinct_count == b.distinct_count, name
        else:
            assert a.distinct_count == pytest.approx(b.distinct_count, rel=0.02), name
        if b.quantiles is not None:
            values = data[name].to_numpy(dtype="float64")
            values = np.sort(values[np.isfinite(values)])
            # an edge for probability q is within eps in rank when F(edge-) - eps <= q <= F(edge) + eps
            q = np.linspace(0.0, 1.0, len(b.quantiles))
            below = np.searchsorted(values, a.quantiles, side="left") / len(values)
            at_or_below = np.searchsorted(values, a.quantiles, side="right") / len(values)
            error = np.maximum(below - q, q - at_or_below).max()
            assert error <= 0.005, (name, error)
            assert (a.quantiles[0], a.quantiles[-1]) == (b.quantiles[0], b.quantiles[-1])
    assert sum(len(v) for v in merged.sample.values()) == sum(len(v) for v in single.sample.values())


@pytest.mark.parametrize("where", ["cluster", "local"])
def test_profile_of_a_dask_frame_equals_the_single_machine_profile(home, client, where):
    import dask.dataframe as dd

    import nbprod

    data = _frame()
    ddf = dd.from_pandas(data, npartitions=6)
    merged = nbprod.profile(ddf, dask=client if where == "cluster" else None)
    same = ddf.compute()  # the data as Dask holds it (text as pyarrow strings)
    _check_merged(merged, nbprod.profile(same), same)


def test_a_parquet_frame_is_summarised_in_column_groups_with_the_same_profile(home, client, tmp_path):
    """Read straight from parquet, a partition's columns are read and summarised in groups (a worker
    holds a few columns of a row group at a time); the merged profile is the same as whole partitions'."""
    import dask.dataframe as dd

    import nbprod
    from nbprod.data import partitioned as P

    data = _frame(20_000)
    data.to_parquet(tmp_path / "frame.parquet", row_group_size=4000)
    ddf = dd.read_parquet(tmp_path / "frame.parquet", split_row_groups=True)
    groups = P._column_groups(ddf)
    assert len(data.columns) > P.PART_COLUMNS and len(groups) == -(-len(data.columns) // P.PART_COLUMNS) > 1
    assert [c for g in groups for c in g] == list(data.columns)
    assert len(P._column_groups(dd.from_pandas(data, npartitions=2))) == 1  # in memory: nothing to re-read
    assert len(P._column_groups(ddf[ddf.age > 30])) == 1  # computed: one pass over each partition
    same = ddf.compute()
    single = nbprod.profile(same)
    merged = nbprod.profile(ddf, dask=client)
    _check_merged(merged, single, same)
    rows = merged.sample_frame()  # age and flag are summarised in different groups: the same sampled rows
    assert len(rows) and (rows.flag == (rows.age > 40)).all()
    whole = nbprod.profile(ddf.map_partitions(lambda df: df), dask=None)  # not a plain read: whole partitions
    _check_merged(whole, single, same)


def test_validate_and_drift_of_a_dask_frame(home, client):
    import dask.dataframe as dd
    import numpy as np

    import nbprod
    from nbprod import datasets

    X, _ = datasets.credit(6000, seed=9)
    X.loc[X.index[[10, 2500, 5999]], "income"] = 1e12  # three rows out of range, in three partitions
    ddf = dd.from_pandas(X, npartitions=3)
    with __import__("dask").config.set(scheduler="threads"):
        report = nbprod.validate(ddf, "credit@champion")
    single = nbprod.validate(X, "credit@champion")
    assert report.n_rows == 6000
    assert {(f.column, f.check, f.count) for f in report.failures} == \
        {(f.column, f.check, f.count) for f in single.failures}
    assert ("income", "out_of_range", 3) in {(f.column, f.check, f.count) for f in report.failures}

    shifted, _ = datasets.credit(6000, seed=2, shift="income")
    drift = nbprod.drift("credit@champion", dd.from_pandas(shifted, npartitions=3))
    assert drift["income"].drifted and drift.n_current == 6000
    assert not np.isnan(drift["age"].score)


def test_score_on_the_cluster_equals_score_in_process(home, client, tmp_path):
    import pandas as pd

    import nbprod
    from nbprod import datasets

    X, _ = datasets.credit(3000, seed=4)
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        X.iloc[i * 1000:(i + 1) * 1000].to_parquet(src / f"part.{i}.parquet", row_group_size=250)
    on_cluster = nbprod.score("credit@champion", src, tmp_path / "a.parquet", dask=client, batch_rows=250,
                              progress=False)
    local = nbprod.score("credit@champion", src, tmp_path / "b.parquet", dask=False, batch_rows=250, progress=False,
                         log=False)
    assert "2 workers" in on_cluster.ran_on and on_cluster.partitions == 12 and on_cluster.logged == 3000
    assert local.ran_on.startswith("local") and (local.scored, local.logged) == (3000, 0)
    a, b = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    pd.testing.assert_frame_equal(a.drop(columns="prediction_id"), b.drop(columns="prediction_id"))
    pd.testing.assert_frame_equal(a[list(X.columns)], X, check_dtype=False)


def test_cli_profile_validate_and_drift_of_a_parquet_directory_with_dask(home, client, tmp_path, capsys):
    import dask.dataframe as dd

    from nbprod import Profile, datasets
    from nbprod.cli import main

    X, _ = datasets.credit(4000, seed=6)
    src = tmp_path / "parts"
    src.mkdir()
    for i in range(4):
        X.iloc[i * 1000:(i + 1) * 1000].to_parquet(src / f"part.{i}.parquet")
    out = tmp_path / "profile.json"
    assert main(["profile", str(src), "--dask", client.scheduler.address, "-o", str(out)]) == 0
    saved = Profile.load(out)
    assert saved.n_rows == 4000 and saved["age"].min == int(X.age.min())
    assert saved["country"].categories == Profile.load(out)["country"].categories
    local = main(["profile", str(src), "--dask", "local"])
    assert local == 0 and dd.read_parquet(src).npartitions == 4
    assert main(["validate", str(src), "--against", "credit@champion", "--dask", client.scheduler.address]) in (0, 1)
    assert "4,000 rows" in capsys.readouterr().out
    assert main(["drift", "credit@champion", str(src), "--dask", client.scheduler.address]) == 0
    assert main(["profile", str(tmp_path / "nothing"), "--dask", "local"]) == 2
    assert "no file or directory" in capsys.readouterr().err


def test_a_bad_or_silent_scheduler_address_is_one_error_and_the_command_exits_at_once(tmp_path):
    """``--dask notanaddress`` raised a bare ValueError; an address nothing listens on was a clean error, but the
    half-started ``distributed.Client`` closed itself at exit, held the process 40 s and printed "Exception
    ignored in Client.__del__ … timed out". Both are a ConfigError now, before any client exists."""
    import socket
    import subprocess

    from _servers import NBPROD

    from nbprod import datasets

    with socket.socket() as s:  # a port nothing listens on (bound, never listening)
        s.bind(("127.0.0.1", 0))
        silent = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        datasets.credit(50, seed=1)[0].to_parquet(tmp_path / "x.parquet")
        for address, says in (("notanaddress", "'notanaddress' is not a Dask scheduler address: missing port"),
                              (silent, f"cannot reach the Dask scheduler at '{silent}': Connection refused")):
            done = subprocess.run([NBPROD, "profile", str(tmp_path / "x.parquet"), "--dask", address],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 2 and says in done.stderr, done.stderr
            assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr


def test_a_large_partition_summary_samples_quantiles_and_keeps_the_exact_distinct_sketch():
    """A partition above PART_QUANTILE_SAMPLE rows reads its quantile points off a sample (within the
    documented rank error) and selects its smallest distinct hashes without sorting them all."""
    import numpy as np
    import pandas as pd

    from nbprod.data import partitioned as P

    rng = np.random.default_rng(5)
    n = P.PART_QUANTILE_SAMPLE * 3
    df = pd.DataFrame({"x": rng.lognormal(0, 1, n), "k": rng.integers(0, 50_000, n)})
    part = P._summarise(df, 100, seed=1)
    values = np.sort(df.x.to_numpy())
    points = part.points["x"]
    q = np.linspace(0.0, 1.0, len(points))
    rank_error = np.abs(np.searchsorted(values, points, side="right") / n - q).max()
    assert rank_error <= 0.005 and (points[0], points[-1]) == (values[0], values[-1])
    small = P._summarise(df[["x"]], 100, seed=2, q_sample=P._quantile_sample(8)).points["x"]  # 1 of 8 parts
    assert P._quantile_sample(8) == P.PART_QUANTILE_MIN
    assert np.abs(np.searchsorted(values, small, side="right") / n - q).max() <= 0.015  # DKW: 20,000 values
    for name in ("x", "k"):  # many distinct values, and many duplicates of fewer values
        hashes = P._hash64(df[name].to_numpy())
        exact = np.unique(hashes)[:P.KMV_SIZE]
        assert np.array_equal(part.hashes[name], exact), name


def test_partitions_without_rows_are_no_failure_but_data_without_rows_is(tmp_path):
    import dask
    import dask.dataframe as dd
    import pandas as pd

    from nbprod.data.profile import profile
    from nbprod.data.validate import validate
    from nbprod.errors import RuleError

    df = pd.DataFrame({"x": [float(i) for i in range(30)], "c": ["a", "b", "c"] * 10})
    p = profile(df)
    ddf = dd.from_pandas(df, npartitions=3)
    with dask.config.set(scheduler="threads"):
        some_empty = ddf[ddf.x < 5]  # the second and third partitions hold no row
        assert [len(part) for part in some_empty.partitions] == [5, 0, 0]
        assert validate(some_empty, p).ok
        report = validate(ddf[ddf.x < 0], p)
        assert report.n_rows == 0 and report.checks == ["no_rows"] and not report.ok
        assert validate(ddf[ddf.x < 0], rules={"x": {"min": 0}}).checks == ["no_rows"]
        with pytest.raises(RuleError, match="hold no rules"):
            validate(ddf, p, rules="# nothing\n")


def test_a_columns_share_of_missing_values_is_judged_over_all_partitions():
    import dask
    import dask.dataframe as dd
    import numpy as np
    import pandas as pd

    from nbprod.data.profile import profile
    from nbprod.data.validate import validate

    train = pd.DataFrame({"x": np.arange(1000.0)})
    train.loc[::125, "x"] = np.nan  # 0.8 % missing
    p = profile(train)
    new = pd.DataFrame({"x": np.arange(300.0)})
    new.loc[290:, "x"] = np.nan  # 10 of 300 (3.3 %), all in the last partition (10 of 100 there)
    with dask.config.set(scheduler="threads"):
        assert validate(dd.from_pandas(new, npartitions=3), p).ok
        assert validate(new.iloc[200:], p).checks == ["nulls"]  # that partition alone would fail
        new.loc[100:, "x"] = np.nan
        report = validate(dd.from_pandas(new, npartitions=3), p)
    single = validate(new, p)
    assert [(f.column, f.check, f.count, f.message) for f in report.failures] == \
        [(f.column, f.check, f.count, f.message) for f in single.failures] == \
        [("x", "nulls", 200, single.failures[0].message)]
    assert "(66.67%), the training data had 0.80%" in single.failures[0].message
