"""The training curves of each round's chosen probe, with flags for probes that may have
trained badly: stopped at ``max_epochs`` (still learning) or best after the first epoch."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

FLAGS = ("stopped_at_max_epochs", "best_at_first_epoch")


def as_flags(curves: pd.DataFrame) -> pd.DataFrame:
    """The curves with their flag columns as booleans (a table read back holds them as text)."""
    return curves.assign(**{f: curves[f].astype(str) == "True" for f in FLAGS})


def flag_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, model and probe: rounds, epochs run and chosen (min-max over rounds), and
    how many rounds stopped at ``max_epochs``, were best after the first epoch, or kept the
    last epoch they ran (patience counts from the last gain in validation score: a score tied
    at its best while the loss still falls moves the checkpoint but runs out the patience)."""
    curves = as_flags(curves)
    per_round = curves.groupby(["dataset", "model", "probe", "fold"], sort=False).agg(
        run=("epoch", "max"), chosen=("chosen_epoch", "first"),
        at_max=("stopped_at_max_epochs", "first"), first=("best_at_first_epoch", "first"))
    rows = []
    for (dataset, model, probe), frame in per_round.groupby(level=[0, 1, 2], sort=False):
        rows.append({"dataset": dataset, "model": model, "probe": probe, "rounds": len(frame),
                     "epochs run": _span(frame["run"]), "chosen epoch": _span(frame["chosen"]),
                     "stopped at max_epochs": int(frame["at_max"].sum()),
                     "best at first epoch": int(frame["first"].sum()),
                     "kept the last epoch run": int(((frame["chosen"] == frame["run"])
                                                     & ~frame["at_max"]).sum())})
    return pd.DataFrame(rows)


def _span(values: pd.Series) -> str:
    low, high = int(values.min()), int(values.max())
    return str(low) if low == high else f"{low}–{high}"


def figure(curves: pd.DataFrame, dataset: str, colours: dict[str, tuple]) -> plt.Figure:
    """Small multiples for ``dataset``: one panel per model (rows) and probe (columns), the
    validation loss of every round (solid) and its training loss (dotted), a dot at each
    round's checkpoint; a flagged round is drawn in red."""
    curves = as_flags(curves[curves["dataset"] == dataset])
    models = list(dict.fromkeys(curves["model"]))
    probes = list(dict.fromkeys(curves["probe"]))
    fig, axes = plt.subplots(len(models), len(probes), squeeze=False, sharex=True,
                             figsize=(2.6 * len(probes) + 0.8, 1.7 * len(models) + 0.6))
    for i, model in enumerate(models):
        for j, probe in enumerate(probes):
            ax = axes[i][j]
            mine = curves[(curves["model"] == model) & (curves["probe"] == probe)]
            for _, one in mine.groupby("fold"):
                flagged = bool(one[list(FLAGS)].iloc[0].any())
                colour = "#c0392b" if flagged else colours.get(model, "#6c757d")
                ax.plot(one["epoch"], one["valid_loss"], color=colour, lw=0.9)
                ax.plot(one["epoch"], one["train_loss"], color=colour, lw=0.7, ls=":")
                at = one[one["epoch"] == one["chosen_epoch"]]
                ax.scatter(at["epoch"], at["valid_loss"], color=colour, s=10, zorder=3)
            ax.tick_params(labelsize=7)
            if i == 0:
                ax.set_title(probe, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{model}\nloss", fontsize=8)
            if i == len(models) - 1:
                ax.set_xlabel("epoch", fontsize=8)
    fig.tight_layout()
    return fig
