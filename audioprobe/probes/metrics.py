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


def scores_from_counts(true: np.ndarray, predicted: np.ndarray, hits: np.ndarray,
                       top5: np.ndarray | None, classes: list[str]) -> dict[str, np.ndarray]:
    """The scores of :func:`scores` from per-class counts, for many resamples at once.

    ``true``, ``predicted`` and ``hits`` (R, C): clips of each class, clips predicted as it, and
    clips of it predicted right; ``top5`` (R,): clips whose class is among the 5 most probable.
    Equal to ``scores`` with the resample's clip counts as ``sample_weight`` (a test checks it);
    counting is what makes thousands of bootstrap resamples cheap."""
    present = true > 0
    total = true.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(present, hits / true, np.nan)
        f1 = np.where(present, 2 * hits / (true + predicted), np.nan)
        result = {
            "accuracy": hits.sum(1) / total,
            "macro_f1": np.nanmean(f1, 1),
            "balanced_accuracy": np.nanmean(recall, 1),
        }
        if top5 is not None:
            result["top5_accuracy"] = top5 / total
        if NORMAL in classes:
            normal = classes.index(NORMAL)
            abnormal = np.arange(len(classes)) != normal
            result["sensitivity"] = hits[:, abnormal].sum(1) / true[:, abnormal].sum(1)
            result["specificity"] = hits[:, normal] / true[:, normal]
            result["icbhi_score"] = (result["sensitivity"] + result["specificity"]) / 2
    return result
