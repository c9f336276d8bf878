"""Label efficiency: the probe's test score against the fraction of training clips."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

LINESTYLES = ["-", "--", ":", "-."]


def figure(table: pd.DataFrame, dataset: str, colours: dict[str, tuple]) -> plt.Figure:
    """The headline metric (mean over rounds, 95% interval as a band) against the fraction of
    each round's training clips (log axis), one line per model and probe."""
    mine = table[table["dataset"] == dataset]
    probes = list(dict.fromkeys(mine["probe"]))
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for (model, probe), rows in mine.groupby(["model", "probe"], sort=False):
        rows = rows.sort_values("fraction")
        colour = colours.get(model, "#6c757d")
        style = LINESTYLES[probes.index(probe) % len(LINESTYLES)]
        label = model if len(probes) == 1 else f"{model} ({probe})"
        ax.plot(rows["fraction"], rows["mean"], style, marker="o", ms=3, color=colour,
                label=label)
        if rows[["ci_low", "ci_high"]].notna().all().all():
            ax.fill_between(rows["fraction"], rows["ci_low"], rows["ci_high"], color=colour,
                            alpha=0.15, lw=0)
    fractions = np.sort(mine["fraction"].unique())
    ax.set_xscale("log")
    ax.set_xticks(fractions, [f"{100 * f:g}%" for f in fractions])
    ax.minorticks_off()
    ax.set(xlabel="fraction of each round's training clips",
           ylabel=str(mine["metric"].iloc[0]).replace("_", " "))
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    fig.tight_layout()
    return fig


def table(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as the report shows it: mean [interval] per fraction asked for, one row per
    dataset, model and probe, each cell with the mean number of training clips it had (whole
    groups and every class make it more than the fraction on small data)."""
    cells = frame.assign(cell=[
        f"{m:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) and np.isfinite(hi) else "")
        + f", {n:g} clips"
        for m, lo, hi, n in zip(frame["mean"], frame["ci_low"], frame["ci_high"],
                                frame["n_train_mean"])])
    wide = cells.pivot_table(index=["dataset", "model", "probe", "metric"], columns="fraction",
                             values="cell", aggfunc="first")
    wide.columns = [f"{100 * f:g}% asked" for f in wide.columns]
    return wide.reset_index()
