"""Intervals over rounds, group bootstrap, paired comparisons and Holm's correction, on
synthetic cases with a known difference and a known null."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from audioprobe import statistics
from audioprobe.probes.metrics import scores, scores_from_counts
from audioprobe.tables import (compare, comparison_pairs, group_counts, headline_metric,
                               interval_estimates, layer_curves, read_predictions, summarize)


def test_corrected_t_is_students_t_widened_by_the_nadeau_bengio_factor():
    values = np.array([0.81, 0.84, 0.79, 0.86, 0.83])
    plain = statistics.corrected_t(values, 0.0)
    low, high = stats.t.interval(0.95, 4, loc=values.mean(), scale=stats.sem(values))
    assert (plain.low, plain.high) == pytest.approx((low, high))
    assert plain.p_value == pytest.approx(stats.ttest_1samp(values, 0).pvalue)
    # 5 rounds, 3 folds train and 1 tests: variance (1/5 + 1/3) s^2 instead of s^2 / 5
    corrected = statistics.corrected_t(values, 1 / 3)
    factor = np.sqrt((1 / 5 + 1 / 3) / (1 / 5))
    assert corrected.high - corrected.mean == pytest.approx((high - values.mean()) * factor)
    assert np.isnan(statistics.corrected_t(values[:1], 1 / 3).low)


def test_holm_by_hand():
    got = statistics.holm(np.array([0.01, 0.04, 0.03, 0.005, np.nan]))
    np.testing.assert_allclose(got[:4], [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(got[4])


def test_strata_resamples_draw_whole_groups_within_each_stratum():
    strata = np.array([0, 0, 0, 1, 1, 2, 0])
    draws = statistics.strata_resamples(strata, 500, seed=1)
    assert draws.shape == (500, 7) and (draws.sum(1) == 7).all()
    for stratum, size in ((0, 4), (1, 2), (2, 1)):
        assert (draws[:, strata == stratum].sum(1) == size).all()
    assert (draws[:, 5] == 1).all()  # a stratum's only group is in every resample
    np.testing.assert_array_equal(draws, statistics.strata_resamples(strata, 500, seed=1))


def test_scores_from_counts_equal_scikit_learn_with_clip_weights():
    rng = np.random.default_rng(0)
    classes = ["both", "crackle", "normal", "wheeze", "e", "f", "g"]
    y = rng.integers(0, 7, 300)
    proba = rng.dirichlet(np.ones(7), 300)
    proba[np.arange(300), y] += 0.3 * rng.random(300)
    weight = rng.poisson(1.0, 300).astype(float)
    want = scores(y, proba, classes, sample_weight=weight)
    onehot = lambda k: np.eye(7)[k] * weight[:, None]  # noqa: E731
    right = (proba.argmax(1) == y)
    ranked = np.argsort(proba, axis=1, kind="mergesort")[:, ::-1][:, :5]
    got = scores_from_counts(onehot(y).sum(0)[None], onehot(proba.argmax(1)).sum(0)[None],
                             (onehot(y) * right[:, None]).sum(0)[None],
                             np.array([weight @ (ranked == y[:, None]).any(1)]), classes)
    assert set(got) == set(want)
    for metric, value in want.items():
        assert got[metric][0] == pytest.approx(value), metric


def predictions_table(correct: np.ndarray, groups: np.ndarray, rng) -> pd.DataFrame:
    """Two-class test predictions, right where ``correct``."""
    label = rng.integers(0, 2, len(correct))
    pred = np.where(correct, label, 1 - label)
    p_a = np.where(pred == 0, 0.9, 0.1)
    return pd.DataFrame({"clip_id": [f"c{i}" for i in range(len(correct))], "layer": 0,
                         "fold": 1, "seed": 0, "label": np.array(["a", "b"])[label],
                         "prediction": np.array(["a", "b"])[pred], "loss": 0.0,
                         "p_a": p_a, "p_b": 1 - p_a})


def test_group_bootstrap_is_wider_when_clips_of_a_group_agree():
    """40 groups of 10 clips: when a group's clips are all right or all wrong, the interval
    over groups is about sqrt(10) times wider than if every clip were its own group."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 10)
    correct = np.repeat(rng.random(40) < 0.7, 10)
    table = predictions_table(correct, groups, rng)
    widths = []
    for g in (groups, np.arange(400)):
        estimate = interval_estimates(group_counts(table, g, g.max() + 1),
                                      ["accuracy"])["accuracy"]
        assert estimate.mean == pytest.approx(correct.mean())
        assert estimate.low < correct.mean() < estimate.high
        widths.append(estimate.high - estimate.low)
    assert 2.2 < widths[0] / widths[1] < 4.5


