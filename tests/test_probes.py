"""The probing protocol: test data never influences fitting or selection, in any round; scores
are sklearn's."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, top_k_accuracy_score

from audioprobe.features.store import Store, open_store
from audioprobe.probes.label import _predict
from audioprobe.probes.metrics import scores
from audioprobe.probes.run import Probed, probe_all
from audioprobe.probes.splits import rounds
from audioprobe.probes.train import Architecture, Member, fit_predict
from audioprobe.settings import ProtocolSettings
from audioprobe.errors import AudioprobeError
from audioprobe.probes import ALL_LAYERS
from audioprobe.tables import layer_curves, selection_metric, summarize

PROTOCOL = ProtocolSettings.from_config(
    {"seeds": 2, "learning_rates": [0.001, 0.01], "weight_decays": [0.0, 0.01],
     "max_epochs": 30, "patience": 5, "batch_size": 64})
SELECTION = ["layer", "fold", "seed", "lr", "weight_decay", "epochs", "val_score",
             "val_accuracy"]


def write_store(path: Path, features: np.ndarray, labels: np.ndarray, folds: np.ndarray,
                split: np.ndarray | None = None) -> Path:
    """A minimal complete store: (layers, clips, dim) features with labels and folds (0 with a
    split)."""
    n = features.shape[1]
    text = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f["features"] = features.astype(np.float32)
        f.create_dataset("clip_id", data=[f"c{i}" for i in range(n)], dtype=text)
        f.create_dataset("label", data=labels.astype(object), dtype=text)
        f.create_dataset("split", data=[""] * n if split is None else split.tolist(), dtype=text)
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


LEAK_SPECS = [{"kind": "linear"}, {"kind": "mlp", "hidden": [32], "dropout": 0.3},
              {"kind": "weighted"}]


def plant(features: np.ndarray, labels: np.ndarray, where: np.ndarray, seed: int = 1):
    """Other labels and other features (same scale) for the clips ``where``."""
    rng = np.random.default_rng(seed)
    labels, features = labels.copy(), features.copy()
    labels[where] = rng.permutation(np.roll(labels[where], 7))
    features[:, where] = rng.normal(0, 2, features[:, where].shape)
    return features, labels


def round_of(probed: Probed, name: int):
    """Everything one round reports: its runs, its test predictions, its trained probe."""
    (trained,) = [r for r in probed.probes["rounds"] if r["round"] == name]
    runs, predictions = probed.runs, probed.predictions
    return (runs[runs["fold"] == name].reset_index(drop=True),
            predictions[predictions["fold"] == name].reset_index(drop=True), trained)


def assert_round_untouched(clean, planted, store: Store, planted_labels: np.ndarray,
                           architecture: dict) -> None:
    """The planted run's round chose the same layer, grid point and epochs with the same
    validation scores and the same trained probe; its test probabilities are that probe applied
    to the planted test clips, and its scores are scikit-learn's on them."""
    runs, _, trained = clean
    planted_runs, planted_pred, planted_trained = planted
    pd.testing.assert_frame_equal(runs[[*SELECTION, "chosen"]],
                                  planted_runs[[*SELECTION, "chosen"]])
    assert trained["layer"] == planted_trained["layer"]
    for key in ("mean", "scale"):
        torch.testing.assert_close(trained[key], planted_trained[key], rtol=0, atol=1e-6)
    for name, value in trained["state"].items():
        torch.testing.assert_close(value, planted_trained["state"][name], rtol=0, atol=1e-6)
    # The clean round's probe applied to the planted test clips gives the planted run's numbers.
    classes = list(store.attrs["classes"])
    index = pd.Series(np.arange(len(store.meta)), index=store.meta["clip_id"])
    rows = planted_pred[planted_pred["seed"] == 0]
    idx = index[rows["clip_id"]].to_numpy()
    layers = range(store.n_layers) if trained["layer"] == ALL_LAYERS else [trained["layer"]]
    x = torch.as_tensor(np.stack([store.layer(k)[idx] for k in layers]), dtype=torch.float64)
    proba = _predict(x, {"architecture": architecture, "classes": classes}, trained)
    np.testing.assert_allclose(rows.filter(regex="^p_").to_numpy(), proba, atol=1e-5)
    y = pd.Categorical(planted_labels[idx], categories=classes).codes
    got = planted_runs[(planted_runs["seed"] == 0) & planted_runs["chosen"]].iloc[0]
    for metric, value in scores(y, proba, classes).items():
        assert got[metric] == pytest.approx(value, abs=1e-6)


