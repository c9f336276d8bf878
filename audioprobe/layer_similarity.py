"""Layer similarity: debiased linear CKA between every pair of layers of a dataset's stores.

Linear CKA (Kornblith et al., 2019) compares two layers' representations of the same clips,
invariant to rotations and isotropic scaling: CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))
with K = X Xᵀ, L = Y Yᵀ. HSIC is the unbiased estimator of Song et al. (2012), which
Kornblith et al. use for their debiased CKA:

    HSIC(K, L) = [tr(K̃ L̃) + (1ᵀK̃1)(1ᵀL̃1) / ((n-1)(n-2)) - 2/(n-2) 1ᵀK̃L̃1] / (n(n-3))

where K̃ is K with its diagonal set to zero. Every term is a sum over blocks of clip pairs,
so the Gram matrices are never held whole: for each pair of clip blocks (I, J) the blocks
K̃[I, J] of every layer are formed once and give tr(K̃ L̃) (their inner products) and K̃1 (their
row and column sums). The result equals the computation on whole Gram matrices; memory is
two clip blocks of every layer and one B x B Gram block per layer. Since the estimator is
unchanged by shifting a layer's features, each layer is shifted by its mean over the first
block, which keeps float32 Gram blocks accurate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from audioprobe.features.store import Store

SIMILARITY_COLUMNS = ["model_a", "layer_a", "model_b", "layer_b", "cka", "n_clips"]


def block_size(dims: list[int], n_layers: int, budget: float = 1e9) -> int:
    """Clips per block such that two blocks of every layer and one Gram block per layer
    (float32) fit in ``budget`` bytes."""
    size = 4096
    while size > 8 and 4 * size * (2 * sum(dims) + n_layers * size) > budget:
        size //= 2
    return size


def debiased_cka(read: Callable[[np.ndarray], list[np.ndarray]], n: int, block: int,
                 dtype: torch.dtype = torch.float32) -> np.ndarray:
    """Debiased linear CKA between every pair of L layers of the same n clips, (L, L).
    ``read(rows)`` returns each layer's features of those clips (rows, dim_l). The Gram blocks
    are computed in ``dtype`` (float32: about 1e-5 from the float64 value, several times
    faster) and accumulated in float64."""
    blocks = [np.arange(k, min(k + block, n)) for k in range(0, n, block)]
    trace, sums, shifts = None, None, None
    for i, rows_i in enumerate(blocks):
        x_i = [torch.as_tensor(x, dtype=torch.float64) for x in read(rows_i)]
        if shifts is None:  # HSIC is unchanged by shifting a layer: near-centred Gram blocks
            shifts = [x.mean(0) for x in x_i]  # lose less to rounding in float32
        x_i = [(x - shift).to(dtype) for x, shift in zip(x_i, shifts)]
        if trace is None:
            trace = torch.zeros(len(x_i), len(x_i), dtype=torch.float64)
            sums = torch.zeros(len(x_i), n, dtype=torch.float64)
        for rows_j in blocks[i:]:
            same = rows_j is rows_i
            x_j = x_i if same else [(torch.as_tensor(x, dtype=torch.float64) - shift).to(dtype)
                                    for x, shift in zip(read(rows_j), shifts)]
            grams = torch.stack([a @ b.T for a, b in zip(x_i, x_j)])  # (L, |I|, |J|)
            if same:
                grams.diagonal(dim1=1, dim2=2).zero_()
            flat = grams.flatten(1)
            trace += (1 if same else 2) * (flat @ flat.T).double()
            sums[:, rows_i] += grams.sum(2, dtype=torch.float64)
            if not same:
                sums[:, rows_j] += grams.sum(1, dtype=torch.float64)
    total = sums.sum(1)
    hsic = (trace + torch.outer(total, total) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (sums @ sums.T)) / (n * (n - 3))
    scale = torch.sqrt(torch.clamp(torch.diagonal(hsic), min=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return (hsic / torch.outer(scale, scale)).numpy()


def common_rows(clip_ids: list[np.ndarray]) -> list[np.ndarray]:
    """Each store's rows of the clips every store holds, in the first store's order."""
    shared = set(clip_ids[0]).intersection(*map(set, clip_ids[1:]))
    order = [c for c in clip_ids[0] if c in shared]
    return [pd.Series(np.arange(len(ids)), index=ids)[order].to_numpy() for ids in clip_ids]


def layer_similarity(stores: dict[str, Store], budget: float = 1e9) -> pd.DataFrame:
    """Debiased linear CKA between every pair of layers of every pair of models (and within
    each model) on the clips all ``stores`` (by model) hold: one row per pair, a <= b."""
    models = list(stores)
    rows = common_rows([stores[m].meta["clip_id"].to_numpy() for m in models])
    n = len(rows[0])
    if n < 4:
        return pd.DataFrame(columns=SIMILARITY_COLUMNS)
    names = [(m, k) for m in models for k in range(stores[m].n_layers)]

    def read(index: np.ndarray) -> list[np.ndarray]:
        return [layer for m, r in zip(models, rows) for layer in stores[m].rows(r[index])]

    cka = debiased_cka(read, n, block_size([stores[m].dim for m, _ in names], len(names),
                                           budget))
    return pd.DataFrame([
        {"model_a": names[a][0], "layer_a": names[a][1], "model_b": names[b][0],
         "layer_b": names[b][1], "cka": float(cka[a, b]), "n_clips": n}
        for a in range(len(names)) for b in range(a, len(names))], columns=SIMILARITY_COLUMNS)
