"""Key findings: per dataset the configuration best on validation, its test score, where its
layer sits and its paired comparisons; and the caveats of the run."""

from __future__ import annotations

import pandas as pd

from audioprobe.report import layers, references
from audioprobe.report.formatting import metric_name, percent, percent_interval, sig
from audioprobe.report.matrix import headline, with_headline
from audioprobe.results import Run
from audioprobe.tables import unbeaten


def best_row(run: Run, dataset: str) -> pd.Series:
    """The configuration the report shows in detail: the model and probe with the best
    validation score (the selection metric on validation, mean over rounds), never a test
    score. No test depends on it: the comparisons cover every pair of models."""
    rows = with_headline(run.summary[run.summary["dataset"] == dataset])
    return rows.loc[rows["val_score_mean"].idxmax()]


def comparisons_of(run: Run, dataset: str, probe: str, model: str) -> pd.DataFrame:
    """The paired comparisons that involve ``model`` on one dataset and probe, turned so that
    ``model`` is model_a (each pair is compared once, in either order)."""
    table = run.comparisons
    if table.empty:
        return table
    rows = table[(table["dataset"] == dataset) & (table["probe"] == probe)
                 & ((table["model_a"] == model) | (table["model_b"] == model))].copy()
    turn = rows["model_b"] == model
    for a, b in (("model_a", "model_b"), ("mean_a", "mean_b")):
        rows.loc[turn, [a, b]] = rows.loc[turn, [b, a]].to_numpy()
    rows.loc[turn, "difference"] = -rows.loc[turn, "difference"]
    rows.loc[turn, ["ci_low", "ci_high"]] = -rows.loc[turn, ["ci_high", "ci_low"]].to_numpy()
    return rows.reset_index(drop=True)


def comparison_table(run: Run, dataset: str) -> pd.DataFrame:
    """Every paired comparison of one dataset as the report lists it: percentages, the
    difference in points with its interval, Holm's p and the test."""
    rows = run.comparisons
    rows = rows[rows["dataset"] == dataset] if len(rows) else rows
    if rows.empty:
        return pd.DataFrame()
    return pd.DataFrame({
        "probe": rows["probe"], "comparison": rows["relation"],
        "model a": rows["model_a"], "model b": rows["model_b"],
        "a (%)": rows["mean_a"].map(percent), "b (%)": rows["mean_b"].map(percent),
        "a − b (points)": (100 * rows["difference"]).map(lambda v: f"{v:+.1f}"),
        "95% CI (points)": [percent_interval(lo, hi) for lo, hi in
                            zip(rows["ci_low"], rows["ci_high"])],
        "p (Holm)": rows["p_holm"].map(lambda v: sig(v, 2)),
        "test": rows["test"] + ", n=" + rows["n"].astype(str),
    })


def verdict(comparison: pd.Series, alpha: float = 0.05) -> str:
    """A paired comparison in words: the difference in points with its interval and Holm p; the
    verdict follows the Holm-adjusted p, and says so where the (unadjusted) interval alone
    would have called it."""
    difference = 100 * comparison["difference"]
    detail = (f"{difference:+.1f} points, 95% CI [{100 * comparison['ci_low']:.1f}, "
              f"{100 * comparison['ci_high']:.1f}], "
              f"Holm-adjusted p = {sig(comparison['p_holm'], 2)}")
    low, high = comparison["ci_low"], comparison["ci_high"]
    if comparison["p_holm"] < alpha and low > 0:
        word = "beats"
    elif comparison["p_holm"] < alpha and high < 0:
        word = "is beaten by"
    elif low > 0 or high < 0:
        word = "is not distinguishable, after Holm's adjustment for the dataset's comparisons, from"
        detail += "; the interval is not adjusted"
    else:
        word = "is not distinguishable from"
    return f"{word} {comparison['model_b']} ({detail})"


