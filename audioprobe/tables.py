"""Result tables: the headline summary, the per-layer curves and the paired comparisons.

Every score is first averaged over the seeds of its evaluation round (seeds share their test
clips, so they are not independent samples); the round is the unit of replication. The headline
score of a dataset x model x probe is the mean over rounds of each round's test score at the
layer that round chose on its own validation data (``chosen`` in the runs).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from audioprobe import manifest, statistics
from audioprobe.errors import AudioprobeError
from audioprobe.features.families import is_baseline
from audioprobe.probes.metrics import NORMAL, linearized

SCORES = ["accuracy", "macro_f1", "balanced_accuracy", "top5_accuracy", "sensitivity",
          "specificity", "icbhi_score"]
CASE = ["dataset", "model", "probe"]
IMBALANCE = 1.5  # largest / smallest test class above this: the headline is balanced accuracy
T_TEST = "paired t over rounds, Nadeau-Bengio corrected"
FLIP_TEST = "paired sign-flip test over test groups, bootstrap-t interval"
RELATIONS = ("vs random-weights control", "vs log-mel baseline", "between models")
KFOLD_INTERVAL = "95% CI over training and test sampling"
SPLIT_INTERVAL = "95% CI over test sampling, probe held fixed"


def headline_metric(manifest: pd.DataFrame) -> str:
    """"icbhi_score" when a class is "normal" (the ICBHI task, whose papers report (Se + Sp) /
    2); else "balanced_accuracy" when the test clips (every clip of a k-fold dataset, the test
    split otherwise) are imbalanced: the largest class holds more than 1.5 times the clips of
    the smallest; "accuracy" otherwise."""
    if (manifest["label"].astype(str) == NORMAL).any():
        return "icbhi_score"
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
    metrics = [m for m in [*SCORES, "val_accuracy", "val_score"] if m in runs]
    chosen = runs[runs["chosen"].astype(bool)]
    return chosen.groupby([*CASE, "fold", "layer"], as_index=False)[
        [*metrics, "n_train", "n_test"]].mean()


def summarize(runs: pd.DataFrame, headline: dict[str, str] | None = None,
              predictions: dict[tuple[str, str, str], pd.DataFrame] | None = None,
              groups: dict[str, pd.Series] | None = None) -> pd.DataFrame:
    """The headline table: one row per dataset x model x probe (columns in the README).

    Several rounds: mean and sd over rounds and the Nadeau-Bengio corrected t interval (it
    includes training-set variation). One round (a single split): the bootstrap-t interval over
    test groups, resampled within classes, from ``predictions`` and the clips' ``groups`` of
    each dataset (NaN without them); it holds the trained probe fixed."""
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
            row["interval"] = (f"{KFOLD_INTERVAL}, Nadeau-Bengio corrected t (n_test/n_train "
                               f"= {ratio:.3g}), n={n} rounds")
            intervals = {m: statistics.corrected_t(part[m].to_numpy(), ratio, bounds=(0, 1))
                         for m in metrics}
        elif predictions and groups and case in predictions:
            row["interval"] = (f"{SPLIT_INTERVAL}, bootstrap-t over test groups within "
                               f"classes ({statistics.RESAMPLES} resamples), n=1 split")
            intervals = _bootstrap_intervals(predictions[case], groups[case[0]], metrics)
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
        if "val_score" in part:
            row["selection_metric"] = runs.loc[_rows(runs, case), "selection_metric"].iloc[0]
            row["val_score_mean"] = part["val_score"].mean()
        rows.append(row)
    return pd.DataFrame(rows)


LABEL_EFFICIENCY_COLUMNS = [*CASE, "fraction", "n_train_mean", "n_rounds", "metric", "mean",
                            "sd", "ci_low", "ci_high", "modal_layer", "interval"]


def label_efficiency(runs: pd.DataFrame, headline: dict[str, str] | None = None,
                     predictions: dict[tuple[str, str, str, float], pd.DataFrame] | None = None,
                     groups: dict[str, pd.Series] | None = None) -> pd.DataFrame:
    """One row per dataset x model x probe x training fraction (``runs``' ``fraction``): the
    headline metric's mean over rounds at each round's chosen layer, with the interval of
    :func:`summarize` (over rounds; over test groups on a single split, from ``predictions``
    keyed by case and fraction) and the mean number of training clips."""
    rows = []
    for fraction, part in runs.groupby("fraction", sort=True):
        part = part.drop(columns="fraction")
        mine = {case[:3]: p for case, p in (predictions or {}).items() if case[3] == fraction}
        summary = summarize(part, headline, mine, groups)
        n_train = round_scores(part).groupby(CASE)["n_train"].mean()
        for _, row in summary.iterrows():
            metric = row["headline_metric"]
            rows.append({**{k: row[k] for k in CASE}, "fraction": float(fraction),
                         "n_train_mean": n_train.loc[tuple(row[k] for k in CASE)],
                         "n_rounds": row["n_rounds"], "metric": metric,
                         "mean": row[f"{metric}_mean"], "sd": row[f"{metric}_sd"],
                         "ci_low": row[f"{metric}_ci_low"], "ci_high": row[f"{metric}_ci_high"],
                         "modal_layer": row["modal_layer"], "interval": row["interval"]})
    return pd.DataFrame(rows, columns=LABEL_EFFICIENCY_COLUMNS).sort_values(
        [*CASE, "fraction"], ignore_index=True)


def _rows(frame: pd.DataFrame, case: tuple) -> pd.Series:
    return (frame[CASE] == pd.Series(case, index=CASE)).all(axis=1)


def layer_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Descriptive per-layer test scores (not a selection): one row per dataset x model x
    probe x layer, mean and sd over rounds after averaging seeds within a round, the 95%
    Nadeau-Bengio corrected t interval over rounds (as the summary's; validation accuracy and
    the validation score selected on with n_valid/n_train; NaN with one round), and how many
    rounds chose the layer."""
    metrics = [m for m in [*SCORES, "val_accuracy", "val_score"] if m in runs]
    per_round = runs.groupby([*CASE, "layer", "fold"])[metrics].mean()
    per_round["chosen"] = runs.groupby([*CASE, "layer", "fold"])["chosen"].first().astype(bool)
    grouped = per_round.groupby([*CASE, "layer"])
    out = grouped[metrics].agg(["mean", "std"])
    out.columns = [f"{m}_{'sd' if s == 'std' else s}" for m, s in out.columns]
    out["rounds_chosen"] = grouped["chosen"].sum().astype(int)
    out["n_rounds"] = grouped.size()
    sizes = runs.groupby([*CASE, "layer"])[["n_train", "n_valid", "n_test"]].mean()
    for m in metrics:
        held_out = sizes["n_valid" if m.startswith("val_") else "n_test"]
        out[f"{m}_ci_low"], out[f"{m}_ci_high"] = statistics.corrected_t_limits(
            out[f"{m}_mean"], out[f"{m}_sd"], out["n_rounds"], held_out / sizes["n_train"],
            bounds=(0, 1))
    return out.reset_index()


@dataclass(frozen=True)
class GroupCounts:
    """Per seed and test group, the per-class counts the metrics are made of: ``true``,
    ``predicted``, ``hits`` (S, G, C) and ``top5`` (S, G), None with 5 classes or fewer."""

    true: np.ndarray
    predicted: np.ndarray
    hits: np.ndarray
    top5: np.ndarray | None
    classes: list[str]

    def parts(self, seed: int) -> tuple:
        """One seed's (true, predicted, hits, top5) per group."""
        return (self.true[seed], self.predicted[seed], self.hits[seed],
                None if self.top5 is None else self.top5[seed])

    def strata(self) -> np.ndarray:
        """Each group's class for resampling: the rarest (over the test clips) it holds."""
        true = self.true[0]
        total = true.sum(0)
        rank = np.where(true > 0, total[None, :], np.inf)
        return rank.argmin(1)

    def scores(self, weights: np.ndarray, other: GroupCounts | None = None,
               influence: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """metric -> (values (R,), influences (R, G) or None), averaged over seeds, of each
        resample ``weights`` (R, G); with ``other``: the groups where weights is 1 take the
        other model's predictions (a sign flip), the others keep these."""
        per_seed = []
        for seed in range(len(self.true)):
            mine = self.parts(seed)
            if other is None:
                totals = [None if c is None else weights @ c for c in mine]
            else:
                totals = [None if c is None else (1 - weights) @ c + weights @ o
                          for c, o in zip(mine, other.parts(seed))]
            per_seed.append(linearized(*totals, self.classes, mine if influence else None))
        return {m: (np.mean([s[m][0] for s in per_seed], axis=0),
                    np.mean([s[m][1] for s in per_seed], axis=0) if influence else None)
                for m in per_seed[0]}


def group_counts(predictions: pd.DataFrame, group_codes: np.ndarray, n_groups: int
                 ) -> GroupCounts:
    """The counts of test ``predictions`` by seed and group (``group_codes``: the group
    number of each row)."""
    classes = [c.removeprefix("p_") for c in predictions.columns if c.startswith("p_")]
    n_classes = len(classes)
    counts = {"true": [], "predicted": [], "hits": [], "top5": []}
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
        counts["true"].append(true)
        counts["predicted"].append(predicted)
        counts["hits"].append(hits)
        if n_classes > 5:  # as scikit-learn's top_k_accuracy_score ranks them
            ranked = np.argsort(proba, axis=1, kind="mergesort")[:, ::-1][:, :5]
            in_top5 = (ranked == y[:, None]).any(1)
            counts["top5"].append(np.bincount(g, weights=in_top5, minlength=n_groups))
    return GroupCounts(*(np.stack(counts[k]) for k in ("true", "predicted", "hits")),
                       np.stack(counts["top5"]) if counts["top5"] else None, classes)


def _group_of(predictions: pd.DataFrame, groups: pd.Series) -> np.ndarray:
    """The group of every prediction row; a clip missing from the manifest stops with its id."""
    names = groups.reindex(predictions["clip_id"].astype(str))
    if names.isna().any():
        raise ValueError(f"test clip {names[names.isna()].index[0]!r} of the predictions is not "
                         "in the dataset's manifest")
    return names.to_numpy()


def interval_estimates(counts: GroupCounts, metrics: list[str], other: GroupCounts | None = None,
                       n_resamples: int = statistics.RESAMPLES
                       ) -> dict[str, statistics.Estimate]:
    """Bootstrap-t intervals over groups resampled within their class: of each metric, or with
    ``other`` of the difference (these counts minus other's, on the same clips) with the
    sign-flip p-value."""
    n_groups = counts.true.shape[1]
    strata = counts.strata()
    observed = np.ones((1, n_groups))
    resamples = statistics.strata_resamples(strata, n_resamples)
    point, boot = counts.scores(observed, influence=True), counts.scores(resamples, influence=True)
    if other is not None:
        minus = lambda x, y: {m: (x[m][0] - y[m][0], x[m][1] - y[m][1]) for m in x}  # noqa: E731
        point = minus(point, other.scores(observed, influence=True))
        boot = minus(boot, other.scores(resamples, influence=True))
        flips = statistics.sign_flips(n_groups, n_resamples)
        flipped = {m: v - w for (m, (v, _)), (w, _) in
                   zip(counts.scores(flips, other).items(), other.scores(flips, counts).values())}
    result = {}
    for m in metrics:
        if m not in point:
            continue
        se = statistics.standard_error(point[m][1], observed, strata)[0]
        sample_se = statistics.standard_error(boot[m][1], resamples, strata)
        estimate = statistics.bootstrap_t(float(point[m][0][0]), se, boot[m][0], sample_se,
                                          bounds=(0, 1) if other is None else (-1, 1))
        if other is not None:
            estimate = dataclasses.replace(
                estimate, p_value=statistics.sign_flip_p(estimate.mean, flipped[m]))
        result[m] = estimate
    return result


def _bootstrap_intervals(predictions: pd.DataFrame, groups: pd.Series, metrics: list[str]
                         ) -> dict[str, statistics.Estimate]:
    predictions = predictions.reset_index(drop=True)
    codes, uniques = pd.factorize(_group_of(predictions, groups))
    return interval_estimates(group_counts(predictions, codes, len(uniques)), metrics)


def comparison_pairs(summary: pd.DataFrame, models: dict[str, dict]) -> list[tuple]:
    """(model_a, model_b, relation) of one dataset and probe's summary rows: every pair of
    models once, none chosen on a score. A model against its random-weights control (the same
    spec with ``random_weights: true``: same family, checkpoint, bundle or capacity, pooling)
    or against the log-mel baseline (any model of family logmel) is labelled so, that model
    first."""
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
    pairs += [(a, b, RELATIONS[2]) for i, a in enumerate(present) for b in present[i + 1:]]
    seen, unique = set(), []
    for a, b, relation in pairs:
        if frozenset((a, b)) not in seen:
            seen.add(frozenset((a, b)))
            unique.append((a, b, relation))
    return unique


def compare(runs: pd.DataFrame, summary: pd.DataFrame, models: dict[str, dict],
            predictions: dict[tuple[str, str, str], pd.DataFrame] | None = None,
            groups: dict[str, pd.Series] | None = None) -> pd.DataFrame:
    """Paired comparisons of every pair of models on each dataset's headline metric (columns in
    the README), with Holm's correction across all the comparisons of one dataset, so no
    choice of a "best" model, on any score, can raise the family-wise error.

    Both models are scored on the test clips both kept. Several rounds: the per-round
    differences (seeds averaged) get the Nadeau-Bengio corrected t test. One round: the
    sign-flip test over test groups and the bootstrap-t interval of the difference."""
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
                if predictions:
                    a_, b_ = _common_clip_scores(predictions[dataset, a, probe],
                                                 predictions[dataset, b, probe], folds, metric)
                else:
                    a_, b_ = a_[metric], b_[metric]
                estimate = statistics.corrected_t((a_ - b_).to_numpy(), ratio, bounds=(-1, 1))
                means, test, n = (a_.mean(), b_.mean()), T_TEST, len(folds)
            elif predictions and groups:
                means, estimate, n = _paired_single_split(predictions[dataset, a, probe],
                                                          predictions[dataset, b, probe],
                                                          groups[dataset], metric)
                test = FLIP_TEST
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


def unbeaten(comparisons: pd.DataFrame, dataset: str, probe: str, alpha: float = 0.05
             ) -> set[str]:
    """The models of one dataset and probe that no other model beats (Holm-adjusted p below
    ``alpha`` over every comparison of the dataset, the interval above 0): the bold cells of
    the matrix. Empty when the comparisons hold none for them."""
    if comparisons.empty:
        return set()
    rows = comparisons[(comparisons["dataset"] == dataset) & (comparisons["probe"] == probe)]
    significant = rows["p_holm"] < alpha
    beaten = set(rows.loc[significant & (rows["ci_low"] > 0), "model_b"])
    beaten |= set(rows.loc[significant & (rows["ci_high"] < 0), "model_a"])
    return (set(rows["model_a"]) | set(rows["model_b"])) - beaten


def _common(pred_a: pd.DataFrame, pred_b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both predictions tables cut to the clips both kept."""
    common = set(pred_a["clip_id"].astype(str)) & set(pred_b["clip_id"].astype(str))
    return tuple(p[p["clip_id"].astype(str).isin(common)].reset_index(drop=True)
                 for p in (pred_a, pred_b))


def _common_clip_scores(pred_a: pd.DataFrame, pred_b: pd.DataFrame, folds: pd.Index,
                        metric: str) -> tuple[pd.Series, pd.Series]:
    """Each round's ``metric`` of a and of b (seeds averaged) on the test clips both kept."""
    scores = ([], [])
    for fold in folds:
        cut = _common(pred_a[pred_a["fold"] == fold], pred_b[pred_b["fold"] == fold])
        for out, pred in zip(scores, cut):
            counts = group_counts(pred, np.zeros(len(pred), dtype=int), 1)
            out.append(float(counts.scores(np.ones((1, 1)))[metric][0][0]))
    return pd.Series(scores[0], index=folds), pd.Series(scores[1], index=folds)


def _paired_single_split(pred_a: pd.DataFrame, pred_b: pd.DataFrame, groups: pd.Series,
                         metric: str) -> tuple[tuple[float, float], statistics.Estimate, int]:
    """Means of a and b on the test clips both kept, the bootstrap-t interval of their
    difference (the same resamples of groups for both) and its sign-flip p-value; n: the
    number of groups."""
    pred_a, pred_b = _common(pred_a, pred_b)
    names = pd.unique(_group_of(pred_a, groups))
    index = pd.Series(np.arange(len(names)), index=names)
    counts = [group_counts(p, index.loc[_group_of(p, groups)].to_numpy(), len(names))
              for p in (pred_a, pred_b)]
    observed = np.ones((1, len(names)))
    means = tuple(float(c.scores(observed)[metric][0][0]) for c in counts)
    estimate = interval_estimates(counts[0], [metric], counts[1])[metric]
    return means, estimate, len(names)


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A predictions table, ids and labels kept as text (a label such as "NA" or "None" is a
    class, not a missing value)."""
    return pd.read_csv(path, dtype={"clip_id": str, "label": str, "prediction": str},
                       keep_default_na=False, na_values={"loss": ["", "nan", "NaN"]})


# Columns of the result tables (runs, summary, layers, comparisons) that are text or whole
# numbers; every other column of numbers is read as a float, whatever its values look like (an
# interval bound of 0 in every row is still a float).
TEXT_COLUMNS = {"dataset", "model", "probe", "metric", "model_a", "model_b", "relation", "test",
                "headline_metric", "selection_metric", "interval", "chosen_layers"}
INTEGER_COLUMNS = {"layer", "fold", "seed", "epochs", "n_train", "n_valid", "n_test", "n_rounds",
                   "n_seeds", "modal_layer", "modal_rounds", "rounds_chosen", "n"}
MISSING = ("", "nan", "NaN")


def read_table(path: str | Path) -> pd.DataFrame:
    """A result table written by this package, with explicit dtypes: text as text (a name such
    as "NA" stays one), ``chosen`` as bool, columns of numbers as float64 (whole-number columns
    as int64 where no value is missing); a column holding other text stays text."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in table.columns.difference(sorted(TEXT_COLUMNS)):
        cells = table[column]
        if column == "chosen":
            table[column] = cells == "True"
            continue
        missing = cells.isin(MISSING)
        values = pd.to_numeric(cells.mask(missing), errors="coerce").astype("float64")
        if values.notna().sum() != (~missing).sum():
            continue  # text, such as a layer named "all"
        table[column] = values
        if column in INTEGER_COLUMNS and values.notna().all():
            table[column] = values.astype("int64")
    return table


def selection_metric(selection: str, manifest: pd.DataFrame) -> str:
    """The validation score probes are selected on: the dataset's headline metric
    (``selection: headline``, the default) or the metric named; the ICBHI score needs a class
    named "normal"."""
    if selection == "icbhi_score" and not (manifest["label"].astype(str) == NORMAL).any():
        raise AudioprobeError('selection: icbhi_score needs a class named "normal", and this '
                              "dataset has none")
    return headline_metric(manifest) if selection == "headline" else selection


def read_inputs(runs: list[str], predictions: list[dict], manifests: list[dict]
                ) -> tuple[pd.DataFrame, dict, dict]:
    """The runs (concatenated), the test predictions by (dataset, model, probe), and from the
    manifests each dataset's headline metric and clip groups, as keyword arguments of
    :func:`summarize`. ``predictions`` and ``manifests`` are records of their keys and
    ``path`` (``keyed`` in ``rules/common.smk``); no key is read from a path."""
    table = pd.concat([read_table(p) for p in runs], ignore_index=True)
    by_case = {(r["dataset"], r["model"], r["probe"]): read_predictions(r["path"])
               for r in predictions}
    frames = {r["dataset"]: manifest.read(r["path"]) for r in manifests}
    return table, by_case, {"headline": {d: headline_metric(m) for d, m in frames.items()},
                            "groups": {d: clip_groups(m) for d, m in frames.items()}}
