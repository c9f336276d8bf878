"""The feature map of the error analysis: a 2-D t-SNE of the test clips' features at the layer
the rounds chose most often, and what it shows, in words."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from audioprobe.features.store import Store
from audioprobe.probes import ALL_LAYERS


@dataclass(frozen=True)
class FeatureMap:
    """``points`` (N, 2) of the clips ``outcomes`` (one row per point) and ``where``: the
    features mapped, in words."""

    points: np.ndarray
    outcomes: pd.DataFrame
    where: str
    method: str


def layer_features(store: Store, layer: int) -> np.ndarray:
    """Features of one layer, or of all layers side by side for the weighted probe."""
    if layer == ALL_LAYERS:
        return np.concatenate([store.layer(k) for k in range(store.n_layers)], axis=1)
    return store.layer(layer)


def feature_map(store: Store, outcomes: pd.DataFrame, max_points: int = 1000) -> FeatureMap:
    """The t-SNE map of at most ``max_points`` test clips of ``outcomes`` at the layer chosen
    in most rounds (every clip at that layer, whichever its round chose)."""
    layers = outcomes.drop_duplicates("fold")["layer"].astype(int)
    counts = layers.value_counts()
    layer = int(min(counts.index[counts == counts.max()]))
    if layer == ALL_LAYERS:
        where = (f"all {store.n_layers} layers side by side (the weighted probe's learned mix "
                 "of them is not saved)")
    else:
        where = (f"layer {layer}, chosen in {int(counts[layer])} of {len(layers)} rounds"
                 + (" (every clip shown at it, whichever layer its round chose)"
                    if len(counts) > 1 else ""))
    index = pd.Series(np.arange(len(store.meta)), index=store.meta["clip_id"])
    features = layer_features(store, layer)[index[outcomes["clip_id"]].to_numpy()]
    points, rows = embedding_2d(features, max_points)
    return FeatureMap(points, outcomes.iloc[rows].reset_index(drop=True), where, "t-SNE")


def embedding_2d(features: np.ndarray, max_points: int = 1000,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 2-D map of ``features`` (t-SNE of the first 50 principal components of the
    standardised features) of at most ``max_points`` rows; returns the points and the row
    indices used. One thread: on a shared machine OpenMP's spinning threads make t-SNE many
    times slower."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(features), min(max_points, len(features)), replace=False))
    x = StandardScaler().fit_transform(features[rows])
    with threadpool_limits(1):
        if x.shape[1] > 50 and len(rows) > 50:
            x = PCA(50, random_state=seed).fit_transform(x)
        perplexity = min(30.0, max(2.0, (len(rows) - 1) / 4))
        points = TSNE(perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    return points, rows
