"""Render docs/monitor.png: the monitoring panel's charts for a day of synthetic credit traffic.

12 hours of traffic on a credit-risk pipeline, v2 promoted at hour 6, incomes shifting from hour 8
(nbprod.datasets.credit shift="income"), labels arriving for every row. Needs vl-convert-python.

    .venv/bin/python docs/make_monitor_png.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    home = tempfile.mkdtemp(prefix="nbprod-monitor-png-")
    os.environ["NBPROD_HOME"] = home
    os.environ.pop("NBPROD_DB_URL", None)
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from nbprod.data.profile import profile
    from nbprod.datasets import credit
    from nbprod.monitoring.feedback import feedback
    from nbprod.monitoring.predlog import log_rows
    from nbprod.monitoring.widget import panel

    X, y = credit(5000, 0)
    num = [c for c in X.columns if X[c].dtype.kind in "if"]
    cat = [c for c in X.columns if c not in num]
    pipe = make_pipeline(ColumnTransformer([("num", make_pipeline(SimpleImputer(), StandardScaler()), num),
                                            ("cat", OneHotEncoder(handle_unknown="ignore"), cat)]),
                         LogisticRegression(max_iter=300)).fit(X, y)
    start = (time.time() // 3600 - 12) * 3600
    rng = np.random.default_rng(0)
    records, ids, labels = [], [], []
    for h in range(12):
        Xh, yh = credit(600, 100 + h, shift="income" if h >= 8 else ("concept" if h >= 10 else None))
        proba = pipe.predict_proba(Xh)
        for i in range(0, 600, 20):
            rid = f"r{h}-{i}"
            sl = slice(i, i + 20)
            cols = {c: Xh[c].iloc[sl].to_numpy() if c in num else Xh[c].iloc[sl].tolist() for c in Xh.columns}
            lat = float(rng.gamma(4, 1.2 if h < 6 else 2.0))
            records.append(("prediction", start + h * 3600 + i * 6, {"request_id": rid, "version": "1" if h < 6 else "2",
                                                                    "role": "stable", "n": 20, "inputs": cols,
                                                                    "predictions": proba[sl], "ood": None, "latency_ms": lat}))
            ids += [f"{rid}-{j}" for j in range(20)]
            labels += [int(v) for v in yh.iloc[sl]]
    log_rows("credit", records)
    feedback(ids, labels)
    p = panel("credit", since=start, reference=profile(X), interval=None, rules=["p95_ms > 12", "roc_auc < 0.75"])
    out = Path(__file__).resolve().parent / "monitor.png"
    p.save_png(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
