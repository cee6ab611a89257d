"""Where a prediction request's own CPU goes, stage by stage, in one process: no server, no client.

The credit-style pipeline of ``_setup.py`` is registered in a throw-away ``NBPROD_HOME`` and loaded through
the loader the server uses (``nbprod.service.load_version``: the compiled plan, the signature, the OOD
checker from the training profile). Then, for the same ``dataframe_records`` bodies as ``bench_serve.py``
(1 and 100 rows), the request path is timed as cumulative chains, each repeated many times with
``time.process_time`` (CPU time of this process only: the other helpers' load barely moves it):

    decode   = codecs.parse_json + codecs.decode_mlflow      (app._decode_mlflow for JSON)
    coerce   = codecs.coerce(batch, signature)                 (app._predict)
    ood      = served.ood_flags(cols, n)                       (app._predict: QuickOod)
    predict  = served.predict(cols, n)                         (the batcher's direct call: Plan.__call__)

A stage's figure is the difference of two chains (so it includes what an earlier stage leaves for it to do),
the median of ``--rounds`` rounds, each timed in a fresh child process that imports only what a server's worker
does. With ``--baseline-src`` the same timing runs with ``PYTHONPATH`` set to another src/ folder (e.g. the
session's starting point, ``/tmp/b0/src``), alternating with this one, and the ratio is printed::

    .venv/bin/python benchmarks/profile_request.py [--rows 1,100] [--rounds 5] [--baseline-src /tmp/b0/src]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

STAGES = ("decode", "coerce", "ood", "predict")


def _chains(served, body: bytes):
    """One callable per cumulative chain: decode, decode+coerce, ... (the request path's own calls)."""
    from nbprod.serving import codecs

    sig = served.signature

    def decode():
        return codecs.decode_mlflow(codecs.parse_json(body), sig)

    def coerce():
        batch = decode()
        return batch, codecs.coerce(batch, sig)

    def ood():
        batch, cols = coerce()
        return batch, cols, served.ood_flags(cols, batch.n)

    def predict():
        batch, cols, _ = ood()
        return served.predict(cols, batch.n)

    return [decode, coerce, ood, predict]


def _time(fn, budget: float) -> float:
    """CPU µs per call of ``fn``: calibrated to about ``budget`` CPU seconds."""
    n = 50
    while True:
        t0 = time.process_time()
        for _ in range(n):
            fn()
        spent = time.process_time() - t0
        if spent >= budget / 4 or n >= 2_000_000:
            break
        n *= 4
    reps = max(int(n * budget / max(spent, 1e-6)), 50)
    t0 = time.process_time()
    for _ in range(reps):
        fn()
    return (time.process_time() - t0) / reps * 1e6


def _alone(served, body: bytes):
    """One callable per stage on its input prepared once: parse, decode, coerce, ood, predict."""
    from nbprod.serving import codecs

    sig = served.signature
    payload = codecs.parse_json(body)
    batch = codecs.decode_mlflow(payload, sig)
    cols = codecs.coerce(batch, sig)
    n = batch.n

    def fresh():  # a request's coerced columns carry no value already worked out by an earlier call
        if hasattr(cols, "_row"):
            cols._row = None
        return cols

    return [lambda: codecs.parse_json(body), lambda: codecs.decode_mlflow(payload, sig),
            lambda: codecs.coerce(batch, sig), lambda: served.ood_flags(fresh(), n),
            lambda: served.predict(fresh(), n)]


def measure(uri: str, bodies: dict[int, str], budget: float) -> dict[int, dict[str, list[float]]]:
    """µs per stage for each body (in this process's nbprod): as chain differences, and each stage alone."""
    from nbprod.service import load_version

    served = load_version(uri)
    assert served.plan is not None, served.fastpath_reason
    out = {}
    for n, path in bodies.items():
        body = Path(path).read_bytes()
        chains = _chains(served, body)
        alone = _alone(served, body)
        for fn in chains + alone:  # warm: every lazy layout / cache filled
            fn()
        cumulative = [_time(fn, budget) for fn in chains]
        out[n] = {"chain": [cumulative[0]] + [b - a for a, b in zip(cumulative, cumulative[1:], strict=False)],
                  "alone": [_time(fn, budget / 2) for fn in alone]}
    return out


def _child(args) -> None:
    spec = json.loads(args.child)
    result = measure(spec["uri"], {int(k): v for k, v in spec["bodies"].items()}, spec["budget"])
    print(json.dumps({str(k): v for k, v in result.items()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="1,100", help="rows per request, comma-separated")
    ap.add_argument("--rounds", type=int, default=5, help="rounds (each side once per round, alternating)")
    ap.add_argument("--budget", type=float, default=0.4, help="CPU seconds per chain and body per round")
    ap.add_argument("--baseline-src", default=None, help="a src/ folder of another nbprod, timed in a child process")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    work = Path(tempfile.mkdtemp(prefix="nbprod-profile-request-"))
    os.environ["NBPROD_HOME"] = str(work / "home")
    for v in ("MLFLOW_TRACKING_URI", "NBPROD_DB_URL", "NBPROD_PREDICTION_LOG"):
        os.environ.pop(v, None)
    from _setup import pipeline

    from nbprod import registry
    from nbprod.datasets import credit
    from nbprod.service import load_version

    X, y = credit(2000, 0)
    bodies = {}
    for n in (int(x) for x in args.rows.split(",")):
        rows = X.dropna().head(1) if n == 1 else X.sample(n, replace=n > len(X), random_state=n)
        path = work / f"body{n}.json"
        path.write_text(json.dumps({"dataframe_records": json.loads(rows.to_json(orient="records"))}))
        bodies[n] = str(path)
    mv = registry.register(pipeline(X, y), "credit-risk", X, y)
    uri = f"credit-risk/{mv.version}"
    load_version(uri)  # the full load fills the start-up cache: both sides then start from it, as a server does
    sides: dict[str, list] = {"after": [], "before": []}
    spec = json.dumps({"uri": uri, "bodies": {str(k): v for k, v in bodies.items()}, "budget": args.budget})
    # each side in a fresh child process (this one has imported scikit-learn, pandas and MLflow to register the
    # model: more objects for every garbage collection to walk than a server's worker has)
    src = {"after": str(Path(__file__).resolve().parent.parent / "src")}
    if args.baseline_src:
        src["before"] = str(Path(args.baseline_src).resolve())
    for _ in range(args.rounds):
        for side, path in src.items():
            out = subprocess.run([sys.executable, __file__, "--child", spec], env=dict(os.environ, PYTHONPATH=path),
                                 capture_output=True, text=True, check=True).stdout
            sides[side].append({int(k): v for k, v in json.loads(out.splitlines()[-1]).items()})  # type: ignore
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"CPU µs per request and stage (median of {args.rounds} rounds, time.process_time); load {load}")
    for kind, stages, what in (("chain", [*STAGES, "total"], "as differences of cumulative chains"),
                               ("alone", ["parse", "decode", *STAGES[1:], "total"], "each stage alone")):
        print(f"\n{what}\n")
        print("| rows | stage | " + ("before | after | after/before |" if args.baseline_src else "µs |"))
        print("| --- | --- | " + ("--- | --- | --- |" if args.baseline_src else "--- |"))
        for n in bodies:
            for i, stage in enumerate(stages):
                def med(runs, n=n, i=i, total=stage == "total", kind=kind):
                    return statistics.median(sum(r[n][kind]) if total else r[n][kind][i] for r in runs)
                after = med(sides["after"])
                if args.baseline_src:
                    before = med(sides["before"])
                    print(f"| {n} | {stage} | {before:.1f} | {after:.1f} | {after / before:.2f}× |")
                else:
                    print(f"| {n} | {stage} | {after:.1f} |")


if __name__ == "__main__":
    main()