@pytest.mark.parametrize("spec", LEAK_SPECS, ids=lambda s: s["kind"])
def test_changing_a_test_fold_changes_nothing_its_round_chose(problem, spec, tmp_path):
    """For every fold r: other labels and features in fold r (round r's test fold, round
    r-1's validation fold) leave round r's choices, probe and scores as they were."""
    features, labels, folds = problem
    clean_store = open_store(write_store(tmp_path / "clean.h5", features, labels, folds))
    clean = probe_all(clean_store, "p", spec, PROTOCOL)
    for r in np.unique(folds):
        planted_features, planted_labels = plant(features, labels, folds == r)
        store = open_store(write_store(tmp_path / f"planted{r}.h5", planted_features,
                                       planted_labels, folds))
        planted = probe_all(store, "p", spec, PROTOCOL)
        assert_round_untouched(round_of(clean, r), round_of(planted, r), store,
                               planted_labels, planted.probes["architecture"])
        # The planted fold is round r-1's validation fold: that round sees the change.
        before = round_of(clean, (r - 2) % 5 + 1)[0]
        after = round_of(planted, (r - 2) % 5 + 1)[0]
        assert not before["val_accuracy"].equals(after["val_accuracy"])


@pytest.mark.parametrize("spec", LEAK_SPECS, ids=lambda s: s["kind"])
def test_changing_the_test_split_changes_nothing_chosen_on_the_valid_split(problem, spec,
                                                                           tmp_path):
    features, labels, _ = problem
    split = np.array(["train"] * 120 + ["valid"] * 40 + ["test"] * 40)
    folds = np.zeros(len(labels), dtype=int)
    clean_store = open_store(write_store(tmp_path / "clean.h5", features, labels, folds, split))
    clean = probe_all(clean_store, "p", spec, PROTOCOL)
    planted_features, planted_labels = plant(features, labels, split == "test")
    store = open_store(write_store(tmp_path / "planted.h5", planted_features, planted_labels,
                                   folds, split))
    planted = probe_all(store, "p", spec, PROTOCOL)
    assert_round_untouched(round_of(clean, 1), round_of(planted, 1), store, planted_labels,
                           planted.probes["architecture"])


