"""Write notebooks/quickstart.ipynb from the cells below.

The quickstart is code we ship, so it is kept as reviewable Python here and generated; edit the
cells here, run `python tools/build_quickstart.py`, commit both.
"""
# ruff: noqa: E501 - the cells' code is laid out for the notebook's reader, not for this file's line length

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    ("md", """# nbprod quickstart

From a notebook to a monitored, reversible model service. This notebook is also what `make demo`
runs headless through papermill (the executed copy lands in `.nbprod/runs/`). Run it as often as you
like: each run registers new versions of `credit-risk` and redeploys `credit`, and every check
below reads the version numbers this run got instead of assuming v1 and v2.

The data is nbprod's synthetic credit-risk set (`nbprod.datasets.credit`): it ships with nbprod,
nothing is downloaded, and its construction and built-in shifts are documented in its docstring."""),
    ("code", "n_rows = 5000\nseed = 0", ["parameters"]),
    ("code", """%load_ext nbprod
import nbprod
from nbprod.datasets import credit

X, y = credit(n_rows, seed)
X.head()"""),
    ("md", """## 1. Profile the training data

The profile is the baseline every later check uses: validation, input checks at serving time, drift."""),
    ("code", """prof = nbprod.profile(X)
prof"""),
    ("md", """## 2. Validate new data against it

Fresh data from the same source is close to the training data, though a heavy-tailed column such
as `income` can put a value or two past the training extremes (the seen range is widened by
`range_tolerance`, 10 % of its span by default). Data from a new market (`shift="country"`: 25 % of
applicants from `PL`, never seen in training) fails clearly — and the report says where and how often."""),
    ("code", """fresh, _ = credit(1000, seed + 1)
fresh_report = %nbprod validate fresh --against prof
fresh_report"""),
    ("code", """new_market, _ = credit(1000, seed + 2, shift="country")
report = nbprod.validate(new_market, against=prof)
report"""),
    ("md", """Rules can also be written by hand, as YAML in a cell:"""),
    ("code", """%%nbprod expect new_market
income: {min: 0, nullable: true}
country: {in: [DE, FR, US, NL]}
debt_ratio: {min: 0, max: 1, nullable: false}"""),
    ("md", """## 3. Train, register, and compare with the champion

Two candidate models. `register` stores each with everything production needs: the training
profile, the signature and an input example, metrics, the notebook and git commit it came from,
pinned requirements and a sha256 manifest of every file — and writes a row to the audit log."""),
    ("code", """from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

numeric = ["age", "income", "debt_ratio", "credit_lines", "late_payments"]
categorical = ["employment", "country", "purpose"]
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=seed)

def pipeline(columns, C=1.0):
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), [c for c in columns if c in numeric]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), [c for c in columns if c in categorical]),
    ])
    return make_pipeline(pre, LogisticRegression(C=C, max_iter=1000)).fit(X_train[columns], y_train)

baseline = pipeline(["age", "income", "employment"])      # a weak first model
candidate = pipeline(numeric + categorical)               # every feature"""),
    ("code", """champion = nbprod.register(baseline, "credit-risk", X_train[["age", "income", "employment"]], y_train,
                           metrics={"note_features": 3}, alias="champion")
champion"""),
    ("code", """challenger = %nbprod register candidate --name credit-risk --data X_train y_train --alias challenger
challenger"""),
    ("code", """result = nbprod.evaluate("credit-risk@challenger", X_test, y_test, against="@champion",
                         thresholds={"roc_auc": {"min_absolute_change": 0.0}, "accuracy": {"threshold": 0.7}})
result"""),
    ("code", """%nbprod models credit-risk"""),
    ("md", """## 4. Package it for Docker and Kubernetes

A self-contained bundle: the model with its manifest, a Dockerfile that runs `nbprod serve`,
pinned requirements with an nbprod wheel, and Kubernetes + KServe manifests."""),
    ("code", """bundle = nbprod.package("credit-risk@challenger", f"{nbprod.settings.home}/bundles/credit-risk", overwrite=True)
bundle"""),
    ("code", """%nbprod audit credit-risk --limit 5"""),
    ("md", """## 5. Deploy, canary, promote, roll back

`deploy` starts a detached REST server on 127.0.0.1 (it survives a kernel restart), serving the
MLflow scoring protocol and the Open Inference Protocol, with Prometheus metrics at `/metrics`.
Its bearer token is shown once, and not in the cell's output (a saved notebook keeps its
outputs): `service.token` holds it. Deploying another version to the same name adds it beside the
running one; `budget_p95_ms` load-tests it first and refuses it if it is too slow."""),
    ("code", """if any(d.name == "credit" and d.state != "stopped" for d in nbprod.status()):
    nbprod.undeploy("credit")  # an earlier run stopped half-way: start this one afresh
service = nbprod.deploy("credit-risk@champion", name="credit")
token = service.token
service"""),
    ("code", """answer = service.predict(X_test.head(5))
answer"""),
    ("code", """canary = nbprod.deploy("credit-risk@challenger", name="credit", canary=20, budget_p95_ms=250, token=token)
canary"""),
    ("code", """from collections import Counter

v_champion, v_challenger = str(champion.version), str(challenger.version)  # this run's versions
served = Counter(service.predict(X_test.sample(1, random_state=i))["model_version"] for i in range(100))
served  # about 80 % the champion's version, 20 % the challenger's"""),
    ("code", """promoted = %nbprod promote credit
promoted"""),
    ("code", """rolled_back = nbprod.rollback("credit")
assert service.predict(X_test.head(1))["model_version"] == v_champion
rolled_back"""),
    ("code", """%nbprod status"""),
    ("md", """## 6. Monitor: drift, realised performance, latency, alerts

Every answer the server gives goes to the prediction log: inputs, outputs, version, latency and
prediction ids. Here the applicants' incomes drift; their true outcomes arrive later and are
joined by prediction id. `monitor` turns the log into windows, against the serving version's
training profile. The panel below is live: it refreshes every 30 seconds while the kernel runs
(`panel.stop()` ends it) in one-minute windows over the last 20 minutes; its tabs show drift per
column, realised performance, latency and the alert rules' states."""),
    ("code", """import time

drifted, drifted_truth = credit(600, seed + 3, shift="income")
answers = [service.predict(drifted.iloc[i:i + 50]) for i in range(0, len(drifted), 50)]
time.sleep(1)  # the server writes its log in the background, every 0.25 s
labels = nbprod.feedback([pid for a in answers for pid in a["prediction_ids"]], drifted_truth)
labels"""),
    ("code", """panel = %nbprod monitor credit --window 1m --since 20m --min-rows 50 --rule "drift_share > 0.3" --rule "p95_ms > 250"
panel"""),
    ("md", """The same rules, checked once the way `nbprod monitor credit --check` checks them from cron (add
`--webhook URL` to post to Slack):"""),
    ("code", """monitored = %nbprod monitor credit --check --min-rows 50 --rule "drift_share > 0.3" --rule "p95_ms > 250"
monitored"""),
    ("code", """nbprod.drift("credit-risk@champion", drifted)"""),
    ("code", """nbprod.undeploy("credit")"""),
    ("code", """def failing(r):
    return ", ".join(f"{f.column} {f.check} ({f.count} rows)" for f in r.failures) or "none"

unseen = [f for f in report.failures if f.check == "unseen_category"]
assert unseen and unseen[0].column == "country"
print(f"validation: fresh data {'ok' if fresh_report.ok else 'flagged: ' + failing(fresh_report)}")
print(f"validation: new market flagged: {failing(report)}")
roc = result["roc_auc"]
print(f"registry: credit-risk v{v_champion} @champion, v{v_challenger} @challenger;",
      f"challenger ROC AUC {roc.candidate:.3f} vs champion {roc.champion:.3f} -> {'passed' if result.ok else 'FAILED'}")
print(f"package: bundle with {len(bundle.files)} files at {bundle.path}")
print(f"serving: canary v{v_challenger} took {served[v_challenger]} of 100 requests; latency gate p95 {canary.latency['p95_ms']:.1f} ms"
      f" (budget 250 ms)")
print(f"promote applied to every worker in {promoted.last_change_s:.2f} s; rollback in {rolled_back.last_change_s:.2f} s")
share, _, _ = monitored.latest("drift_share")
accuracy, _, _ = monitored.latest("accuracy")
p95, _, _ = monitored.latest("p95_ms")
firing = [o.rule for o in monitored.alerts.outcomes if o.state == "firing"]
print(f"monitoring: {len(labels.stored)} labels joined; drift share {share:.2f}, realised accuracy {accuracy:.3f}, "
      f"p95 {p95:.1f} ms; alerts firing: {', '.join(firing) or 'none'}")
print(f"audit: chain {'verified' if nbprod.audit.verify().ok else 'BROKEN'}")""", ["summary"]),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, source, *tags) in enumerate(CELLS):
        cell = new_markdown_cell(source) if kind == "md" else new_code_cell(source)
        if tags:
            cell.metadata["tags"] = tags[0]
        cell["id"] = f"quickstart-{i:02d}"  # stable ids: clean diffs
        nb.cells.append(cell)
    return nb


if __name__ == "__main__":
    target = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
    nb = build()
    nbformat.validate(nb)
    nbformat.write(nb, target)
    print(f"wrote {target}")