def layer_summary(run: Run, row: pd.Series) -> str:
    """Where a summary row's chosen layers sit: the layer (and its name), relative depth and
    how the rounds chose, or that no layer is clearly best."""
    if run.probe_kind(row["probe"]) == "weighted":
        return "all layers, weighted"
    made = layers.choice(run, row)
    if made is None:
        return "its only layer"
    names = run.layer_names(row["model"])
    text = (f"layer {made.modal} ({names[made.modal]}) of 0–{made.n_layers - 1} (relative "
            f"depth {made.depth:.2f}; {made.rounds_text()})")
    return text + (f", though with {made.flat_text()}" if made.flat else "")


def dataset_finding(run: Run, dataset: str) -> str:
    """One paragraph of Markdown: the dataset's configuration best on validation, its test
    score, how it compares, and which models no other model beats."""
    best = best_row(run, dataset)
    score = headline(best)
    text = (f"**{dataset}**: best on validation ({metric_name(best['selection_metric'])} "
            f"{100 * best['val_score_mean']:.1f}%) is **{best['model']}** with the "
            f"**{best['probe']}** probe at {layer_summary(run, best)}: {score['name']} "
            f"**{100 * score['mean']:.1f}%** (95% CI {100 * score['low']:.1f}–"
            f"{100 * score['high']:.1f}; {score['interval']}).")
    compared = comparisons_of(run, dataset, best["probe"], best["model"])
    if compared.empty:
        return text + (" No paired comparison was run for it (results/tables/comparisons.csv "
                       "holds none).")
    validation = run.summary[(run.summary["dataset"] == dataset)
                             & (run.summary["probe"] == best["probe"])].set_index("model")
    runner_up = compared.assign(
        val=compared["model_b"].map(validation["val_score_mean"])).sort_values(
        "val", ascending=False, kind="stable").iloc[0]
    top = sorted(unbeaten(run.comparisons, dataset, best["probe"]))
    sentences = [f"Against the runner-up on validation, it {verdict(runner_up)}."]
    roles = compared["model_b"].map(run.role)
    for role, label in (("control", "its random-weights control"),
                        ("baseline", "the log-mel baseline")):
        part = compared[(roles == role) & (compared["model_b"] != runner_up["model_b"])]
        if role == "control":
            part = part[part["relation"] == "vs random-weights control"]
        if len(part):
            sentences.append(f"Against {label}, it {verdict(part.iloc[0])}.")
    if top:
        sentences.append(f"No other model beats {', '.join(top)} with the {best['probe']} "
                         "probe (Holm over every pair; not distinguishable is not equal).")
    return " ".join([text, *sentences])


def caveats(run: Run) -> list[str]:
    """Datasets whose numbers are not comparable with the literature, the manifest notes,
    groups a published split puts on both sides, tasks without references and matched
    references of another protocol or of a dataset marked not comparable."""
    lines = []
    for dataset in run.datasets:
        notes = run.notes.get(dataset, {})
        if notes.get("comparable") is False:
            lines.append(f"**{dataset}** is not comparable with published numbers for its task.")
        lines += [f"{dataset}: {note}" for note in notes.get("notes", [])]
        exceptions = notes.get("leakage_exceptions", {})
        if exceptions:
            lines.append(f"{dataset}: {len(exceptions)} group(s) on both sides of the published "
                         "split, kept as the split has them: "
                         + "; ".join(f"{g} ({r})" for g, r in exceptions.items()))
        if references.reference_task(run, dataset) is None:
            lines.append(f"{dataset}: no published reference covers this task definition.")
    matched = references.reference_matches(run)
    if len(matched):
        differing = matched[matched["probe type"] != "same"]
        if len(differing):
            lines.append(f"{len(differing)} of {len(matched)} matched published numbers come "
                         "from a different protocol (see Comparison with published results).")
        apart = matched[matched["comparable"] != "yes"]
        if len(apart):
            lines.append(f"{len(apart)} of {len(matched)} matched published numbers are of a "
                         "dataset marked not comparable: "
                         + ", ".join(sorted(set(apart["dataset"]))) + ".")
    return lines