@pytest.fixture()
def crossed(tmp_path):
    """Four folds in which layer 0 carries a strong class signal in odd folds and a weak one in
    even folds, layer 1 the reverse: under the HEAR rotation, every round validates on a fold
    of the other parity than its test fold, so the layer best on validation is never the one
    best on test."""
    rng = np.random.default_rng(3)
    n, dim = 240, 16
    y = rng.integers(0, 4, n)
    folds = np.tile(np.arange(1, 5), n // 4)
    centers = rng.normal(0, 1, (4, dim))
    odd = (folds % 2 == 1)[:, None]
    layer0 = np.where(odd, 1.5, 0.6) * centers[y] + rng.normal(0, 1, (n, dim))
    layer1 = np.where(odd, 0.6, 1.5) * centers[y] + rng.normal(0, 1, (n, dim))
    labels = np.array(["a", "b", "c", "d"])[y]
    return open_store(write_store(tmp_path / "crossed.h5", np.stack([layer0, layer1]), labels,
                                  folds))


def test_each_round_keeps_the_layer_its_validation_chose(crossed):
    probed = probe_all(crossed, "p", {"kind": "linear"}, PROTOCOL)
    runs, predictions, probes = probed.runs, probed.predictions, probed.probes
    per_layer = runs.groupby(["fold", "layer"])[["val_accuracy", "accuracy"]].mean().unstack()
    by_validation = per_layer["val_accuracy"].idxmax(axis=1)
    by_test = per_layer["accuracy"].idxmax(axis=1)
    assert by_validation.tolist() == [1, 0, 1, 0]  # round i validates on fold i + 1
    assert (by_validation != by_test).all()
    chosen = runs[runs["chosen"]]
    assert chosen.groupby("fold")["layer"].unique().map(list).tolist() == [[1], [0], [1], [0]]
    assert [(r["round"], r["layer"]) for r in probes["rounds"]] == [(1, 1), (2, 0), (3, 1),
                                                                    (4, 0)]
    assert predictions.groupby("fold")["layer"].unique().map(list).tolist() == [[1], [0], [1],
                                                                               [0]]
    runs.insert(0, "model", "m")
    runs.insert(0, "dataset", "d")
    (summary,) = summarize(runs).to_dict("records")
    assert summary["chosen_layers"] == "1;0;1;0"
    assert summary["modal_layer"] == 0 and summary["modal_rounds"] == 2
    # The headline is each round's test score at its own chosen layer, seeds averaged first.
    per_round = chosen.groupby("fold")["accuracy"].mean()
    assert summary["accuracy_mean"] == pytest.approx(per_round.mean())
    assert summary["accuracy_sd"] == pytest.approx(per_round.std())
    oracle = per_layer["accuracy"].max(axis=1).mean()
    assert summary["accuracy_mean"] < oracle - 0.1  # what choosing on test would have claimed
    curves = layer_curves(runs).set_index("layer")
    assert curves["rounds_chosen"].tolist() == [2, 2]
    assert curves.loc[0, "accuracy_mean"] == pytest.approx(
        runs[runs["layer"] == 0].groupby("fold")["accuracy"].mean().mean())


def test_results_are_deterministic(problem, tmp_path):
    features, labels, folds = problem
    store = open_store(write_store(tmp_path / "s.h5", features, labels, folds))
    one = probe_all(store, "p", {"kind": "mlp", "hidden": [32]}, PROTOCOL)
    two = probe_all(store, "p", {"kind": "mlp", "hidden": [32]}, PROTOCOL)
    first, p1, second, p2 = one.runs, one.predictions, two.runs, two.predictions
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
    probed = probe_all(store, "w", {"kind": "weighted"}, PROTOCOL)
    runs, predictions, probes = probed.runs, probed.predictions, probed.probes
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


@pytest.mark.parametrize("hidden, dropout", [([], 0.0), ([32], 0.0), ([16, 16], 0.0),
                                             ([32], 0.3), ([16, 16], 0.3)])
def test_a_probe_trains_the_same_alone_and_stacked(problem, hidden, dropout):
    """Stacking, per-member learning rates, dropout and dropping finished members change
    nothing: each member's stopping epoch, validation scores and test probabilities equal its
    own run alone."""
    features, labels, _ = problem
    y = np.unique(labels, return_inverse=True)[1]
    x = (features - features.mean(1, keepdims=True)) / features.std(1, keepdims=True)
    train, valid, test = np.arange(0, 120), np.arange(120, 160), np.arange(160, 200)
    # One seed: a stack shares its first member's batch order, which a lone run would not.
    grid = [[Member(lr, wd, 0) for lr, wd in [(0.01, 0.0), (0.001, 0.1)]] for _ in range(2)]
    fit = lambda members, layers: fit_predict(  # noqa: E731
        x[layers][:, train], y[train], x[layers][:, valid], y[valid], x[layers][:, test], 4,
        Architecture(hidden=hidden, dropout=dropout), members, max_epochs=40, patience=3,
        batch_size=32, device=torch.device("cpu"))
    stacked = fit(grid, [0, 1])
    assert len(set(stacked.epochs.tolist())) > 1  # members stopped at different epochs
    for e, (layer, member) in enumerate((l, m) for l, group in enumerate(grid) for m in group):
        alone = fit([[member]], [layer])
        assert stacked.epochs[e] == alone.epochs[0]
        assert stacked.val_accuracy[e] == alone.val_accuracy[0]
        np.testing.assert_allclose(stacked.test_proba[e], alone.test_proba[0], atol=1e-5)


@pytest.fixture()
def imbalanced(tmp_path):
    """Class "a" holds 80% of the clips; layer 0 carries a strong signal for it and a weak one
    for the rare classes, layer 1 the reverse, so validation accuracy and validation balanced
    accuracy can prefer different layers, grid points and epochs."""
    rng = np.random.default_rng(5)
    n, dim = 300, 16
    y = np.where(rng.random(n) < 0.8, 0, rng.integers(1, 4, n))
    centers = rng.normal(0, 1, (4, dim))
    rare = (y > 0)[:, None]
    layer0 = np.where(rare, 0.3, 1.2) * centers[y] + rng.normal(0, 1, (n, dim))
    layer1 = np.where(rare, 1.2, 0.3) * centers[y] + rng.normal(0, 1, (n, dim))
    labels = np.array(["a", "b", "c", "d"])[y]
    folds = np.tile(np.arange(1, 6), n // 5)
    return open_store(write_store(tmp_path / "imbalanced.h5", np.stack([layer0, layer1]),
                                  labels, folds))


def test_selection_follows_the_selection_metric(imbalanced):
    """Selected on balanced accuracy: each round's layer is the best mean validation balanced
    accuracy, and the recorded validation score is the balanced accuracy of the kept probe on
    the round's validation clips (not its accuracy)."""
    store = imbalanced
    probed = probe_all(store, "p", {"kind": "linear"}, PROTOCOL, metric="balanced_accuracy")
    runs, probes = probed.runs, probed.probes
    assert set(runs["selection_metric"]) == {"balanced_accuracy"}
    per_layer = runs.groupby(["fold", "layer"])["val_score"].mean().unstack()
    chosen = runs[runs["chosen"]].groupby("fold")["layer"].first()
    assert (chosen == per_layer.idxmax(axis=1)).all()
    classes = list(store.attrs["classes"])
    y = pd.Categorical(store.meta["label"], categories=classes).codes
    for rnd, trained in zip(rounds(store.meta), probes["rounds"]):
        x = torch.as_tensor(store.layer(trained["layer"])[rnd.valid][None], dtype=torch.float64)
        proba = _predict(x, {"architecture": probes["architecture"], "classes": classes},
                         trained)
        row = runs[(runs["fold"] == rnd.name) & (runs["layer"] == trained["layer"])
                   & (runs["seed"] == 0)].iloc[0]
        valid = scores(y[rnd.valid], proba, classes)
        assert row["val_score"] == pytest.approx(valid["balanced_accuracy"], abs=1e-6)
        assert row["val_accuracy"] == pytest.approx(valid["accuracy"], abs=1e-6)
    assert (runs["val_score"] != runs["val_accuracy"]).any()
    by_accuracy = probe_all(store, "p", {"kind": "linear"}, PROTOCOL).runs
    assert set(by_accuracy["selection_metric"]) == {"accuracy"}
    assert (by_accuracy["val_score"] == by_accuracy["val_accuracy"]).all()
    differs = by_accuracy[["lr", "weight_decay", "epochs", "chosen"]].compare(
        runs[["lr", "weight_decay", "epochs", "chosen"]])
    assert len(differs) > 0  # the metric changed what was selected


def test_selection_metric_is_the_headline_unless_overridden():
    icbhi = pd.DataFrame({"label": ["normal", "crackle"] * 4, "fold": np.nan,
                          "split": ["test"] * 4 + ["train"] * 4})
    assert selection_metric("headline", icbhi) == "icbhi_score"
    assert selection_metric("accuracy", icbhi) == "accuracy"
    with pytest.raises(AudioprobeError, match='icbhi_score needs a class named "normal"'):
        selection_metric("icbhi_score", icbhi.assign(label="x"))


def test_weighted_probe_layer_weights_sum_to_one_for_every_round_and_seed(problem, tmp_path):
    features, labels, folds = problem
    store = open_store(write_store(tmp_path / "s.h5", features, labels, folds))
    probed = probe_all(store, "w", {"kind": "weighted"}, PROTOCOL)
    weights = probed.layer_weights
    assert set(weights["probe"]) == {"w"} and set(weights["layer"]) == {0, 1}
    assert len(weights) == 5 * PROTOCOL.seeds * 2  # rounds x seeds x layers
    assert np.allclose(weights.groupby(["fold", "seed"])["weight"].sum(), 1.0)
    seed0 = weights[weights["seed"] == 0].pivot(index="fold", columns="layer", values="weight")
    saved = {r["round"]: torch.softmax(r["state"]["mix"][0].double(), 0).numpy()
             for r in probed.probes["rounds"]}
    for fold, row in seed0.iterrows():
        assert np.allclose(row.to_numpy(), saved[fold])
    linear = probe_all(store, "p", {"kind": "linear"}, PROTOCOL)
    assert linear.layer_weights.empty


def test_training_curves_are_each_rounds_chosen_probe_with_its_checkpoint(problem, tmp_path):
    features, labels, folds = problem
    store = open_store(write_store(tmp_path / "s.h5", features, labels, folds))
    probed = probe_all(store, "p", {"kind": "linear"}, PROTOCOL)
    chosen = probed.runs[probed.runs["chosen"] & (probed.runs["seed"] == 0)].set_index("fold")
    curves = probed.curves
    assert sorted(set(curves["fold"])) == sorted(chosen.index)
    for fold, curve in curves.groupby("fold"):
        run = chosen.loc[fold]
        assert set(curve["layer"]) == {run["layer"]}
        assert (curve["lr"].iloc[0], curve["weight_decay"].iloc[0]) == (run["lr"],
                                                                          run["weight_decay"])
        assert list(curve["epoch"]) == list(range(1, len(curve) + 1))
        at = curve[curve["epoch"] == run["epochs"]]
        assert (curve["chosen_epoch"] == run["epochs"]).all() and len(at) == 1
        assert at["valid_accuracy"].iloc[0] == pytest.approx(run["val_accuracy"])
        assert len(curve) >= run["epochs"]  # it ran on after its checkpoint, within patience
        assert curve[["train_loss", "valid_loss"]].notna().all().all()
        assert curve["train_accuracy"].between(0, 1).all()
    short = ProtocolSettings.from_config(
        {"seeds": 1, "learning_rates": [0.001], "weight_decays": [0.0], "max_epochs": 2,
         "patience": 5, "batch_size": 64})
    flagged = probe_all(store, "p", {"kind": "linear"}, short).curves
    assert flagged["stopped_at_max_epochs"].all() and flagged["epoch"].max() == 2
