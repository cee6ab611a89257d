"""``nbprod check train.ipynb``: what stops a notebook from giving the same result twice.

A lint for hand-over, run before the first job: outputs stored from an out-of-order execution,
randomness without a seed (numpy, ``random``, scikit-learn's ``random_state``), absolute paths,
data read from a URL without a tracked hash, no ``parameters`` cell. It reads the notebook's
code with ``ast`` (magics turned into Python first); it runs nothing. Each finding says the fix.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._display import Display, Facts, View
from ..errors import JobError
from .params import has_parameters_cell, python_source, read_notebook, user_code_cells

__all__ = ["check", "CheckReport", "Finding"]

#: scikit-learn callables whose result depends on ``random_state`` when it is not given.
_SKLEARN_RANDOM = {
    "train_test_split", "KFold", "StratifiedKFold", "ShuffleSplit", "StratifiedShuffleSplit", "GroupShuffleSplit",
    "RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor",
    "GradientBoostingClassifier", "GradientBoostingRegressor", "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor", "DecisionTreeClassifier", "DecisionTreeRegressor", "MLPClassifier",
    "MLPRegressor", "SGDClassifier", "SGDRegressor", "KMeans", "MiniBatchKMeans", "RandomizedSearchCV",
    "IsolationForest", "BaggingClassifier", "BaggingRegressor", "AdaBoostClassifier", "AdaBoostRegressor",
    "PCA", "TruncatedSVD", "TSNE", "make_classification", "make_regression", "make_blobs", "shuffle", "resample",
    "XGBClassifier", "XGBRegressor", "LGBMClassifier", "LGBMRegressor", "cross_val_score", "permutation_importance",
}
_NP_SEEDS = {"seed", "default_rng", "RandomState", "Generator", "SeedSequence"}
_READERS = {"read_csv", "read_parquet", "read_json", "read_excel", "read_table", "read_feather", "urlopen", "get",
            "urlretrieve", "load", "loadtxt", "genfromtxt", "fetch_openml", "read_html"}
_URL = re.compile(r"^(https?|s3|gs|ftp)://", re.I)
_ABS = re.compile(r"^(/(home|Users|mnt|data|tmp|opt|var|srv|root|media|workspace|content)/|[A-Za-z]:\\|~/)")


@dataclass
class Finding:
    rule: str
    cell: int | None
    line: int | None
    message: str
    fix: str

    def where(self) -> str:
        if self.cell is None:
            return "notebook"
        return f"cell {self.cell}" + (f", line {self.line}" if self.line else "")


@dataclass(repr=False)
class CheckReport(Display):
    notebook: Path
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def rules(self) -> set[str]:
        return {f.rule for f in self.findings}

    def to_dict(self) -> dict[str, Any]:
        return {"notebook": str(self.notebook), "ok": self.ok, "findings": [vars(f) for f in self.findings]}

    def _view(self) -> View:
        if self.ok:
            return View(f"{self.notebook}: no reproducibility problems found", tone="ok")
        # a card per finding, not a table: a problem and its fix are sentences, too wide for columns
        items = [(f.where(), f"[{f.rule}] {f.message}\nfix: {f.fix}") for f in self.findings]
        return View(f"{self.notebook}: {len(self.findings)} reproducibility problem(s)", [Facts(items)], tone="bad")


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return ""


def _order(nb) -> list[Finding]:
    counts = [(n, c.get("execution_count")) for n, c in user_code_cells(nb) if c.get("execution_count") is not None]
    for (n0, a), (n1, b) in zip(counts, counts[1:], strict=False):
        if b <= a:
            return [Finding("out-of-order", n1, None,
                            f"stored outputs come from an out-of-order run: cell {n1} ran as [{b}] "
                            f"after cell {n0} ran as [{a}]",
                            "restart the kernel and run all cells top to bottom, then save (or clear all outputs)")]
    return []


def _code_findings(nb) -> list[Finding]:
    findings: list[Finding] = []
    np_seeded = random_seeded = tracked = False
    np_uses: list[tuple[int, int, str]] = []
    random_uses: list[tuple[int, int, str]] = []
    url_reads: list[tuple[int, int, str]] = []
    for number, cell in user_code_cells(nb):
        try:
            tree = ast.parse(python_source(cell.source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = _name(node.func)
                last = name.rsplit(".", 1)[-1]
                if name.endswith("track_input"):
                    tracked = True
                if ".random." in f".{name}" and name.split(".")[0] in ("np", "numpy") and last:
                    if last in _NP_SEEDS and (node.args or node.keywords):
                        np_seeded = True
                    elif last not in _NP_SEEDS:
                        np_uses.append((number, node.lineno, name))
                    elif last == "default_rng":
                        np_uses.append((number, node.lineno, name + "()"))
                elif name.startswith("random.") and name.count(".") == 1:
                    if last == "seed" and (node.args or node.keywords):
                        random_seeded = True
                    elif last != "seed":
                        random_uses.append((number, node.lineno, name))
                elif last in _SKLEARN_RANDOM and not any(k.arg == "random_state" for k in node.keywords):
                    if last in ("shuffle", "get", "load", "resample") and "." in name:
                        pass  # requests.get, json.load, df.sample... not scikit-learn
                    else:
                        findings.append(Finding(
                            "unseeded-random", number, node.lineno,
                            f"{last}(...) without random_state: results change from run to run",
                            f"pass random_state=<a fixed int> to {last} (best a parameter, e.g. seed)"))
                if last in _READERS and node.args and isinstance(node.args[0], ast.Constant) \
                        and isinstance(node.args[0].value, str) and _URL.match(node.args[0].value):
                    url_reads.append((number, node.lineno, node.args[0].value))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and _ABS.match(node.value) \
                    and "\n" not in node.value and len(node.value) < 300:
                findings.append(Finding(
                    "absolute-path", number, getattr(node, "lineno", None),
                    f"absolute path {node.value!r} only exists on one machine",
                    "use a path relative to the notebook (jobs run in the notebook's folder), or make it a parameter"))
    if np_uses and not np_seeded:
        n, line, name = np_uses[0]
        findings.append(Finding("unseeded-random", n, line, f"{name} draws numpy random numbers without a seed",
                                "seed it: rng = np.random.default_rng(seed) (or np.random.seed(seed)), "
                                "with seed a parameter"))
    if random_uses and not random_seeded:
        n, line, name = random_uses[0]
        findings.append(Finding("unseeded-random", n, line, f"{name}() uses Python's random module without a seed",
                                "call random.seed(seed) first, with seed a parameter"))
    if url_reads and not tracked:
        for n, line, url in url_reads:
            findings.append(Finding("untracked-url", n, line,
                                    f"reads {url} with no hash: the data behind a URL can change",
                                    "record what was read: nbprod.track_input(df, name='...') right after reading it"))
    return findings


def check(notebook: str | Path) -> CheckReport:
    """Lint ``notebook`` for reproducibility; each finding has its fix."""
    path = Path(notebook)
    if not path.is_file():
        raise JobError(f"no notebook at {path}", "pass the path of an existing .ipynb file")
    nb = read_notebook(path)
    findings = _order(nb) + _code_findings(nb)
    if not has_parameters_cell(nb):
        findings.append(Finding("no-parameters-cell", None, None,
                                "no cell is tagged 'parameters': -p values are injected at the top and the "
                                "notebook's own assignments overwrite them",
                                "tag the cell that sets the notebook's settings 'parameters' "
                                "(JupyterLab: property inspector → Cell Tags)"))
    findings.sort(key=lambda f: (f.cell or 0, f.line or 0))
    return CheckReport(path, findings)
