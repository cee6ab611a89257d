"""Write notebooks/quickstart.ipynb from the cells below.

The quickstart is code we ship, so it is kept as reviewable Python here and generated; edit the
cells here, run `python tools/build_quickstart.py`, commit both.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    ("md", """# nbprod quickstart

From a notebook to a monitored, reversible model service. This notebook is also what `make demo`
runs headless through papermill (the executed copy lands in `.nbprod/runs/`).

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
    ("code", """def failing(r):
    return ", ".join(f"{f.column} {f.check} ({f.count} rows)" for f in r.failures) or "none"

unseen = [f for f in report.failures if f.check == "unseen_category"]
assert unseen and unseen[0].column == "country"
print(f"validation: fresh data {'ok' if fresh_report.ok else 'flagged: ' + failing(fresh_report)}")
print(f"validation: new market flagged: {failing(report)}")""", ["summary"]),
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
