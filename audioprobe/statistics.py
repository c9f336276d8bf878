"""Uncertainty of test scores and paired comparisons, with the round as the unit of replication.

- k-fold datasets (several rounds): the rounds' scores (seeds averaged within a round first) get
  the Nadeau-Bengio corrected resampled t interval. Rounds share most of their training clips,
  so their scores are correlated and the plain t interval over rounds is too narrow; the
  correction multiplies the variance of the mean by (1/J + n_test/n_train) instead of 1/J
  (Nadeau & Bengio 2003, Machine Learning 52:239-281; Bouckaert & Frank 2004). A paired
  comparison applies the same interval and t test to the per-round differences.
- single-split datasets (one round): the trained probe is held fixed, and the interval is over
  test sampling only. Clips of one group (speaker, patient, instrument, recording) are not
  independent, so whole groups are resampled, within the class of each group (its rarest
  class), so that no class leaves a resample. The interval is a studentized bootstrap
  (bootstrap-t; Efron & Tibshirani 1993, ch. 12): each resample's standard error comes from
  the groups' influences (the delta method), which keeps its coverage near nominal where the
  percentile bootstrap runs short with few, unequal groups. A paired comparison tests with
  random sign flips over groups (which of the two models each group's predictions belong to,
  a permutation test that is exact when the models are exchangeable within a group, whatever
  the groups' sizes), and gives the bootstrap-t interval of the difference.
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


def strata_resamples(strata: np.ndarray, n_resamples: int = RESAMPLES, seed: int = 0
                     ) -> np.ndarray:
    """(n_resamples, n_groups) multiplicities: how often each group is drawn in each bootstrap
    resample, drawing with replacement within each stratum as many groups as it holds."""
    strata = np.asarray(strata)
    rng = np.random.default_rng(seed)
    n_groups = len(strata)
    flat = np.zeros(n_resamples * n_groups)
    offsets = n_groups * np.arange(n_resamples)[:, None]
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        draws = members[rng.integers(0, len(members), (n_resamples, len(members)))]
        flat += np.bincount((offsets + draws).ravel(), minlength=len(flat))
    return flat.reshape(n_resamples, n_groups)


def sign_flips(n_groups: int, n_flips: int = RESAMPLES, seed: int = 1) -> np.ndarray:
    """(n_flips, n_groups) of 0 and 1: 1 where a group's two sets of predictions swap."""
    return np.random.default_rng(seed).integers(0, 2, (n_flips, n_groups)).astype(float)


def standard_error(influence: np.ndarray, multiplicities: np.ndarray, strata: np.ndarray
                   ) -> np.ndarray:
    """Delta-method standard error (R,) of a metric over each resample of groups: influences
    (R, G) of each group, their multiplicities (R, G) in the resample; within each stratum
    of n_h drawn groups, n_h / (n_h - 1) times the sum of squared deviations from the
    stratum's mean influence (a stratum of one group adds nothing)."""
    variance = np.zeros(len(influence))
    with np.errstate(invalid="ignore", divide="ignore"):
        for stratum in np.unique(strata):
            keep = strata == stratum
            w, u = multiplicities[:, keep], influence[:, keep]
            n = w.sum(1)
            mean = (w * u).sum(1) / n
            spread = (w * (u - mean[:, None]) ** 2).sum(1)
            variance += np.where(n > 1, n / (n - 1) * spread, 0.0)
    return np.sqrt(variance)


def bootstrap_t(point: float, se: float, samples: np.ndarray, sample_se: np.ndarray,
                confidence: float = CONFIDENCE,
                bounds: tuple[float, float] = (-np.inf, np.inf)) -> Estimate:
    """Studentized bootstrap interval: the quantiles of (sample - point) / sample_se over the
    resamples, scaled by the data's standard error ``se`` and turned around the point; clipped
    to ``bounds``. NaN where the metric is undefined on every resample; the point itself where
    its standard error is 0. The p-value is NaN (see :func:`sign_flip_p` for a test)."""
    samples, sample_se = np.asarray(samples, float), np.asarray(sample_se, float)
    if not np.isfinite(point) or not np.isfinite(se):
        return Estimate(float(point), np.nan, np.nan, np.nan)
    if se == 0:
        return Estimate(float(point), float(point), float(point), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (samples - point) / sample_se
    t = t[np.isfinite(t)]
    if len(t) == 0:
        return Estimate(float(point), np.nan, np.nan, np.nan)
    low_t, high_t = np.quantile(t, [0.5 - confidence / 2, 0.5 + confidence / 2])
    low, high = np.clip([point - high_t * se, point - low_t * se], *bounds)
    return Estimate(float(point), float(low), float(high), np.nan)


def sign_flip_p(observed: float, flipped: np.ndarray) -> float:
    """Two-sided p-value of a paired difference against its sign-flip (permutation)
    distribution, counting the observed data as one draw; NaN when undefined."""
    flipped = np.asarray(flipped, float)
    flipped = flipped[np.isfinite(flipped)]
    if not np.isfinite(observed) or len(flipped) == 0:
        return np.nan
    extreme = (np.abs(flipped) >= abs(observed) - 1e-12).sum()
    return float(min(1.0, (extreme + 1) / (len(flipped) + 1)))


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
