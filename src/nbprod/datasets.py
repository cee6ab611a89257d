"""A synthetic credit-risk dataset with documented, switchable shifts.

nbprod's quickstart, tests and benchmarks need tabular data that ships offline and exercises
everything a real feature table has: numeric columns of several distributions, categoricals,
nulls, a binary label that depends on the features, and *known* shifts to detect. No public
dataset bundled with our dependencies has categoricals and a label, so this one is built, and
every step of its construction is written here.

Construction (``credit(n_rows, seed)``), one row per loan applicant:

============== ============================================ =====================================
column         distribution                                 notes
============== ============================================ =====================================
age            integer, uniform 18..75
income         lognormal(mean=10.6, sigma=0.5), yearly EUR   ~1.5 % nulls (not reported)
debt_ratio     beta(2, 5)                                   in [0, 1]
credit_lines   poisson(4)
late_payments  poisson(0.3)
employment     {employed 70 %, self-employed 15 %,
               unemployed 5 %, retired 10 %}
country        {DE 40 %, FR 30 %, US 20 %, NL 10 %}
purpose        {car, home, education, business, other}
============== ============================================ =====================================

The label ``default`` (0/1) is Bernoulli with logit
``-2.8 + 2.5·debt_ratio + 0.6·late_payments − 0.6·log(income/40000) − 0.01·(age−40)
+ 0.9·[unemployed] + 0.3·[business]`` (missing income counts as the median), giving a default
rate of about 15 %.

Shifts (``shift=``), each a documented change a monitor should catch:

* ``"income"`` — incomes fall by 30 % and nulls rise to 10 % (data drift on one column);
* ``"country"`` — a new market: 25 % of applicants come from ``PL``, unseen in training
  (unseen categories, OOD at serving);
* ``"concept"`` — same inputs, but the effect of ``debt_ratio`` on default doubles
  (concept drift: inputs look the same, the default rate rises to about 27 % and realised accuracy drops);
* ``"label"`` — the base default rate rises from about 15 % to about 27 % (intercept −2.0 instead of −2.8; label drift).
"""

from __future__ import annotations

__all__ = ["credit", "SHIFTS"]

SHIFTS = ("income", "country", "concept", "label")


def credit(n_rows: int = 5000, seed: int = 0, shift: str | None = None):
    """Return ``(X, y)``: a credit-risk feature frame and its ``default`` label Series."""
    import numpy as np
    import pandas as pd

    from .errors import DataError

    if shift is not None and shift not in SHIFTS:
        raise DataError(f"unknown shift {shift!r}", f"use one of {', '.join(SHIFTS)} or None")
    if n_rows < 1:
        raise DataError(f"n_rows must be positive, got {n_rows}", "ask for at least one row")
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.6, 0.5, n_rows)
    income_null_rate = 0.015
    if shift == "income":
        income *= 0.7
        income_null_rate = 0.10
    countries = ["DE", "FR", "US", "NL"]
    country_p = [0.4, 0.3, 0.2, 0.1]
    if shift == "country":
        countries = [*countries, "PL"]
        country_p = [0.3, 0.225, 0.15, 0.075, 0.25]
    X = pd.DataFrame(
        {
            "age": rng.integers(18, 76, n_rows),
            "income": income.round(2),
            "debt_ratio": rng.beta(2, 5, n_rows),
            "credit_lines": rng.poisson(4, n_rows),
            "late_payments": rng.poisson(0.3, n_rows),
            "employment": rng.choice(["employed", "self-employed", "unemployed", "retired"], n_rows,
                                     p=[0.7, 0.15, 0.05, 0.1]),
            "country": rng.choice(countries, n_rows, p=country_p),
            "purpose": rng.choice(["car", "home", "education", "business", "other"], n_rows),
        }
    )
    X.loc[rng.random(n_rows) < income_null_rate, "income"] = np.nan
    income_filled = X["income"].fillna(float(np.nanmedian(income)))
    debt_effect = 5.0 if shift == "concept" else 2.5
    base = -2.0 if shift == "label" else -2.8
    logit = (
        base
        + debt_effect * X["debt_ratio"]
        + 0.6 * X["late_payments"]
        - 0.6 * np.log(income_filled / 40000)
        - 0.01 * (X["age"] - 40)
        + 0.9 * (X["employment"] == "unemployed")
        + 0.3 * (X["purpose"] == "business")
    )
    y = pd.Series((rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(int), name="default")
    return X, y
