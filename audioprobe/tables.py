"""Result tables: the headline summary, the per-layer curves and the paired comparisons.

Every score is first averaged over the seeds of its evaluation round (seeds share their test
clips, so they are not independent samples); the round is the unit of replication. The headline
score of a dataset x model x probe is the mean over rounds of each round's test score at the
layer that round chose on its own validation data (``chosen`` in the runs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from audioprobe import statistics
from audioprobe.features.families import is_baseline
from audioprobe.probes.metrics import scores_from_counts

SCORES = ["accuracy", "macro_f1", "balanced_accuracy", "top5_accuracy", "sensitivity",
          "specificity", "icbhi_score"]
CASE = ["dataset", "model", "probe"]
ALL_LAYERS = -1  # the layer value of the weighted probe's rows (a learned mix of all layers)
IMBALANCE = 1.5  # largest / smallest test class above this: the headline is balanced accuracy
T_TEST = "paired t over rounds, Nadeau-Bengio corrected"
BOOTSTRAP_TEST = "paired bootstrap over test groups"
RELATIONS = ("vs random-weights control", "vs log-mel baseline", "best vs other")


def headline_metric(manifest: pd.DataFrame) -> str:
    """"balanced_accuracy" when the test clips (every clip of a k-fold dataset, the test split
    otherwise) are imbalanced: the largest class holds more than 1.5 times the clips of the
    smallest; "accuracy" otherwise."""
    folds = manifest["fold"]
    tested = manifest if folds.notna().all() else manifest[manifest["split"] == "test"]
    counts = tested["label"].value_counts()
    return "balanced_accuracy" if counts.max() > IMBALANCE * counts.min() else "accuracy"


def clip_groups(manifest: pd.DataFrame) -> pd.Series:
    """The group (speaker, patient, recording...) of every clip, by clip id."""
    return manifest.assign(clip_id=manifest["clip_id"].astype(str)).set_index("clip_id")["group"]


def round_scores(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset x model x probe x round at the round's chosen layer: scores
    averaged over seeds, with the round's training and test sizes."""
    metrics = [m for m in [*SCORES, "val_accuracy"] if m in runs]
    chosen = runs[runs["chosen"].astype(bool)]
    return chosen.groupby([*CASE, "fold", "layer"], as_index=False)[
        [*metrics, "n_train", "n_test"]].mean()


def summarize(runs: pd.DataFrame, headline: dict[str, str] | None = None,
              predictions: dict[tuple[str, str, str], pd.DataFrame] | None = None,
              groups: dict[str, pd.Series] | None = None) -> pd.DataFrame:
    """The headline table: one row per dataset x model x probe (columns in the README).

    Several rounds: mean and sd over rounds and the Nadeau-Bengio corrected t interval. One
    round (a single split): the group bootstrap interval over test clips, from ``predictions``
    and the clips' ``groups`` of each dataset (NaN without them)."""
    metrics = [m for m in SCORES if m in runs]
    per_round = round_scores(runs)
    chosen = runs[runs["chosen"].astype(bool)]
    seed_sd = chosen.groupby([*CASE, "fold"])[metrics].std().groupby(CASE).mean()
    rows = []
    for case, part in per_round.groupby(CASE, sort=True):
        part = part.sort_values("fold")
        layers = part["layer"].astype(int).tolist()
        counts = pd.Series(layers).value_counts()
        modal = int(min(counts.index[counts == counts.max()]))
        n = len(part)
        row = dict(zip(CASE, case)) | {
            "n_rounds": n, "n_seeds": runs.loc[_rows(runs, case), "seed"].nunique(),
            "chosen_layers": ";".join(map(str, layers)), "modal_layer": modal,
            "modal_rounds": int(counts[modal]),
            "headline_metric": (headline or {}).get(case[0], "accuracy"),
        }
        ratio = part["n_test"].mean() / part["n_train"].mean()
        if n > 1:
            row["interval"] = (f"95% CI, Nadeau-Bengio corrected t (n_test/n_train = "
                               f"{ratio:.3g}), n={n} rounds")
            intervals = {m: statistics.corrected_t(part[m].to_numpy(), ratio, bounds=(0, 1))
                         for m in metrics}
        elif predictions and groups and case in predictions:
            row["interval"] = (f"95% CI, bootstrap over test groups ({statistics.RESAMPLES} "
                               "resamples), n=1 split")
            intervals = _bootstrap_intervals(part.iloc[0], predictions[case], groups[case[0]],
                                             metrics)
        else:
            row["interval"] = "none (one round and no test predictions)"
            intervals = {}
        for m in metrics:
            estimate = intervals.get(m)
            row |= {f"{m}_mean": part[m].mean(), f"{m}_sd": part[m].std() if n > 1 else np.nan,
                    f"{m}_ci_low": estimate.low if estimate else np.nan,
                    f"{m}_ci_high": estimate.high if estimate else np.nan,
                    f"{m}_seed_sd": seed_sd.loc[case, m]}
        row["val_accuracy_mean"] = part["val_accuracy"].mean()
        rows.append(row)
    return pd.DataFrame(rows)


