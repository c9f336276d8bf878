"""The probing protocol: test data never influences fitting or selection; scores are sklearn's."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, top_k_accuracy_score

from audioprobe.features.store import open_store
from audioprobe.probes.metrics import scores
from audioprobe.probes.run import probe_store
from audioprobe.probes.splits import rounds
from audioprobe.probes.train import Architecture, Member, fit_predict
from audioprobe.tables import summarize

PROTOCOL = {"seeds": 2, "learning_rates": [0.001, 0.01], "weight_decays": [0.0, 0.01],
            "max_epochs": 30, "patience": 5, "batch_size": 64}
SELECTION = ["layer", "fold", "seed", "lr", "weight_decay", "epochs", "val_accuracy"]


def write_store(path: Path, features: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> Path:
    """A minimal complete store: (layers, clips, dim) features with labels and folds."""
    n = features.shape[1]
    text = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f["features"] = features.astype(np.float32)
        f.create_dataset("clip_id", data=[f"c{i}" for i in range(n)], dtype=text)
        f.create_dataset("label", data=labels.astype(object), dtype=text)
        f.create_dataset("split", data=[""] * n, dtype=text)
        f.create_dataset("group", data=[f"g{i}" for i in range(n)], dtype=text)
        f["fold"] = folds
        f["duration"] = np.ones(n)
        f["padded"] = np.zeros(n, dtype=bool)
        f.attrs.update({"n_layers": features.shape[0], "complete": True,
                        "classes": sorted(set(labels.tolist()))})
    return path


@pytest.fixture()
def problem():
    rng = np.random.default_rng(0)
    n, dim = 200, 16
    y = rng.integers(0, 4, n)
    centers = rng.normal(0, 1, (4, dim))
    layer0 = centers[y] * 0.8 + rng.normal(0, 1, (n, dim))
    layer1 = centers[y] * 0.2 + rng.normal(0, 1, (n, dim))
    labels = np.array(["a", "b", "c", "d"])[y]
    folds = np.repeat(np.arange(1, 6), n // 5)
    return np.stack([layer0, layer1]), labels, folds


@pytest.mark.parametrize("spec", [
    {"kind": "linear"},
    {"kind": "mlp", "hidden": [32, 32]},
    {"kind": "mlp", "hidden": [32], "dropout": 0.2, "batch_norm": True},
    {"kind": "weighted"},
])
def test_planted_test_fold_change_leaves_every_selection_unchanged(problem, spec, tmp_path):
    features, labels, folds = problem
    clean = open_store(write_store(tmp_path / "clean.h5", features, labels, folds))
    runs, _, _ = probe_store(clean, "p", spec, PROTOCOL)
    # Round 3 tests on fold 3: scramble fold 3's labels and blow up its features.
    planted_labels = labels.copy()
    test = folds == 3
    planted_labels[test] = np.roll(labels[test], 7)
    planted_features = features.copy()
    planted_features[:, test] = planted_features[:, test] * 100 + 5
    planted = open_store(write_store(tmp_path / "planted.h5", planted_features,
                                     planted_labels, folds))
    planted_runs, _, _ = probe_store(planted, "p", spec, PROTOCOL)
    round3 = runs["fold"] == 3
    pd.testing.assert_frame_equal(runs.loc[round3, SELECTION].reset_index(drop=True),
                                  planted_runs.loc[round3, SELECTION].reset_index(drop=True))
    assert not np.allclose(runs.loc[round3, "accuracy"], planted_runs.loc[round3, "accuracy"])


def test_best_layer_is_chosen_on_validation(problem, tmp_path):
    features, labels, folds = problem
    runs, predictions, _ = probe_store(open_store(write_store(tmp_path / "s.h5", features, labels,
                                                           folds)), "p", {"kind": "linear"},
                                    PROTOCOL)
    runs.insert(0, "model", "m")
    runs.insert(0, "dataset", "d")
    summary = summarize(runs)
    chosen = summary.loc[summary["selected"], "layer"].item()
    assert chosen == runs.groupby("layer")["val_accuracy"].mean().idxmax() == 0
    assert set(predictions["layer"]) == {chosen}
    assert summary.loc[summary["layer"] == 0, "accuracy_mean"].item() > 0.6  # chance: 0.25


def test_results_are_deterministic(problem, tmp_path):
    features, labels, folds = problem
    store = open_store(write_store(tmp_path / "s.h5", features, labels, folds))
    first, p1, _ = probe_store(store, "p", {"kind": "mlp", "hidden": [32]}, PROTOCOL)
    second, p2, _ = probe_store(store, "p", {"kind": "mlp", "hidden": [32]}, PROTOCOL)
    pd.testing.assert_frame_equal(first, second)
    pd.testing.assert_frame_equal(p1, p2)


def test_hear_rounds_test_i_validate_next_train_rest():
    meta = pd.DataFrame({"fold": np.repeat([1, 2, 3, 4, 5], 2), "split": "", "label": "x",
                         "group": [str(i) for i in range(10)]})
    got = [(r.name, sorted(set(meta.fold[r.valid])), sorted(set(meta.fold[r.train])))
           for r in rounds(meta)]
    assert got == [(1, [2], [3, 4, 5]), (2, [3], [1, 4, 5]), (3, [4], [1, 2, 5]),
                   (4, [5], [1, 2, 3]), (5, [1], [2, 3, 4])]


def test_split_datasets_carve_validation_from_train_by_group():
    n = 180
    meta = pd.DataFrame({"fold": 0, "split": ["train"] * 150 + ["test"] * 30,
                         "label": np.tile(["a", "b", "c"], n // 3),
                         "group": [f"spk{i // 3}" for i in range(n)]})
    (only,) = rounds(meta)
    assert set(meta.split[only.test]) == {"test"}
    assert set(meta.split[only.valid]) == {"train"} and len(only.valid) > 0
    assert not set(meta.group[only.valid]) & set(meta.group[only.train])


def test_scores_match_scikit_learn():
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 5])
    proba = np.eye(6)[[0, 1, 1, 1, 2, 0, 3, 3, 5, 5]] * 0.9 + 0.1 / 6
    got = scores(y, proba, list("abcdef"))
    pred = proba.argmax(1)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, pred)) == pytest.approx(0.7)
    assert got["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert got["top5_accuracy"] == pytest.approx(top_k_accuracy_score(y, proba, k=5))


def test_weighted_probe_learns_to_weigh_the_informative_layer(problem, tmp_path):
    features, labels, folds = problem
    store = open_store(write_store(tmp_path / "s.h5", features, labels, folds))
    runs, predictions, probes = probe_store(store, "w", {"kind": "weighted"}, PROTOCOL)
    assert set(runs["layer"]) == {-1} and set(predictions["layer"]) == {-1}
    mix = torch.stack([torch.softmax(r["state"]["mix"][0], 0) for r in probes["rounds"]])
    assert len(probes["rounds"]) == 5
    assert (mix[:, 0] > mix[:, 1]).all()  # layer 0 carries 4x the class signal of layer 1


def test_icbhi_scores_by_hand():
    classes = ["both", "crackle", "normal", "wheeze"]
    y = np.array([2, 2, 2, 2, 1, 1, 3, 0])
    pred = np.array([2, 2, 2, 1, 1, 2, 0, 0])
    got = scores(y, np.eye(4)[pred], classes)
    assert got["specificity"] == pytest.approx(3 / 4)
    assert got["sensitivity"] == pytest.approx(2 / 4)
    assert got["icbhi_score"] == pytest.approx((3 / 4 + 2 / 4) / 2)


@pytest.mark.parametrize("hidden", [[], [32], [16, 16]])
def test_a_probe_trains_the_same_alone_and_stacked(problem, hidden):
    """Stacking, per-member learning rates and dropping finished members change nothing: each
    member's stopping epoch, validation scores and test probabilities equal its own run alone."""
    features, labels, _ = problem
    y = np.unique(labels, return_inverse=True)[1]
    x = (features - features.mean(1, keepdims=True)) / features.std(1, keepdims=True)
    train, valid, test = np.arange(0, 120), np.arange(120, 160), np.arange(160, 200)
    # One seed: a stack shares its first member's batch order, which a lone run would not.
    grid = [[Member(lr, wd, 0) for lr, wd in [(0.01, 0.0), (0.001, 0.1)]] for _ in range(2)]
    fit = lambda members, layers: fit_predict(  # noqa: E731
        x[layers][:, train], y[train], x[layers][:, valid], y[valid], x[layers][:, test], 4,
        Architecture(hidden=hidden), members, max_epochs=40, patience=3, batch_size=32,
        device=torch.device("cpu"))
    stacked = fit(grid, [0, 1])
    assert len(set(stacked.epochs.tolist())) > 1  # members stopped at different epochs
    for e, (layer, member) in enumerate((l, m) for l, group in enumerate(grid) for m in group):
        alone = fit([[member]], [layer])
        assert stacked.epochs[e] == alone.epochs[0]
        assert stacked.val_accuracy[e] == alone.val_accuracy[0]
        np.testing.assert_allclose(stacked.test_proba[e], alone.test_proba[0], atol=1e-5)
