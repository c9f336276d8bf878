"""Cost: wall time and memory per rule from the benchmark files, extraction throughput per
model, and the run's elapsed time beside the summed job time."""

from __future__ import annotations

import pandas as pd

from audioprobe.results import Run


def cost_table(run: Run) -> pd.DataFrame:
    """One row per rule, and per model for extraction: jobs, total and longest wall time,
    peak memory; for extraction, clips and seconds of audio per second of that model's job
    time."""
    jobs = run.jobs.assign(model=[w.get("model", "") if run_rule == "extract_shard" else ""
                                  for w, run_rule in zip(run.jobs["wildcards"],
                                                         run.jobs["rule"])])
    table = jobs.groupby(["rule", "model"], sort=False).agg(
        jobs=("job", "size"), total=("wall time (s)", "sum"),
        longest=("wall time (s)", "max"), memory=("max RSS (MB)", "max")).reset_index()
    table = table.rename(columns={"total": "total wall time (s)",
                                  "longest": "longest job (s)", "memory": "peak RSS (MB)"})
    for index, row in table[table["rule"] == "extract_shard"].iterrows():
        metas = [run.store(d, m).meta for d, m in run.stores if m == row["model"]]
        seconds = row["total wall time (s)"]
        if metas and seconds > 0:
            table.loc[index, "clips / s"] = sum(len(m) for m in metas) / seconds
            table.loc[index, "audio s / s"] = sum(m["duration"].sum() for m in metas) / seconds
    rules = {r: i for i, r in enumerate(dict.fromkeys(run.jobs["rule"]))}
    models = {m: i for i, m in enumerate(run.models)}
    order = table["rule"].map(rules) * (len(models) + 1) + table["model"].map(models).fillna(-1)
    table = table.assign(order=order).sort_values("order", kind="stable").drop(columns="order")
    return table.assign(model=table["model"].replace("", "–")).reset_index(drop=True)


PAUSE = 300.0  # seconds with no job running that part one run of Snakemake from the next


def times(run: Run) -> dict[str, float]:
    """The run's ``elapsed`` time and the ``summed`` wall time of its jobs (the report
    excluded), from the benchmark files' times. Jobs that follow each other with no pause of
    more than :data:`PAUSE` form a sitting; ``elapsed`` sums each sitting's first start to last
    end, leaving out the time between ``sittings`` (a run resumed or redone in part)."""
    jobs = run.jobs
    if jobs.empty:
        return {"elapsed": 0.0, "summed": 0.0, "sittings": 0}
    spans = sorted(zip(jobs["finished"] - jobs["wall time (s)"], jobs["finished"]))
    elapsed, sittings = 0.0, 1
    start, end = spans[0]
    for begins, ends in spans[1:]:
        if begins > end + PAUSE:
            elapsed, sittings, start = elapsed + end - start, sittings + 1, begins
        end = max(end, ends)
    return {"elapsed": float(elapsed + end - start), "sittings": sittings,
            "summed": float(jobs["wall time (s)"].sum())}