def kfold_runs(means: dict[str, float], rng, rounds: int = 5, seeds: int = 3,
               shared: np.ndarray | None = None) -> pd.DataFrame:
    """Runs of models with known mean accuracy: a round effect shared by all models (as the same
    test fold is hard or easy for every model), per-model round noise and seed noise."""
    shared = rng.normal(0, 0.05, rounds) if shared is None else shared
    rows = []
    for model, mean in means.items():
        noise = rng.normal(0, 0.01, rounds)
        for r in range(rounds):
            for seed in range(seeds):
                accuracy = mean + shared[r] + noise[r] + rng.normal(0, 0.005)
                rows.append({"dataset": "d", "model": model, "probe": "linear", "layer": 3,
                             "fold": r + 1, "seed": seed, "val_accuracy": accuracy,
                             "accuracy": accuracy, "n_train": 300, "n_valid": 100,
                             "n_test": 100, "chosen": True})
    return pd.DataFrame(rows)


MODELS = {"hubert": {"family": "transformers", "checkpoint": "facebook/hubert-base-ls960"},
          "hubert_random": {"family": "transformers", "checkpoint": "facebook/hubert-base-ls960",
                            "random_weights": True},
          "wavlm": {"family": "transformers", "checkpoint": "microsoft/wavlm-base"},
          "logmel": {"family": "logmel"}}


def test_summary_averages_seeds_within_a_round_before_the_interval():
    rng = np.random.default_rng(0)
    runs = kfold_runs({"hubert": 0.8}, rng)
    (row,) = summarize(runs).to_dict("records")
    per_round = runs.groupby("fold")["accuracy"].mean()
    assert row["n_rounds"] == 5 and row["n_seeds"] == 3
    assert row["accuracy_sd"] == pytest.approx(per_round.std())
    want = statistics.corrected_t(per_round.to_numpy(), 100 / 300)
    assert (row["accuracy_ci_low"], row["accuracy_ci_high"]) == pytest.approx((want.low,
                                                                               want.high))
    assert row["interval"] == ("95% CI over training and test sampling, Nadeau-Bengio "
                               "corrected t (n_test/n_train = 0.333), n=5 rounds")
    assert row["accuracy_seed_sd"] == pytest.approx(
        runs.groupby("fold")["accuracy"].std().mean())
    (curve,) = layer_curves(runs).to_dict("records")
    assert (curve["accuracy_ci_low"], curve["accuracy_ci_high"]) == pytest.approx(
        (row["accuracy_ci_low"], row["accuracy_ci_high"]))  # one layer: the same rounds
    # validation: the same correction with n_valid / n_train
    val = statistics.corrected_t(runs.groupby("fold")["val_accuracy"].mean().to_numpy(),
                                 100 / 300, bounds=(0, 1))
    assert (curve["val_accuracy_ci_low"], curve["val_accuracy_ci_high"]) == pytest.approx(
        (val.low, val.high))


