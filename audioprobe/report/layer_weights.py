"""The weighted probe's learned softmax layer weights, per dataset and model (SUPERB style)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def per_round(weights: pd.DataFrame) -> pd.DataFrame:
    """Each round's layer weights, averaged over its seeds (the round is the unit of
    replication): dataset, model, probe, fold, layer, weight."""
    keys = ["dataset", "model", "probe", "fold", "layer"]
    return weights.groupby(keys, as_index=False)["weight"].mean()


def spread(weights: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, model, probe and layer: the mean weight over rounds, its smallest and
    largest round, and the number of rounds."""
    rounds = per_round(weights)
    return (rounds.groupby(["dataset", "model", "probe", "layer"])["weight"]
            .agg(mean="mean", low="min", high="max", rounds="count").reset_index())


def multi_layer(weights: pd.DataFrame, dataset: str) -> bool:
    """Whether ``dataset`` has a weighted probe over more than one layer to draw."""
    mine = weights[weights["dataset"] == dataset]
    return bool(len(mine)) and int(mine.groupby(["model", "probe"])["layer"].nunique().max()) > 1


def figure(weights: pd.DataFrame, dataset: str, colours: dict[str, tuple],
           layer_names: dict[str, list[str]]) -> plt.Figure:
    """One panel per model and weighted probe of ``dataset``: the mean weight of each layer
    over rounds (bars), the range over rounds (whiskers) and each round (dots), with the
    uniform weight 1/L as a dashed line. Single-layer models (weight 1) are left out."""
    summary = spread(weights[weights["dataset"] == dataset])
    summary = summary[summary.groupby(["model", "probe"])["layer"].transform("count") > 1]
    rounds = per_round(weights[weights["dataset"] == dataset])
    panels = list(summary.groupby(["model", "probe"], sort=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 0.6, 3.0),
                             squeeze=False)
    for ax, ((model, probe), rows) in zip(axes[0], panels):
        x = rows["layer"].to_numpy()
        ax.bar(x, rows["mean"], color=colours.get(model, "#6c757d"), alpha=0.8)
        ax.errorbar(x, rows["mean"], yerr=[rows["mean"] - rows["low"], rows["high"] - rows["mean"]],
                    fmt="none", ecolor="#333333", capsize=2, lw=0.8)
        mine = rounds[(rounds["model"] == model) & (rounds["probe"] == probe)]
        ax.scatter(mine["layer"], mine["weight"], s=6, color="#333333", zorder=3)
        ax.axhline(1 / len(x), ls="--", lw=0.8, color="#888888")
        names = layer_names.get(model, [])
        if len(names) == len(x) and len(x) <= 8:
            ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
        ax.set(title=f"{model} ({probe})", xlabel="layer", ylim=(0, 1.15 * rows["high"].max()))
    axes[0][0].set_ylabel("softmax weight")
    fig.tight_layout()
    return fig


def entropy_table(weights: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, model and probe: the most weighted layer (mean over rounds), its weight,
    and the weights' normalised entropy (1: uniform; 0: one layer), mean over rounds."""
    rounds = per_round(weights)
    rows = []
    for (dataset, model, probe), frame in rounds.groupby(["dataset", "model", "probe"],
                                                         sort=False):
        mean = frame.groupby("layer")["weight"].mean()
        entropies = []
        for _, one in frame.groupby("fold"):
            w = one["weight"].to_numpy()
            entropies.append(float(-(w * np.log(w)).sum() / np.log(len(w))) if len(w) > 1
                             else 0.0)
        rows.append({"dataset": dataset, "model": model, "probe": probe,
                     "rounds": frame["fold"].nunique(), "top layer": int(mean.idxmax()),
                     "its weight": round(float(mean.max()), 3),
                     "normalised entropy": round(float(np.mean(entropies)), 3)})
    return pd.DataFrame(rows)
