"""Published references: the numbers of this run's tasks and checkpoints, how their protocols
differ from this run's, and the full table (``report/reference_results.csv``, with the model
names of ``reference_models.csv`` and the protocols of ``reference_protocols.csv``)."""

from __future__ import annotations

import pandas as pd

from audioprobe import datasets
from audioprobe.report.formatting import metric_name, percent
from audioprobe.report.matrix import with_headline
from audioprobe.report.setup import protocol_of
from audioprobe.results import Run


def reference_task(run: Run, dataset: str) -> str | None:
    """The reference task name of a dataset, or None when no reference covers it."""
    spec = run.config["datasets"][dataset]
    return datasets.reference_task(spec["adapter"], spec.get("options"))


def reference_names(run: Run, model: str) -> list[str]:
    """The names published tables give the model's checkpoint (its card's model_id)."""
    names = run.reference_models
    if names.empty:
        return []
    checkpoint = run.cards.get(model, {}).get("model_id")
    return list(names.loc[names["model_id"] == checkpoint, "reference_model"])


def published(reference: pd.Series) -> str:
    """A reference number as published: value, and ± std when given."""
    return reference["value"] + (f" ± {reference['std']}" if reference["std"] else "")


def reference_matches(run: Run) -> pd.DataFrame:
    """Published numbers for the same task and checkpoint as one of this run's rows (controls
    excluded), next to this run's number, with whether the probe type agrees and whether the
    dataset is comparable (its adapter's notes)."""
    rows = []
    for _, row in with_headline(run.summary).iterrows():
        task = reference_task(run, row["dataset"])
        names = reference_names(run, row["model"])
        if task is None or not names or run.role(row["model"]) == "control":
            continue
        refs = run.references[(run.references["task"] == task)
                              & run.references["model"].isin(names)]
        comparable = run.notes.get(row["dataset"], {}).get("comparable") is not False
        for _, ref in refs.iterrows():
            protocol = run.protocols.loc[ref["protocol"]]
            metric = ref["metric"]
            rows.append({
                "dataset": row["dataset"], "model": row["model"], "probe": row["probe"],
                "reference model": ref["model"], "protocol": protocol["summary"],
                "metric": metric_name(metric),
                "this run (%)": percent(row.get(f"{metric}_mean", float("nan"))),
                "published (%)": published(ref),
                "probe type": ("same" if protocol["kind"] == run.probe_kind(row["probe"])
                               else "differs"),
                "comparable": "yes" if comparable else "no: the dataset's notes say not",
                "key": ref["protocol"],
            })
    return pd.DataFrame(rows)


def protocol_differences(run: Run, matches: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset and matched reference protocol: how that protocol differs from this
    run's in probe and layer, split and test set, and class balance."""
    rows = []
    for (dataset, key), part in matches.groupby(["dataset", "key"], sort=False):
        protocol = run.protocols.loc[key]
        balance = ("balanced accuracy (classes weighted equally)"
                   if run.headline_metric(dataset) == "balanced_accuracy"
                   else "accuracy over all test clips")
        kinds = ", ".join(dict.fromkeys(run.probe_kind(p) for p in part["probe"]))
        split = protocol_of(run.manifest(dataset)) if dataset in run.manifests else "–"
        rows.append({
            "dataset": dataset, "protocol": protocol["summary"],
            "probe and layer": (f"ours: {kinds} probes on one layer chosen on validation in "
                                "each round (weighted: all layers, weights learned). Theirs: "
                                f"{protocol['probe']}; {protocol['layer']}"),
            "split and test set": f"ours: {split}. Theirs: {protocol['split']}",
            "class balance": f"ours: headline {balance}. Theirs: {protocol['balance']}",
        })
    return pd.DataFrame(rows)


def reference_appendix(run: Run) -> pd.DataFrame:
    """Every published reference number with its source, year and link."""
    references = run.references
    return pd.DataFrame({
        "task": references["task"], "model": references["model"],
        "metric": references["metric"].map(metric_name),
        "published (%)": references.apply(published, axis=1),
        "protocol": references["protocol"].map(run.protocols["summary"]),
        "source": references["source"], "year": references["year"],
        "link": references["link"], "note": references["note"],
    })