def test_comparisons_find_a_known_difference_and_not_a_null():
    rng = np.random.default_rng(1)
    runs = kfold_runs({"hubert": 0.85, "hubert_random": 0.60, "wavlm": 0.85, "logmel": 0.70},
                      rng, rounds=10)
    summary = summarize(runs)
    table = compare(runs, summary, MODELS).set_index(["model_a", "model_b"])
    assert set(table["relation"]) == {"vs random-weights control", "vs log-mel baseline",
                                      "between models"}
    assert len(table) == 6  # every pair of the 4 models, once
    assert set(table["test"]) == {"paired t over rounds, Nadeau-Bengio corrected"}
    control = table.loc["hubert", "hubert_random"]
    assert control["relation"] == "vs random-weights control"
    assert control["ci_low"] < 0.25 < control["ci_high"] and control["p_holm"] < 0.01
    null = table.loc["hubert", "wavlm"]
    assert null["ci_low"] < 0 < null["ci_high"] and null["p_holm"] > 0.05
    assert (table["p_holm"] >= table["p_value"]).all() and table["n"].eq(10).all()


def test_paired_t_holds_its_level_under_the_null():
    """Two equal models, 200 synthetic studies: the corrected paired t rejects at 5% in about
    5% of them or fewer (it is conservative when rounds are independent)."""
    rng = np.random.default_rng(2)
    rejected = 0
    for _ in range(200):
        runs = kfold_runs({"hubert": 0.8, "wavlm": 0.8}, rng, seeds=1)
        rejected += compare(runs, summarize(runs), MODELS)["p_value"].item() < 0.05
    assert rejected / 200 <= 0.08


def test_paired_bootstrap_over_groups_finds_a_known_difference_and_not_a_null():
    rng = np.random.default_rng(3)
    n_groups, size = 60, 5
    groups = np.repeat(np.arange(n_groups), size)
    clips = [f"c{i}" for i in range(n_groups * size)]
    group_of = {"d": pd.Series([f"spk{g}" for g in groups], index=clips)}
    hard = np.repeat(rng.random(n_groups) < 0.3, size)  # groups hard for every model
    truth = {"hubert": 0.9, "wavlm": 0.9, "logmel": 0.6}
    predictions, rows = {}, []
    for model, accuracy in truth.items():
        correct = (rng.random(len(clips)) < accuracy) & ~(hard & (rng.random(len(clips)) < .5))
        table = predictions_table(correct, groups, np.random.default_rng(9))
        predictions["d", model, "linear"] = table
        rows.append({"dataset": "d", "model": model, "probe": "linear", "layer": 0, "fold": 1,
                     "seed": 0, "val_accuracy": 0.5,
                     **scores(pd.Categorical(table["label"]).codes,
                              table[["p_a", "p_b"]].to_numpy(), ["a", "b"]),
                     "n_train": 900, "n_valid": 100, "n_test": len(clips), "chosen": True})
    runs = pd.DataFrame(rows)
    summary = summarize(runs, predictions=predictions, groups=group_of)
    assert summary["interval"].eq(
        "95% CI over test sampling, probe held fixed, bootstrap-t over test groups within "
        "classes (2000 resamples), n=1 split").all()
    assert (summary["accuracy_ci_low"] < summary["accuracy_mean"]).all()
    table = compare(runs, summary, MODELS, predictions, group_of).set_index(
        ["model_a", "model_b"])
    assert set(table["test"]) == {
        "paired sign-flip test over test groups, bootstrap-t interval"}
    assert table["n"].eq(n_groups).all()
    baseline = table.loc["hubert", "logmel"]
    assert baseline["ci_low"] > 0.1 and baseline["p_holm"] < 0.01
    pair = ("hubert", "wavlm") if ("hubert", "wavlm") in table.index else ("wavlm", "hubert")
    assert table.loc[pair, "ci_low"] < 0 < table.loc[pair, "ci_high"]
    assert table.loc[pair, "p_holm"] > 0.05


def test_comparison_pairs_each_once():
    summary = pd.DataFrame({"model": list(MODELS), "headline_metric": "accuracy",
                            "accuracy_mean": [0.9, 0.5, 0.8, 0.6]})
    pairs = comparison_pairs(summary, MODELS)
    assert pairs == [("hubert", "hubert_random", "vs random-weights control"),
                     ("hubert", "logmel", "vs log-mel baseline"),
                     ("hubert_random", "logmel", "vs log-mel baseline"),
                     ("wavlm", "logmel", "vs log-mel baseline"),
                     ("hubert", "wavlm", "between models"),
                     ("hubert_random", "wavlm", "between models")]