def _rows(frame: pd.DataFrame, case: tuple) -> pd.Series:
    return (frame[CASE] == pd.Series(case, index=CASE)).all(axis=1)


def layer_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Descriptive per-layer test scores (not a selection): one row per dataset x model x
    probe x layer, mean and sd over rounds after averaging seeds within a round, the 95%
    Nadeau-Bengio corrected t interval over rounds (as the summary's; validation accuracy with
    n_valid/n_train; NaN with one round), and how many rounds chose the layer."""
    metrics = [m for m in [*SCORES, "val_accuracy"] if m in runs]
    per_round = runs.groupby([*CASE, "layer", "fold"])[metrics].mean()
    per_round["chosen"] = runs.groupby([*CASE, "layer", "fold"])["chosen"].first().astype(bool)
    grouped = per_round.groupby([*CASE, "layer"])
    out = grouped[metrics].agg(["mean", "std"])
    out.columns = [f"{m}_{'sd' if s == 'std' else s}" for m, s in out.columns]
    out["rounds_chosen"] = grouped["chosen"].sum().astype(int)
    out["n_rounds"] = grouped.size()
    sizes = runs.groupby([*CASE, "layer"])[["n_train", "n_valid", "n_test"]].mean()
    for m in metrics:
        held_out = sizes["n_valid" if m == "val_accuracy" else "n_test"]
        out[f"{m}_ci_low"], out[f"{m}_ci_high"] = statistics.corrected_t_limits(
            out[f"{m}_mean"], out[f"{m}_sd"], out["n_rounds"], held_out / sizes["n_train"],
            bounds=(0, 1))
    return out.reset_index()


def resampled_scores(predictions: pd.DataFrame, group_codes: np.ndarray, n_groups: int,
                     multiplicities: np.ndarray) -> dict[str, np.ndarray]:
    """Scores (averaged over seeds) of the test predictions under each resample of groups.

    ``group_codes``: the group number of each row of ``predictions``; ``multiplicities``
    (R, n_groups): how often each group counts in each resample (a row of ones: the data as
    observed)."""
    classes = [c.removeprefix("p_") for c in predictions.columns if c.startswith("p_")]
    n_classes = len(classes)
    per_seed = []
    for _, rows in predictions.groupby("seed"):
        proba = rows.filter(regex="^p_").to_numpy()
        y = pd.Categorical(rows["label"].astype(str), categories=classes).codes
        pred = proba.argmax(1)
        g = group_codes[rows.index.to_numpy()]
        true, predicted, hits = (np.zeros((n_groups, n_classes)) for _ in range(3))
        np.add.at(true, (g, y), 1)
        np.add.at(predicted, (g, pred), 1)
        right = y == pred
        np.add.at(hits, (g[right], y[right]), 1)
        top5 = None
        if n_classes > 5:  # as scikit-learn's top_k_accuracy_score ranks them
            ranked = np.argsort(proba, axis=1, kind="mergesort")[:, ::-1][:, :5]
            in_top5 = (ranked == y[:, None]).any(1)
            top5 = multiplicities @ np.bincount(g, weights=in_top5, minlength=n_groups)
        per_seed.append(scores_from_counts(multiplicities @ true, multiplicities @ predicted,
                                           multiplicities @ hits, top5, classes))
    return {m: np.mean([s[m] for s in per_seed], axis=0) for m in per_seed[0]}


def _group_of(predictions: pd.DataFrame, groups: pd.Series) -> np.ndarray:
    """The group of every prediction row; a clip missing from the manifest stops with its id."""
    names = groups.reindex(predictions["clip_id"].astype(str))
    if names.isna().any():
        raise ValueError(f"test clip {names[names.isna()].index[0]!r} of the predictions is not "
                         "in the dataset's manifest")
    return names.to_numpy()


def _codes(predictions: pd.DataFrame, groups: pd.Series) -> tuple[np.ndarray, int]:
    """The group number of every prediction row, and the number of groups."""
    codes, uniques = pd.factorize(_group_of(predictions, groups))
    return codes, len(uniques)


def _bootstrap_intervals(point: pd.Series, predictions: pd.DataFrame, groups: pd.Series,
                         metrics: list[str]) -> dict[str, statistics.Estimate]:
    predictions = predictions.reset_index(drop=True)
    codes, n_groups = _codes(predictions, groups)
    samples = resampled_scores(predictions, codes, n_groups,
                               statistics.group_resamples(n_groups))
    return {m: statistics.bootstrap(point[m], samples[m]) for m in metrics if m in samples}


def comparison_pairs(summary: pd.DataFrame, models: dict[str, dict]) -> list[tuple]:
    """(model_a, model_b, relation) of one dataset and probe's summary rows, each pair once:
    each model against its random-weights control (the same spec with ``random_weights:
    true``: same family, checkpoint, bundle or capacity, pooling), each model against the
    log-mel baseline (any model of family logmel), and the best model (headline mean) against
    every other."""
    present = list(summary["model"])
    spec = {m: models.get(m, {}) for m in present}
    source = lambda s: {k: v for k, v in s.items() if k != "random_weights"}  # noqa: E731
    pairs = []
    for a in present:
        if spec[a].get("random_weights") or is_baseline(spec[a]):
            continue
        for b in present:
            if spec[b].get("random_weights") and source(spec[b]) == source(spec[a]):
                pairs.append((a, b, RELATIONS[0]))
    for a in present:
        for b in present:
            if is_baseline(spec[b]) and not is_baseline(spec[a]):
                pairs.append((a, b, RELATIONS[1]))
    metric = summary["headline_metric"].iloc[0]
    best = summary.loc[summary[f"{metric}_mean"].idxmax(), "model"]
    pairs += [(best, b, RELATIONS[2]) for b in present if b != best]
    seen, unique = set(), []
    for a, b, relation in pairs:
        if frozenset((a, b)) not in seen:
            seen.add(frozenset((a, b)))
            unique.append((a, b, relation))
    return unique


def compare(runs: pd.DataFrame, summary: pd.DataFrame, models: dict[str, dict],
            predictions: dict[tuple[str, str, str], pd.DataFrame] | None = None,
            groups: dict[str, pd.Series] | None = None) -> pd.DataFrame:
    """Paired comparisons on each dataset's headline metric (columns in the README), with
    Holm's correction across the comparisons of one dataset.

    Several rounds: the per-round differences (seeds averaged) get the Nadeau-Bengio corrected
    t test. One round: the same resamples of test groups score both models (on the clips both
    kept), a paired bootstrap."""
    per_round = round_scores(runs).set_index([*CASE, "fold"])
    rows = []
    for (dataset, probe), part in summary.groupby(["dataset", "probe"], sort=True):
        metric = part["headline_metric"].iloc[0]
        for a, b, relation in comparison_pairs(part, models):
            base = {"dataset": dataset, "probe": probe, "metric": metric, "model_a": a,
                    "model_b": b, "relation": relation}
            score_a = per_round.loc[(dataset, a, probe)]
            score_b = per_round.loc[(dataset, b, probe)]
            folds = score_a.index.intersection(score_b.index)
            if len(folds) > 1:
                a_, b_ = score_a.loc[folds], score_b.loc[folds]
                ratio = (pd.concat([a_, b_])["n_test"].mean()
                         / pd.concat([a_, b_])["n_train"].mean())
                estimate = statistics.corrected_t((a_[metric] - b_[metric]).to_numpy(), ratio,
                                                  bounds=(-1, 1))
                means, test, n = (a_[metric].mean(), b_[metric].mean()), T_TEST, len(folds)
            elif predictions and groups:
                means, estimate, n = _paired_bootstrap(predictions[dataset, a, probe],
                                                       predictions[dataset, b, probe],
                                                       groups[dataset], metric)
                test = BOOTSTRAP_TEST
            else:
                continue
            rows.append(base | {"mean_a": means[0], "mean_b": means[1],
                                "difference": estimate.mean, "ci_low": estimate.low,
                                "ci_high": estimate.high, "p_value": estimate.p_value,
                                "test": test, "n": n})
    columns = ["dataset", "probe", "metric", "model_a", "model_b", "relation", "mean_a",
               "mean_b", "difference", "ci_low", "ci_high", "p_value", "p_holm", "test", "n"]
    table = pd.DataFrame(rows, columns=[c for c in columns if c != "p_holm"])
    table.insert(12, "p_holm", np.nan)
    for _, index in table.groupby("dataset").groups.items():
        table.loc[index, "p_holm"] = statistics.holm(table.loc[index, "p_value"].to_numpy())
    return table[columns]


def _paired_bootstrap(pred_a: pd.DataFrame, pred_b: pd.DataFrame, groups: pd.Series,
                      metric: str) -> tuple[tuple[float, float], statistics.Estimate, int]:
    """Means of a and b on the test clips both kept, and the bootstrap of their difference
    over resamples of whole groups, the same resamples for both; n: the number of groups."""
    common = set(pred_a["clip_id"].astype(str)) & set(pred_b["clip_id"].astype(str))
    pred_a, pred_b = (p[p["clip_id"].astype(str).isin(common)].reset_index(drop=True)
                      for p in (pred_a, pred_b))
    names = pd.unique(_group_of(pred_a, groups))
    index = pd.Series(np.arange(len(names)), index=names)
    resamples = statistics.group_resamples(len(names))
    observed = np.ones((1, len(names)))
    point, samples = [], []
    for pred in (pred_a, pred_b):
        codes = index.loc[_group_of(pred, groups)].to_numpy()
        point.append(float(resampled_scores(pred, codes, len(names), observed)[metric][0]))
        samples.append(resampled_scores(pred, codes, len(names), resamples)[metric])
    estimate = statistics.bootstrap(point[0] - point[1], samples[0] - samples[1])
    return (point[0], point[1]), estimate, len(names)


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A predictions table, ids and labels kept as text (a label such as "NA" or "None" is a
    class, not a missing value)."""
    return pd.read_csv(path, dtype={"clip_id": str, "label": str, "prediction": str},
                       keep_default_na=False, na_values={"loss": ["", "nan", "NaN"]})


