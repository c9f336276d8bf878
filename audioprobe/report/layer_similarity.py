"""Layer similarity: debiased linear CKA between every pair of layers of every model."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def matrix(table: pd.DataFrame, models: list[str]) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """The symmetric CKA matrix of every (model, layer), models in ``models``' order."""
    names = sorted({(m, int(k)) for m, k in zip(table["model_a"], table["layer_a"])}
                   | {(m, int(k)) for m, k in zip(table["model_b"], table["layer_b"])},
                   key=lambda name: (models.index(name[0]) if name[0] in models else
                                     len(models), name))
    where = {name: i for i, name in enumerate(names)}
    cka = np.full((len(names), len(names)), np.nan)
    for row in table.itertuples():
        a, b = where[row.model_a, int(row.layer_a)], where[row.model_b, int(row.layer_b)]
        cka[a, b] = cka[b, a] = row.cka
    return cka, names


def figure(table: pd.DataFrame, models: list[str]) -> plt.Figure:
    """A heatmap of the CKA matrix, models separated by lines and named on the axes."""
    cka, names = matrix(table, models)
    size = min(11.0, 2.5 + 0.18 * len(names))
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(cka, vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
    owners = [m for m, _ in names]
    edges = [i for i in range(1, len(names)) if owners[i] != owners[i - 1]]
    for edge in edges:
        ax.axhline(edge - 0.5, color="white", lw=1.2)
        ax.axvline(edge - 0.5, color="white", lw=1.2)
    starts = [0, *edges]
    ends = [*edges, len(names)]
    centres = [(s + e - 1) / 2 for s, e in zip(starts, ends)]
    labels = [owners[s] for s in starts]
    ax.set_xticks(centres, labels, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(centres, labels, fontsize=8)
    ax.grid(False)
    fig.colorbar(image, ax=ax, shrink=0.8, label="debiased linear CKA")
    fig.tight_layout()
    return fig


def best_matches(table: pd.DataFrame, baselines: list[str]) -> pd.DataFrame:
    """Per pair of different models: the mean over the first model's layers of its best CKA
    with any layer of the second; and per model, each layer's CKA with the baseline(s)."""
    both = pd.concat([table, table.rename(columns={"model_a": "model_b", "layer_a": "layer_b",
                                                   "model_b": "model_a", "layer_b": "layer_a"})])
    across = both[both["model_a"] != both["model_b"]]
    best = across.groupby(["model_a", "layer_a", "model_b"])["cka"].max().reset_index()
    rows = best.groupby(["model_a", "model_b"])["cka"].agg(["mean", "min", "max"]).reset_index()
    rows["vs baseline"] = rows["model_b"].isin(baselines)
    return rows.rename(columns={"model_a": "model", "model_b": "other model",
                                "mean": "mean best CKA", "min": "lowest", "max": "highest"}
                       ).round(3)
