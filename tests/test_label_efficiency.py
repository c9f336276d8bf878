"""Label efficiency: nested, stratified, whole-group fractions of each round's training clips,
validation and test whole, and the table's values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from audioprobe.features.store import open_store
from audioprobe.probes.run import probe_all, probe_fractions
from audioprobe.probes.splits import rounds
from audioprobe.probes.subsets import fraction_rounds, nested_fractions
from audioprobe.tables import label_efficiency
from tests.test_probes import PROTOCOL, write_store

FRACTIONS = [0.01, 0.05, 0.1, 0.5, 1.0]


def grouped_meta(seed: int = 0) -> pd.DataFrame:
    """600 clips in 5 folds; groups of 1 to 6 clips, some holding two classes; class sizes
    from 24 to 240."""
    rng = np.random.default_rng(seed)
    sizes = {"a": 240, "b": 160, "c": 100, "d": 76, "e": 24}
    labels = np.concatenate([[c] * n for c, n in sizes.items()])
    rng.shuffle(labels)
    groups, g = [], 0
    while len(groups) < len(labels):
        groups += [f"g{g}"] * int(rng.integers(1, 7))
        g += 1
    groups = np.array(groups[:len(labels)])
    fold_of = {name: 1 + k % 5 for k, name in enumerate(np.unique(groups))}
    return pd.DataFrame({"label": labels, "group": groups,
                         "fold": [fold_of[x] for x in groups], "split": ""})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fractions_are_nested_stratified_whole_groups_with_every_class_in_every_round(seed):
    meta = grouped_meta(seed)
    for rnd in rounds(meta):
        kept = nested_fractions(meta, rnd.train, FRACTIONS, seed=rnd.name)
        train = meta.iloc[rnd.train]
        assert np.array_equal(kept[1.0], np.sort(rnd.train))
        for small, large in zip(FRACTIONS, FRACTIONS[1:]):
            assert set(kept[small]) <= set(kept[large])  # nested
            assert len(kept[small]) < len(kept[large])
        for fraction, rows in kept.items():
            assert set(rows) <= set(rnd.train)
            sub = meta.iloc[rows]
            # whole groups: every kept group brings all its training clips
            whole = train[train["group"].isin(set(sub["group"]))]
            assert len(whole) == len(sub)
            counts = sub["label"].value_counts()
            totals = train["label"].value_counts()
            assert set(counts.index) == set(totals.index)  # at least one clip per class
            for label, total in totals.items():  # each class its share, at least
                assert counts[label] >= max(1, np.ceil(fraction * total - 1e-9))
            if fraction < 1:  # and not far above it (groups hold at most 6 clips)
                assert len(sub) <= fraction * len(train) + 6 * 2 * len(totals)


def test_fraction_rounds_keep_validation_and_test_whole_and_differ_per_round():
    meta = grouped_meta()
    full = rounds(meta)
    per_fraction = fraction_rounds(meta, full, [0.1, 0.5])
    for fraction, subset in per_fraction.items():
        for whole, part in zip(full, subset):
            assert part.name == whole.name
            assert np.array_equal(part.valid, whole.valid)
            assert np.array_equal(part.test, whole.test)
            assert set(part.train) < set(whole.train)
    first, second = per_fraction[0.1][0].train, per_fraction[0.1][1].train
    assert not np.array_equal(first, second)


def test_probe_fractions_train_on_the_fraction_and_the_table_has_intervals(tmp_path):
    rng = np.random.default_rng(0)
    meta = grouped_meta()
    classes = sorted(set(meta["label"]))
    y = meta["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    centers = rng.normal(0, 1, (len(classes), 8))
    features = np.stack([centers[y] + rng.normal(0, 1, (len(y), 8))])
    store = open_store(write_store(tmp_path / "s.h5", features, meta["label"].to_numpy(),
                                   meta["fold"].to_numpy()))
    runs, predictions = probe_fractions(store, "p", {"kind": "linear"}, PROTOCOL, [0.05, 1.0])
    assert set(runs["fraction"]) == {0.05} and set(predictions["fraction"]) == {0.05}
    full = probe_all(store, "p", {"kind": "linear"}, PROTOCOL)
    by_fold = full.runs.groupby("fold")
    for fold, part in runs.groupby("fold"):
        whole = by_fold.get_group(fold)
        assert (part["n_train"] < 0.2 * whole["n_train"].iloc[0]).all()
        assert (part["n_valid"] == whole["n_valid"].iloc[0]).all()
        assert (part["n_test"] == whole["n_test"].iloc[0]).all()
    both = pd.concat([full.runs.assign(fraction=1.0), runs], ignore_index=True)
    both.insert(0, "model", "m")
    both.insert(0, "dataset", "d")
    table = label_efficiency(both)
    assert list(table["fraction"]) == [0.05, 1.0]
    assert (table["n_rounds"] == 5).all() and (table["metric"] == "accuracy").all()
    assert (table["ci_low"] < table["mean"]).all() and (table["mean"] < table["ci_high"]).all()
    chosen = both[both["chosen"]].groupby(["fraction", "fold"])["accuracy"].mean()
    for _, row in table.iterrows():
        assert row["mean"] == pytest.approx(chosen.loc[row["fraction"]].mean())
    assert table.set_index("fraction").loc[1.0, "mean"] > 0.5