def test_headline_metric_is_balanced_accuracy_for_imbalanced_test_sets():
    folds = pd.DataFrame({"label": list("aabbcc"), "fold": [1, 2, 1, 2, 1, 2], "split": ""})
    assert headline_metric(folds) == "accuracy"
    split = pd.DataFrame({"label": list("aaaabbbbbaab"), "fold": np.nan,
                          "split": ["test"] * 6 + ["train"] * 6})
    assert headline_metric(split) == "balanced_accuracy"  # test: a 4, b 2


def test_a_prediction_of_a_clip_missing_from_the_manifest_is_named():
    rng = np.random.default_rng(0)
    table = predictions_table(np.ones(4, dtype=bool), np.arange(4), rng)
    runs = pd.DataFrame([{"dataset": "d", "model": "m", "probe": "linear", "layer": 0, "fold": 1,
                          "seed": 0, "val_accuracy": 1.0, "accuracy": 1.0, "n_train": 8,
                          "n_test": 4, "chosen": True}])
    groups = {"d": pd.Series(["g0", "g1", "g2"], index=["c0", "c1", "c2"])}
    with pytest.raises(ValueError, match="test clip 'c3' of the predictions is not in"):
        summarize(runs, predictions={("d", "m", "linear"): table}, groups=groups)


def test_bootstrap_of_a_metric_undefined_on_every_resample_is_nan():
    """Top-5 accuracy of a task with 5 classes or fewer is NaN on every resample: the interval is
    NaN too, not an error that stops the summary of every other dataset."""
    estimate = statistics.bootstrap_t(np.nan, np.nan, np.full(100, np.nan), np.full(100, 0.1))
    assert np.isnan(estimate.low) and np.isnan(estimate.high) and np.isnan(estimate.p_value)
    assert np.isnan(statistics.sign_flip_p(np.nan, np.zeros(10)))


def test_corrected_t_limits_stay_within_what_a_score_can_be():
    values = np.array([0.9, 1.0, 0.95, 1.0, 0.85])
    free = statistics.corrected_t(values, 1 / 3)
    assert free.high > 1  # the symmetric interval reaches past a perfect score
    bounded = statistics.corrected_t(values, 1 / 3, bounds=(0, 1))
    assert (bounded.mean, bounded.low, bounded.high) == (free.mean, free.low, 1.0)
    assert bounded.p_value == free.p_value


def test_predictions_keep_labels_pandas_would_read_as_missing(tmp_path):
    path = tmp_path / "linear.csv"
    path.write_text("clip_id,fold,seed,label,prediction,loss\n"
                    "NA,1,0,None,NA,0.5\nc2,1,0,NA,None,\n")
    table = read_predictions(path)
    assert table["clip_id"].tolist() == ["NA", "c2"]
    assert table["label"].tolist() == ["None", "NA"]
    assert table["prediction"].tolist() == ["NA", "None"]
    assert table["loss"].iloc[0] == 0.5 and np.isnan(table["loss"].iloc[1])


