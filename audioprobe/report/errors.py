"""Error analysis of a dataset's configuration best on validation: per-class scores,
confusions and the clips with the highest loss, counted in test clips (a clip's seeds share
it: each seed's prediction weighs 1 / seeds)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from audioprobe.features.store import Store
from audioprobe.report.formatting import sig

SUB_MATRIX = 20  # classes shown in the confusion matrix of a task with many classes


def _clip_weights(predictions: pd.DataFrame) -> np.ndarray:
    """Each row's weight: 1 / the number of seeds that predicted its clip."""
    return 1 / predictions.groupby("clip_id")["clip_id"].transform("size").to_numpy()


def class_report(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per class: precision, recall and F1 (seeds averaged), the test clips of the class
    (support) and the share of them whose seeds all agree."""
    classes = sorted(predictions["label"].unique())
    precision, recall, f1, _ = precision_recall_fscore_support(
        predictions["label"], predictions["prediction"], labels=classes, zero_division=0,
        sample_weight=_clip_weights(predictions))
    clips = predictions.groupby("clip_id").agg(label=("label", "first"),
                                               agree=("prediction", lambda s: s.nunique() == 1))
    by_class = clips.groupby("label")
    return pd.DataFrame({"precision": precision, "recall": recall, "f1": f1,
                         "support (clips)": by_class.size().reindex(classes).to_numpy(),
                         "seeds agree": by_class["agree"].mean().reindex(classes).to_numpy()},
                        index=pd.Index(classes, name="class"))


def confusion(predictions: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Class names and the confusion matrix in test clips (seeds averaged), rows true, columns
    predicted."""
    classes = sorted(set(predictions["label"]) | set(predictions["prediction"]))
    return classes, confusion_matrix(predictions["label"], predictions["prediction"],
                                     labels=classes, sample_weight=_clip_weights(predictions))


def most_confused(classes: list[str], counts: np.ndarray, top: int = SUB_MATRIX
                  ) -> tuple[list[str], np.ndarray]:
    """The ``top`` classes with the most off-diagonal mass (errors from and into them), and
    their rows of the confusion matrix normalised to the true class, cut to those columns;
    all classes when there are no more than ``top``."""
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1e-12)
    if len(classes) <= top:
        return classes, share
    off = share - np.diag(np.diag(share))
    keep = np.sort(np.argsort(-(off.sum(0) + off.sum(1)), kind="stable")[:top])
    return [classes[i] for i in keep], share[np.ix_(keep, keep)]


def confused_pairs(predictions: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """The most frequent (true, predicted) errors: test clips predicted so by at least one seed
    and by every seed, and the share of the true class's clips (seeds averaged)."""
    frame = predictions[predictions["label"] != predictions["prediction"]]
    columns = ["true class", "predicted as", "clips (any seed)", "clips (every seed)",
               "share of true class"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    seeds = predictions.groupby("clip_id").size()
    per_clip = frame.groupby(["label", "prediction", "clip_id"]).size().rename("seeds")
    per_clip = per_clip.reset_index()
    per_clip["every"] = per_clip["seeds"] == per_clip["clip_id"].map(seeds)
    per_clip["weight"] = per_clip["seeds"] / per_clip["clip_id"].map(seeds)
    support = predictions.groupby("label")["clip_id"].nunique()
    pairs = per_clip.groupby(["label", "prediction"]).agg(
        any=("clip_id", "size"), every=("every", "sum"), weight=("weight", "sum")).reset_index()
    pairs = pairs.sort_values(["weight", "any"], ascending=False, kind="stable").head(top)
    return pd.DataFrame({
        "true class": pairs["label"], "predicted as": pairs["prediction"],
        "clips (any seed)": pairs["any"].astype(int),
        "clips (every seed)": pairs["every"].astype(int),
        "share of true class": [sig(w / support[c]) for w, c in zip(pairs["weight"],
                                                                     pairs["label"])],
    }).reset_index(drop=True)


def clip_outcomes(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per test clip: label, its round's layer, share of seeds right, mean loss."""
    frame = predictions.assign(correct=predictions["label"] == predictions["prediction"])
    grouped = frame.groupby("clip_id", sort=False)
    return pd.DataFrame({
        "label": grouped["label"].first(),
        "predictions": grouped["prediction"].agg(lambda s: ", ".join(sorted(set(s)))),
        "share correct": grouped["correct"].mean(),
        "mean loss": grouped["loss"].mean(),
        "fold": grouped["fold"].first(),
        "layer": grouped["layer"].first(),
    }).reset_index()


def class_recall(outcomes: pd.DataFrame) -> pd.Series:
    """Per class, the share of its test clips' predictions that are right (seeds averaged),
    lowest first."""
    return outcomes.groupby("label")["share correct"].mean().sort_values(kind="stable")


def highest_loss(outcomes: pd.DataFrame, store: Store, top: int = 10) -> pd.DataFrame:
    """The test clips with the highest mean cross-entropy loss over seeds."""
    durations = store.meta.set_index("clip_id")["duration"]
    rows = outcomes.sort_values("mean loss", ascending=False).head(top)
    return pd.DataFrame({
        "clip": rows["clip_id"],
        "label": rows["label"],
        "predicted (all seeds)": rows["predictions"],
        "share correct": [sig(v) for v in rows["share correct"]],
        "mean loss (nats)": [sig(v) for v in rows["mean loss"]],
        "duration (s)": [sig(durations.get(c, float("nan"))) for c in rows["clip_id"]],
        "round": rows["fold"],
    }).reset_index(drop=True)
