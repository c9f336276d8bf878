"""Scores of one probe run, computed with scikit-learn from class probabilities."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, f1_score,
                             top_k_accuracy_score)

NORMAL = "normal"


def scores(y_true: np.ndarray, proba: np.ndarray, classes: list[str],
           sample_weight: np.ndarray | None = None) -> dict[str, float]:
    """accuracy, macro_f1, balanced_accuracy; top5_accuracy with more than 5 classes; and, for
    tasks with a "normal" class (ICBHI), sensitivity, specificity and their mean (icbhi_score).

    ``sample_weight`` counts each clip that many times (a bootstrap resample); clips of weight 0
    are left out, so the macro averages run over the classes the resample holds."""
    if sample_weight is not None:
        present = sample_weight > 0
        y_true, proba, sample_weight = y_true[present], proba[present], sample_weight[present]
    n_classes = proba.shape[1]
    y_pred = proba.argmax(1)
    labels = np.arange(n_classes)
    weight = {"sample_weight": sample_weight}
    result = {
        "accuracy": accuracy_score(y_true, y_pred, **weight),
        "macro_f1": f1_score(y_true, y_pred, average="macro", labels=np.unique(y_true),
                             zero_division=0, **weight),
        "balanced_accuracy": balanced_accuracy_score(y_true, y_pred, **weight),
    }
    if n_classes > 5:
        result["top5_accuracy"] = top_k_accuracy_score(y_true, proba, k=5, labels=labels,
                                                       **weight)
    if NORMAL in classes:
        result |= icbhi_scores(y_true, y_pred, classes.index(NORMAL), sample_weight)
    return {k: float(v) for k, v in result.items()}


def icbhi_scores(y_true: np.ndarray, y_pred: np.ndarray, normal: int,
                 sample_weight: np.ndarray | None = None) -> dict[str, float]:
    """ICBHI 2017: sensitivity = abnormal cycles given their exact class / abnormal cycles;
    specificity = normal cycles called normal / normal cycles; score = their mean."""
    weight = np.ones(len(y_true)) if sample_weight is None else sample_weight
    abnormal = y_true != normal

    def share(hits: np.ndarray, rows: np.ndarray) -> float:
        return np.average(hits[rows], weights=weight[rows]) if rows.any() else np.nan

    sensitivity = share(y_pred == y_true, abnormal)
    specificity = share(y_pred == normal, ~abnormal)
    return {"sensitivity": sensitivity, "specificity": specificity,
            "icbhi_score": (sensitivity + specificity) / 2}


def ratios(true: np.ndarray, predicted: np.ndarray, hits: np.ndarray,
           top5: np.ndarray | None, classes: list[str]) -> dict[str, tuple]:
    """Each metric as a mean of ratios of counts: metric -> (numerators, denominators, per
    class), ratios on the last axis. Numerators and denominators are linear in the counts, so
    the same function gives a resample's totals and each group's share of them. A per-class
    metric averages over the classes the totals hold; the others over all their ratios.

    ``true``, ``predicted``, ``hits`` (..., C): clips of each class, clips predicted as it,
    clips of it predicted right; ``top5`` (...): clips whose class is among the 5 most
    probable."""
    total = true.sum(-1, keepdims=True)
    result = {"accuracy": (hits.sum(-1, keepdims=True), total, False),
              "macro_f1": (2 * hits, true + predicted, True),
              "balanced_accuracy": (hits, true, True)}
    if top5 is not None:
        result["top5_accuracy"] = (top5[..., None], total, False)
    if NORMAL in classes:
        normal = classes.index(NORMAL)
        abnormal = np.arange(len(classes)) != normal
        sens = (hits[..., abnormal].sum(-1, keepdims=True),
                true[..., abnormal].sum(-1, keepdims=True))
        spec = (hits[..., normal:normal + 1], true[..., normal:normal + 1])
        result["sensitivity"] = (*sens, False)
        result["specificity"] = (*spec, False)
        result["icbhi_score"] = (np.concatenate([sens[0], spec[0]], -1),
                                 np.concatenate([sens[1], spec[1]], -1), False)
    return result


def scores_from_counts(true: np.ndarray, predicted: np.ndarray, hits: np.ndarray,
                       top5: np.ndarray | None, classes: list[str]) -> dict[str, np.ndarray]:
    """The scores of :func:`scores` from per-class counts, for many resamples at once.

    ``true``, ``predicted`` and ``hits`` (R, C) and ``top5`` (R,) as in :func:`ratios`.
    Equal to ``scores`` with the resample's clip counts as ``sample_weight`` (a test checks it);
    counting is what makes thousands of resamples cheap."""
    return {m: value for m, (value, _) in
            linearized(true, predicted, hits, top5, classes, None).items()}


def linearized(true: np.ndarray, predicted: np.ndarray, hits: np.ndarray,
               top5: np.ndarray | None, classes: list[str], parts: tuple | None
               ) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """metric -> (value (R,), influence (R, G) or None) of totals (R, C); ``parts``: the
    (true, predicted, hits, top5) counts of each group (G, C), or None for no influence.

    A group's influence is the first-order change of the metric per copy of the group in the
    totals: for a mean of ratios a/b, mean over ratios of (a_g - (a/b) b_g) / b. The
    influences' spread over the drawn groups gives the metric's standard error (the
    delta method), which studentizes the bootstrap."""
    mine = ratios(true, predicted, hits, top5, classes)
    theirs = ratios(*parts, classes) if parts is not None else {}
    result = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for metric, (num, den, per_class) in mine.items():
            keep = true > 0 if per_class else np.ones(num.shape, dtype=bool)
            ratio = np.where(keep, num / den, np.nan)
            value = np.nanmean(ratio, -1) if per_class else ratio.mean(-1)
            influence = None
            if metric in theirs:
                weight = np.where(keep, 1 / den, 0) / keep.sum(-1, keepdims=True)
                num_g, den_g, _ = theirs[metric]
                influence = (weight @ num_g.T) - (np.nan_to_num(ratio) * weight) @ den_g.T
                influence[~np.isfinite(value)] = np.nan
            result[metric] = (value, influence)
    return result