# Columns of the result tables (runs, summary, layers, comparisons) that are text or whole
# numbers; every other column is read as a float, whatever its values look like (an interval
# bound of 0 in every row is still a float).
TEXT_COLUMNS = {"dataset", "model", "probe", "metric", "model_a", "model_b", "relation", "test",
                "headline_metric", "interval", "chosen_layers"}
INTEGER_COLUMNS = {"layer", "fold", "seed", "epochs", "n_train", "n_valid", "n_test", "n_rounds",
                   "n_seeds", "modal_layer", "modal_rounds", "rounds_chosen", "n"}


def read_table(path: str | Path) -> pd.DataFrame:
    """A result table written by this package, with explicit dtypes: text as text (a name such
    as "NA" stays one), whole-number columns as int64 where no value is missing, booleans as
    bool, the rest float64."""
    columns = pd.read_csv(path, nrows=0).columns
    dtype = {c: str if c in TEXT_COLUMNS else bool if c == "chosen" else "float64"
             for c in columns}
    table = pd.read_csv(path, dtype=dtype, keep_default_na=False,
                        na_values={c: ["", "nan", "NaN"] for c in columns
                                   if c not in TEXT_COLUMNS})
    for column in INTEGER_COLUMNS & set(columns):
        if table[column].notna().all():
            table[column] = table[column].astype("int64")
    return table


def read_inputs(runs: list[str], predictions: list[str], manifests: list[str]
                ) -> tuple[pd.DataFrame, dict, dict]:
    """The runs (concatenated), the test predictions by (dataset, model, probe), and from the
    manifests (``results/manifests/{dataset}.csv``) each dataset's headline metric and clip
    groups, as keyword arguments of :func:`summarize`."""
    table = pd.concat([read_table(p) for p in runs], ignore_index=True)
    by_case = {(Path(p).parts[-3], Path(p).parts[-2], Path(p).stem): read_predictions(p)
               for p in predictions}
    frames = {Path(p).stem: pd.read_csv(p, dtype={"clip_id": str, "label": str, "split": str,
                                                  "group": str}, keep_default_na=False,
                                        na_values={"fold": [""]})
              for p in manifests}
    return table, by_case, {"headline": {d: headline_metric(m) for d, m in frames.items()},
                            "groups": {d: clip_groups(m) for d, m in frames.items()}}
