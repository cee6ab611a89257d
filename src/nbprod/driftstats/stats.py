"""The drift statistics, vectorised on numpy arrays and counts.

Each function computes one statistic the way scipy (and Evidently, which calls scipy) does, but
from the smallest input that determines it: sorted arrays, per-category counts, or per-bin masses.
That is what lets the drift engine work from a training profile: a categorical reference is its
counts, a numeric reference its quantiles. Functions that are exact say so; the two that work
from summaries (:func:`wasserstein_from_quantiles`, :func:`masses_from_quantiles`) say how they
approximate. Nothing here imports pandas.

All p-value functions return Python floats; a statistic that cannot be computed (one category,
no data) is ``nan`` here and becomes an explicit "not enough data" row in the report.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats
from scipy.special import ndtr

__all__ = [
    "ks_2samp",
    "chisquare_counts",
    "ztest_counts",
    "wasserstein_sorted",
    "wasserstein_weighted",
    "wasserstein_from_quantiles",
    "bin_means_from_quantiles",
    "jensenshannon",
    "psi",
    "sturges_edges",
    "masses_from_quantiles",
    "fill_zeroes",
]


def ks_2samp(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sided two-sample Kolmogorov–Smirnov ``(statistic, p_value)``: scipy's own result.

    scipy chooses the exact distribution for small samples and the asymptotic one for large; the
    p-value must match it, so this delegates to ``scipy.stats.ks_2samp`` (it only ever runs on a
    reference of at most a few thousand rows or on a profile's sample).
    """
    result = stats.ks_2samp(reference, current)
    return float(result.statistic), float(result.pvalue)


