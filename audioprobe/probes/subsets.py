"""Nested fractions of a round's training clips, for label-efficiency curves.

Whole groups are drawn (a speaker or recording never contributes only part of its clips), in
one random order of the round's training groups, so each fraction's clips are a subset of every
larger fraction's. Each class takes the first of its groups in that order until it holds
``fraction`` of its training clips (at least one clip), so every class keeps its share and is
present at the smallest fraction; a group that holds several classes counts for each of them.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from audioprobe.probes.splits import Round


def nested_fractions(meta: pd.DataFrame, train: np.ndarray, fractions: list[float],
                     seed: int) -> dict[float, np.ndarray]:
    """The rows of ``train`` (indices into ``meta``: columns label, group) each fraction keeps,
    sorted; a fraction of 1 keeps them all."""
    labels = meta["label"].to_numpy()[train]
    groups = meta["group"].to_numpy()[train]
    names, group_code = np.unique(groups, return_inverse=True)
    rank = np.random.default_rng(seed).permutation(len(names))[group_code]  # each clip's group's
    kept = {}
    for fraction in fractions:
        chosen = np.zeros(len(names), dtype=bool)
        for label in np.unique(labels):
            mine = labels == label
            need = max(1, math.ceil(fraction * mine.sum() - 1e-9))
            last = np.sort(rank[mine])[need - 1]  # the class's groups up to this rank
            chosen[group_code[mine & (rank <= last)]] = True
        kept[fraction] = np.sort(train[chosen[group_code]])
    return kept


def fraction_rounds(meta: pd.DataFrame, rounds: list[Round], fractions: list[float]
                    ) -> dict[float, list[Round]]:
    """Each fraction's rounds: the same validation and test clips, the fraction's training
    clips (drawn per round, seeded by the round)."""
    subsets = [nested_fractions(meta, r.train, fractions, seed=r.name) for r in rounds]
    return {f: [replace(r, train=kept[f]) for r, kept in zip(rounds, subsets)]
            for f in fractions}
