"""The models x datasets matrix: headline scores, their intervals, the models no other beats."""

from __future__ import annotations

import pandas as pd

from audioprobe.report.formatting import metric_name
from audioprobe.results import Run
from audioprobe.tables import unbeaten


def headline(row: pd.Series) -> dict:
    """The headline metric of a summary row: name, mean, interval and how it was computed."""
    metric = row["headline_metric"]
    return {"metric": metric, "name": metric_name(metric),
            "mean": float(row[f"{metric}_mean"]), "low": float(row[f"{metric}_ci_low"]),
            "high": float(row[f"{metric}_ci_high"]), "interval": row["interval"]}


def with_headline(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with the headline mean and interval in columns of their own."""
    numbers = pd.DataFrame([headline(r) for _, r in summary.iterrows()], index=summary.index,
                           columns=["mean", "low", "high"])
    return summary.assign(score=numbers["mean"], score_low=numbers["low"],
                          score_high=numbers["high"])


def matrix(run: Run) -> pd.DataFrame:
    """One row per model and probe, one column per dataset: the headline score, its interval,
    its metric, whether no other model beats it (:func:`audioprobe.tables.unbeaten`), and the
    mean rank across
    datasets; rows by mean rank."""
    rows = with_headline(run.summary)
    rows = rows.assign(rank=rows.groupby("dataset")["score"].rank(ascending=False,
                                                                   method="min"))
    cases = rows[["dataset", "probe"]].drop_duplicates().itertuples(index=False)
    tops = {(d, p): unbeaten(run.comparisons, d, p) for d, p in cases}
    records = []
    for (model, probe), part in rows.groupby(["model", "probe"], sort=False):
        record = {"model": model, "probe": probe, "role": run.role(model)}
        for dataset in run.datasets:
            hit = part[part["dataset"] == dataset]
            if hit.empty:
                record[dataset] = None
                continue
            row = hit.iloc[0]
            record[dataset] = {"score": row["score"], "low": row["score_low"],
                               "high": row["score_high"], "metric": row["headline_metric"],
                               "best": model in tops[dataset, probe]}
        record["mean rank"] = part["rank"].mean()
        records.append(record)
    table = pd.DataFrame(records)
    order = table["model"].map({m: i for i, m in enumerate(run.models)})
    return (table.assign(order=order).sort_values(["mean rank", "order"], kind="stable")
            .drop(columns="order").reset_index(drop=True))