def chisquare_counts(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float]:
    """Evidently's chi-square test: observed current counts against reference counts scaled to
    the current total (``scipy.stats.chisquare(f_obs, f_exp)``), over the union of categories.

    A category seen only in the current data gives an infinite statistic and p-value 0 (scipy
    divides by zero there); a single category gives ``nan`` (no degrees of freedom).
    """
    ref = np.asarray(ref_counts, dtype=float)
    cur = np.asarray(cur_counts, dtype=float)
    k = ref.size
    if k < 2 or ref.sum() == 0 or cur.sum() == 0:
        return math.nan, math.nan
    expected = ref * (cur.sum() / ref.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = (cur - expected) ** 2 / expected
    terms = np.where((expected == 0) & (cur == 0), 0.0, terms)
    statistic = float(terms.sum())
    return statistic, float(special.chdtrc(k - 1, statistic))


def ztest_counts(ref_first: float, ref_total: float, cur_first: float, cur_total: float) -> tuple[float, float]:
    """Evidently's two-proportion z-test ``(z, p_value)`` on the share of the first (sorted) value.

    Pooled standard error, two-sided normal p-value ``2·(1 − Φ(|z|))``. When both sides hold one
    and the same value the p-value is 1 (Evidently's convention); a zero pooled variance otherwise
    cannot happen.
    """
    if ref_total == 0 or cur_total == 0:
        return math.nan, math.nan
    p1 = 1.0 - ref_first / ref_total
    p2 = 1.0 - cur_first / cur_total
    pooled = (p1 * ref_total + p2 * cur_total) / (ref_total + cur_total)
    var = pooled * (1 - pooled) * (1.0 / ref_total + 1.0 / cur_total)
    if var == 0:
        return 0.0, 1.0
    z = (p1 - p2) / math.sqrt(var)
    return float(z), float(2 * (1 - ndtr(abs(z))))


def wasserstein_sorted(u_sorted: np.ndarray, v_sorted: np.ndarray) -> float:
    """Exact 1-Wasserstein distance of two *sorted* samples (scipy's ``_cdf_distance`` formula)."""
    all_values = np.concatenate((u_sorted, v_sorted))
    all_values.sort()  # same sorted values as scipy's mergesort, faster
    deltas = np.diff(all_values)
    u_cdf = np.searchsorted(u_sorted, all_values[:-1], "right") / u_sorted.size
    v_cdf = np.searchsorted(v_sorted, all_values[:-1], "right") / v_sorted.size
    return float(np.dot(np.abs(u_cdf - v_cdf), deltas))


def wasserstein_weighted(u_values: np.ndarray, u_weights: np.ndarray, v_values: np.ndarray,
                         v_weights: np.ndarray) -> float:
    """Exact 1-Wasserstein distance of two discrete distributions given as values and counts.

    Equals ``scipy.stats.wasserstein_distance`` on the expanded samples; used for low-cardinality
    numeric columns whose every value and count is in the profile.
    """
    values = np.union1d(u_values, v_values)
    u = np.zeros(values.size)
    v = np.zeros(values.size)
    u[np.searchsorted(values, u_values)] = u_weights
    v[np.searchsorted(values, v_values)] = v_weights
    u_cdf = np.cumsum(u)[:-1] / u.sum()
    v_cdf = np.cumsum(v)[:-1] / v.sum()
    return float(np.dot(np.abs(u_cdf - v_cdf), np.diff(values)))


def bin_means_from_quantiles(quantiles: np.ndarray) -> np.ndarray:
    """Estimated mean of each equal-mass quantile bin, from the bin edges alone.

    Interior bins use the midpoint of their edges (the quantile function is nearly linear over a
    bin). The two extreme bins hold the tails, whose far edges (the minimum and maximum) are the
    noisiest numbers of a sample and say little about the tail's mass: a straight line to the
    maximum badly overstates a long tail. They are modelled as exponential tails instead, with the
    scale read from the two nearest interior edges (``mean = q[k-1] + (q[k-1] − q[k-2]) / ln 2``
    for equal-mass bins), clipped to the observed range. The estimator commutes with shifts and
    rescaling, so its bias cancels when both sides use it.
    """
    q = np.asarray(quantiles, dtype=float)
    k = q.size - 1
    means = (q[:-1] + q[1:]) / 2
    if k >= 3:
        means[-1] = min(q[-2] + (q[-2] - q[-3]) / math.log(2.0), q[-1])
        means[0] = max(q[1] - (q[2] - q[1]) / math.log(2.0), q[0])
    return means


def wasserstein_from_quantiles(ref_quantiles: np.ndarray, cur_quantiles: np.ndarray, ref_mean: float = math.nan,
                               cur_mean: float = math.nan) -> float:
    """Approximate 1-Wasserstein distance from quantile edges at the same evenly spaced probabilities
    (and, when given, the exact means: a profile's quantiles may come from a subsample, whose
    location noise the exact mean removes — each side's bin means are offset to average to it).

    ``W = ∫|Q_ref(p) − Q_cur(p)| dp`` is summed bin by bin as ``(1/k)·|mean_ref,b − mean_cur,b|``,
    which is exact wherever the two quantile functions do not cross inside a bin; where they cross
    (two samples of one distribution) it is a lower bound off by at most the sampling noise. The
    same bin-mean estimator on both sides makes its bias cancel under shifts and rescaling.
    """
    ref = bin_means_from_quantiles(ref_quantiles)
    cur = bin_means_from_quantiles(cur_quantiles)
    if math.isfinite(ref_mean) and math.isfinite(cur_mean):
        ref = ref + (ref_mean - ref.mean())
        cur = cur + (cur_mean - cur.mean())
    return float(np.abs(ref - cur).mean())


def fill_zeroes(percents: np.ndarray) -> np.ndarray:
    """Evidently's zero filling (``get_binned_data(..., feel_zeroes=True)``) for PSI and KL."""
    p = np.array(percents, dtype=float)
    nonzero = p[p != 0]
    if nonzero.size == 0:
        return p
    smallest = nonzero.min()
    p[p == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return p


def jensenshannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon distance (natural log), ``scipy.spatial.distance.jensenshannon``'s formula."""
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    if p.sum() <= 0 or q.sum() <= 0:
        return math.nan
    p = p / p.sum()
    q = q / q.sum()
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log(p / m), 0.0)
        right = np.where(q > 0, q * np.log(q / m), 0.0)
    js = (left.sum() + right.sum()) / 2.0
    return float(math.sqrt(max(js, 0.0)))


def psi(ref_percents: np.ndarray, cur_percents: np.ndarray) -> float:
    """Population stability index ``Σ (r − c)·ln(r / c)`` after Evidently's zero filling."""
    r = fill_zeroes(ref_percents)
    c = fill_zeroes(cur_percents)
    if not (r > 0).all() or not (c > 0).all():
        return math.nan
    return float(np.sum((r - c) * np.log(r / c)))


def sturges_edges(lo: float, hi: float, n: int) -> np.ndarray:
    """``np.histogram_bin_edges(x, bins="sturges")`` for data of size ``n`` spanning ``[lo, hi]``.

    numpy's Sturges width is ``ptp / (log2(n) + 1)`` and the bin count ``ceil(ptp / width)``;
    the edges are then ``linspace(lo, hi, count + 1)`` — reproduced here from the range and size
    alone, so the reference needs no raw data.
    """
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
        return np.linspace(lo, hi, 2)
    width = (hi - lo) / (np.log2(n) + 1.0)
    count = max(1, int(np.ceil((hi - lo) / width)))
    return np.linspace(lo, hi, count + 1)


def masses_from_quantiles(quantiles: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Approximate share of a distribution in each bin ``[edges[i], edges[i+1])`` from its
    quantile edges at evenly spaced probabilities (CDF linear between consecutive quantiles)."""
    q = np.asarray(quantiles, dtype=float)
    probs = np.linspace(0.0, 1.0, q.size)
    # np.interp needs increasing x: collapse ties (a point mass) to their largest probability
    keep = np.r_[q[1:] != q[:-1], True]
    cdf = np.interp(edges, q[keep], probs[keep], left=0.0, right=1.0)
    cdf[-1] = 1.0 if edges[-1] >= q[-1] else cdf[-1]
    return np.diff(cdf)