def null_simulation():
    """bench/null_simulation.py, whose draws the fast versions of its simulations reuse."""
    path = Path(__file__).parents[1] / "bench" / "null_simulation.py"
    spec = importlib.util.spec_from_file_location("null_simulation", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sign_flip_test_holds_its_level_and_bootstrap_t_covers_with_unequal_groups():
    """Fast version of bench/null_simulation.py (figures in the README): 50 test groups of
    unequal, ICBHI-like sizes, two equal models. The sign-flip test rejects in about 5% of
    null draws, and the bootstrap-t intervals cover the population value and 0 in about 95%
    (loose bounds for 200 draws)."""
    sim = null_simulation()
    rng = np.random.default_rng(7)
    truth = sim.population(np.random.default_rng(12345))["icbhi_score"]
    rejected = covered = covered_difference = 0
    for _ in range(200):
        a, b = sim.split_draw(rng, 50, 2)
        one = interval_estimates(a, ["icbhi_score"], n_resamples=500)["icbhi_score"]
        covered += one.low <= truth <= one.high
        pair = interval_estimates(a, ["icbhi_score"], b, n_resamples=500)["icbhi_score"]
        rejected += pair.p_value < 0.05
        covered_difference += pair.low <= 0 <= pair.high
    assert 0.01 <= rejected / 200 <= 0.09
    assert covered / 200 >= 0.89 and covered_difference / 200 >= 0.89


def test_five_equal_models_compared_in_all_pairs_keep_the_family_wise_error():
    """Every pair of five equal models with Holm over all ten: a false "difference" anywhere in
    at most about 5% of null draws, whichever model one would call best (50 draws)."""
    sim = null_simulation()
    rng = np.random.default_rng(8)
    family = 0
    for _ in range(50):
        five = sim.split_draw(rng, 50, 5)
        p = [interval_estimates(five[i], ["icbhi_score"], five[j],
                                n_resamples=200)["icbhi_score"].p_value
             for i in range(5) for j in range(i + 1, 5)]
        family += (statistics.holm(np.array(p)) < 0.05).any()
    assert family / 50 <= 0.08


def test_no_class_leaves_a_resample_of_groups():
    """Three groups hold the rare class "c", which a plain bootstrap of 40 groups loses in
    about 5% of resamples; resampling within each group's rarest class never does."""
    labels = np.array(["a", "b"] * 80 + ["c"] * 3 + ["a"] * 3)
    groups = np.r_[np.repeat(np.arange(37), 160 // 37 + 1)[:160], [37, 38, 39] * 2]
    proba = (labels[:, None] == np.array(["a", "b", "c"])).astype(float)
    table = pd.DataFrame({"clip_id": [f"c{i}" for i in range(len(labels))], "seed": 0,
                          "label": labels, "p_a": proba[:, 0], "p_b": proba[:, 1],
                          "p_c": proba[:, 2]})
    counts = group_counts(table, groups, 40)
    resamples = statistics.strata_resamples(counts.strata(), 1000)
    held = resamples @ counts.true[0]
    assert (held > 0).all()
    estimate = interval_estimates(counts, ["balanced_accuracy"])["balanced_accuracy"]
    assert estimate.mean == 1.0 and np.isfinite(estimate.low)


def test_kfold_pairs_are_scored_on_the_clips_both_kept():
    """Model b lost (rejected) the clips model a gets wrong: on its own clips a scores 0.75 per
    round, on the clips both kept 1.0, the same as b, so the difference is 0."""
    rng = np.random.default_rng(0)
    predictions, rows = {}, []
    for model in ("hubert", "wavlm"):
        frames = []
        for fold in range(1, 6):
            correct = np.r_[np.ones(30, dtype=bool), np.zeros(10, dtype=bool)]
            table = predictions_table(correct if model == "hubert" else correct[:30],
                                      np.arange(40), rng)
            table["clip_id"] = [f"f{fold}c{i}" for i in range(len(table))]
            frames.append(table.assign(fold=fold))
            rows.append({"dataset": "d", "model": model, "probe": "linear", "layer": 0,
                         "fold": fold, "seed": 0, "val_accuracy": 0.5,
                         "accuracy": correct[:len(table)].mean(), "n_train": 160,
                         "n_valid": 40, "n_test": len(table), "chosen": True})
        predictions["d", model, "linear"] = pd.concat(frames, ignore_index=True)
    runs = pd.DataFrame(rows)
    (row,) = compare(runs, summarize(runs), MODELS, predictions).to_dict("records")
    assert (row["mean_a"], row["mean_b"], row["difference"]) == (1.0, 1.0, 0.0)


def test_icbhi_headline_is_the_icbhi_score():
    manifest = pd.DataFrame({"label": ["normal", "crackle", "wheeze", "both"] * 3,
                             "fold": np.nan, "split": ["test"] * 4 + ["train"] * 8})
    assert headline_metric(manifest) == "icbhi_score"
