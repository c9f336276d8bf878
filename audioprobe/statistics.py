"""Uncertainty of test scores and paired comparisons, with the round as the unit of replication.

- k-fold datasets (several rounds): the rounds' scores (seeds averaged within a round first) get
  the Nadeau-Bengio corrected resampled t interval. Rounds share most of their training clips,
  so their scores are correlated and the plain t interval over rounds is too narrow; the
  correction multiplies the variance of the mean by (1/J + n_test/n_train) instead of 1/J
  (Nadeau & Bengio 2003, Machine Learning 52:239-281; Bouckaert & Frank 2004). A paired
  comparison applies the same interval and t test to the per-round differences.
- single-split datasets (one round): a percentile bootstrap over test clips that resamples
  whole groups (speaker, patient, instrument, recording), since clips of one group are not
  independent; a paired comparison resamples the same groups for both models.
- Holm's step-down correction over a family of p-values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    """A mean with its confidence interval and the two-sided p-value of "the mean is 0"."""

    mean: float
    low: float
    high: float
    p_value: float


def corrected_t(values: np.ndarray, test_train_ratio: float, confidence: float = CONFIDENCE,
                bounds: tuple[float, float] = (-np.inf, np.inf)) -> Estimate:
    """Nadeau-Bengio corrected resampled t over J rounds: standard error
    sqrt((1/J + n_test/n_train) * s^2), J - 1 degrees of freedom. NaN with one round.

    The interval's limits are clipped to ``bounds``, the values the quantity can take (a score
    in [0, 1], a difference of scores in [-1, 1]): the symmetric t interval can reach past them
    on few rounds, and what it holds beyond them is impossible values."""
    values = np.asarray(values, dtype=float)
    n, mean = len(values), float(np.mean(values))
    if n < 2:
        return Estimate(mean, np.nan, np.nan, np.nan)
    sd = float(np.std(values, ddof=1))
    low, high = corrected_t_limits(mean, sd, n, test_train_ratio, confidence, bounds)
    if sd == 0:
        return Estimate(mean, mean, mean, 1.0 if mean == 0 else 0.0)
    se = np.sqrt(1 / n + test_train_ratio) * sd
    return Estimate(mean, float(low), float(high), float(2 * stats.t(df=n - 1).sf(abs(mean) / se)))


def corrected_t_limits(mean, sd, n, test_train_ratio, confidence: float = CONFIDENCE,
                       bounds: tuple[float, float] = (-np.inf, np.inf)):
    """The limits of ``corrected_t``'s interval from a mean, the sd over rounds and the number
    of rounds, elementwise over arrays or Series (NaN where n < 2)."""
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = (stats.t.ppf(0.5 + confidence / 2, np.where(n > 1, n - 1, np.nan))
                * np.sqrt(1 / n + test_train_ratio) * sd)
    return np.clip(mean - half, *bounds), np.clip(mean + half, *bounds)


def group_resamples(n_groups: int, n_resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """(n_resamples, n_groups) multiplicities: how often each group is drawn in each bootstrap
    resample (n_groups draws with replacement)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, (n_resamples, n_groups))
    return np.stack([np.bincount(row, minlength=n_groups) for row in draws])


def bootstrap(point: float, samples: np.ndarray, confidence: float = CONFIDENCE) -> Estimate:
    """Percentile interval of bootstrap ``samples`` around the ``point`` estimate, and the
    two-sided bootstrap p-value of "the true value is 0" (for differences): twice the smaller
    share of samples on either side of 0, counting the observed data as one sample."""
    samples = np.asarray(samples, dtype=float)
    samples = samples[np.isfinite(samples)]
    if len(samples) == 0:  # the metric is undefined on every resample (e.g. top-5 of 5 classes)
        return Estimate(float(point), np.nan, np.nan, np.nan)
    low, high = np.quantile(samples, [0.5 - confidence / 2, 0.5 + confidence / 2])
    side = min((samples <= 0).sum(), (samples >= 0).sum())
    p = min(1.0, 2 * (side + 1) / (len(samples) + 1))
    return Estimate(float(point), float(low), float(high), p)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), in the input order; NaN stays
    NaN and does not count towards the family."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted
