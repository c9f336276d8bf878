"""Where the information sits: each round's chosen layer, whether a layer curve has a clear
peak, the per-layer curves of a dataset and the layers-across-tasks grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from audioprobe.probes import ALL_LAYERS
from audioprobe.report.formatting import metric_name, relative_depth, span
from audioprobe.results import Run


def chosen_layers(row: pd.Series) -> list[int]:
    """Each round's chosen layer, in round order."""
    return [int(v) for v in str(row["chosen_layers"]).split(";") if v.strip()]


@dataclass(frozen=True)
class Choice:
    """The layers one dataset x model x probe chose: per round, the modal one (ties broken
    towards the lowest, as ``tables.summarize`` does) and the layers tied with it; ``flat``:
    every layer's validation score lies inside the best layer's 95% interval (the curve's
    range is at most its half-width: over rounds, the Nadeau-Bengio interval; on one split, the
    binomial interval of its validation score), so no layer is clearly best."""

    layers: list[int]
    modal: int
    modal_rounds: int
    tied: list[int]
    n_layers: int
    flat: bool
    range_points: float
    tolerance_points: float

    @property
    def depth(self) -> float:
        return relative_depth(self.modal, self.n_layers)

    def rounds_text(self) -> str:
        """How the rounds chose: "layer 7 in 3 of 5 rounds (rounds chose 6–8)" or the tie."""
        n = len(self.layers)
        if len(self.tied) > 1:
            text = (f"layers {', '.join(map(str, self.tied))} tie, each chosen in "
                    f"{self.modal_rounds} of {n} rounds (the lowest, {self.modal}, is named)")
        else:
            text = f"layer {self.modal} chosen in {self.modal_rounds} of {n} rounds"
        return text + (f"; rounds chose {span(self.layers)}" if len(set(self.layers)) > 1
                       else "")

    def flat_text(self) -> str:
        return (f"no clear best layer: the validation scores of all layers lie within "
                f"{self.range_points:.1f} points, inside the best layer's 95% interval "
                f"(± {self.tolerance_points:.1f} points)")


def choice(run: Run, row: pd.Series) -> Choice | None:
    """The layer choice of a summary row; None for the weighted probe or a single layer."""
    layers = chosen_layers(row)
    n_layers = run.n_layers(row["model"])
    if not layers or ALL_LAYERS in layers or n_layers <= 1:
        return None
    counts = pd.Series(layers).value_counts()
    tied = sorted(int(k) for k in counts.index[counts == counts.max()])
    curve = curve_of(run, row["dataset"], row["model"], row["probe"])
    means = curve["val_score_mean"].to_numpy()
    best = curve.iloc[int(np.nanargmax(means))]
    half = (best.get("val_score_ci_high", np.nan) - best.get("val_score_ci_low", np.nan)) / 2
    if not np.isfinite(half):  # one round: the validation score's binomial interval
        half = 1.96 * np.sqrt(best["val_score_mean"] * (1 - best["val_score_mean"])
                              / validation_clips(run, row))
    spread = float(np.nanmax(means) - np.nanmin(means))
    flat = bool(np.isfinite(half) and spread <= half)
    return Choice(layers, tied[0], int(counts.max()), tied, n_layers, flat, 100 * spread,
                  100 * float(half) if np.isfinite(half) else float("nan"))


def validation_clips(run: Run, row: pd.Series) -> float:
    """The validation clips of a summary row's rounds (mean over rounds)."""
    runs = run.runs
    if runs.empty or "n_valid" not in runs:
        return float("nan")
    mine = runs[(runs["dataset"] == row["dataset"]) & (runs["model"] == row["model"])
                & (runs["probe"] == row["probe"])]
    return float(mine["n_valid"].mean()) if len(mine) else float("nan")


def curve_of(run: Run, dataset: str, model: str, probe: str) -> pd.DataFrame:
    """The per-layer rows (layers.csv) of one dataset x model x probe, by layer."""
    rows = run.layers
    return rows[(rows["dataset"] == dataset) & (rows["model"] == model)
                & (rows["probe"] == probe) & (rows["layer"] >= 0)].sort_values("layer")


def summary_row(run: Run, dataset: str, model: str, probe: str) -> pd.Series | None:
    rows = run.summary
    hit = rows[(rows["dataset"] == dataset) & (rows["model"] == model) & (rows["probe"] == probe)]
    return hit.iloc[0] if len(hit) else None


def layer_findings(run: Run) -> list[str]:
    """Per model with more than one layer and per probe trained layer by layer: the layer each
    dataset chose with the spread over rounds, or that its curve has no clear best layer."""
    lines = []
    for model in run.models:
        n_layers = run.n_layers(model)
        if n_layers <= 1:
            continue
        names = run.layer_names(model)
        for probe in layered_probes(run):
            parts, depths = [], []
            for dataset in run.datasets:
                row = summary_row(run, dataset, model, probe)
                made = choice(run, row) if row is not None else None
                if made is None:
                    continue
                if made.flat:
                    parts.append(f"{dataset}: {made.flat_text()}")
                    continue
                depths.append(made.depth)
                parts.append(f"{dataset}: layer {made.modal} (relative depth {made.depth:.2f}; "
                             f"{made.rounds_text()})")
            if not parts:
                continue
            low, high = f"{min(depths, default=0):.2f}", f"{max(depths, default=0):.2f}"
            where = (f"; relative depth {low if low == high else f'{low}–{high}'} where a layer "
                     "is clearly best" if len(depths) > 1 else "")
            lines.append(f"**{model}**, {probe} probe ({n_layers} layers, 0 = {names[0]}, "
                         f"{n_layers - 1} = {names[-1]}): " + "; ".join(parts) + where + ".")
    return lines


def layered_probes(run: Run) -> list[str]:
    """The probes trained on one layer at a time (all but weighted)."""
    return [p for p in run.probes if run.probe_kind(p) != "weighted"]


def weighted_probes(run: Run) -> list[str]:
    return [p for p in run.probes if run.probe_kind(p) == "weighted"]


def curves(run: Run, dataset: str, probe: str) -> list[dict]:
    """Per model of one dataset and probe: relative depth, validation and test mean and
    interval per layer (interval = mean where there is none), the chosen layers, the modal
    layer; a single-layer model as one point."""
    metric = run.headline_metric(dataset)
    out = []
    for model in run.models:
        part = curve_of(run, dataset, model, probe)
        row = summary_row(run, dataset, model, probe)
        if part.empty or row is None:
            continue
        n = run.n_layers(model)
        entry = {"model": model, "n_layers": n, "depth": part["layer"].to_numpy() / max(n - 1, 1),
                 "layers": part["layer"].to_numpy(), "chosen": chosen_layers(row),
                 "modal": int(row["modal_layer"])}
        for key, column in (("validation", "val_score"), ("test", metric)):
            mean = part[f"{column}_mean"]
            entry[key] = (mean.to_numpy(),
                          part.get(f"{column}_ci_low", mean).fillna(mean).to_numpy(),
                          part.get(f"{column}_ci_high", mean).fillna(mean).to_numpy())
        out.append(entry)
    return out


def weighted_lines(run: Run, dataset: str) -> list[tuple[str, str, float]]:
    """(model, probe, test mean) of the weighted probes of multi-layer models."""
    metric = run.headline_metric(dataset)
    return [(model, probe, float(row[f"{metric}_mean"]))
            for probe in weighted_probes(run) for model in run.models
            if run.n_layers(model) > 1
            and (row := summary_row(run, dataset, model, probe)) is not None]


def curve_caption(run: Run, dataset: str) -> str:
    """What the layer figure of a dataset draws, from its data: mean over rounds with bands,
    or one split with none."""
    rounds = int(run.summary.loc[run.summary["dataset"] == dataset, "n_rounds"].max())
    metric = metric_name(run.headline_metric(dataset))
    selected = metric_name(run.selection_metric(dataset))
    if rounds > 1:
        how = (f"mean over {rounds} rounds (seeds averaged within a round) with 95% "
               "Nadeau-Bengio corrected t bands")
    else:
        how = ("one split (seeds averaged), without bands: a per-layer interval needs several "
               "rounds")
    return (f"{dataset}: validation {selected} (left) and test {metric} (right) by relative "
            f"depth, {how}; a star marks the layer chosen in most rounds. Look for where each "
            "model peaks and whether the validation peak, where the layer is chosen, matches "
            "the test peak.")


def across_tasks(run: Run, probe: str) -> dict[str, dict]:
    """Per model with more than one layer: for every dataset, each layer's test score (percent)
    and its distance from the dataset's best layer (points), and the modal chosen layer."""
    out = {}
    for model in [m for m in run.models if run.n_layers(m) > 1]:
        grid, scores, boxes = [], [], []
        for dataset in run.datasets:
            values = curve_of(run, dataset, model, probe)[
                f"{run.headline_metric(dataset)}_mean"].to_numpy()
            grid.append(100 * (values - values.max()))
            scores.append(100 * values)
            row = summary_row(run, dataset, model, probe)
            boxes.append(int(row["modal_layer"]) if row is not None else None)
        out[model] = {"gaps": np.array(grid), "scores": np.array(scores), "boxes": boxes}
    return out
