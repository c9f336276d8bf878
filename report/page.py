# %% [markdown]
# ---
# title: "audioprobe report"
# subtitle: "Frozen audio representations probed layer by layer"
# format:
#   html:
#     embed-resources: true
#     html-math-method: plain
#     toc: true
#     toc-depth: 3
# execute:
#   echo: false
#   warning: false
# jupyter: python3
# ---

# %% [markdown]
# How well do frozen audio representations serve each task? Every number below comes from
# probes trained on the pooled features of one layer (a weighted probe: of all layers, "layer
# all"). The scaler, early stopping and the hyperparameter grid see training and validation data
# only; the layer is chosen on validation accuracy, never on test accuracy. Test scores are the
# mean over evaluation rounds (official folds or splits) × seeds.

# %%
import base64
import html
import io
from datetime import datetime

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import HTML, Markdown, display

from audioprobe import report_data as rd

run = rd.load()
if run.figures:
    run.figures.mkdir(parents=True, exist_ok=True)
sns.set_theme(style="whitegrid", context="paper", font_scale=1.25)
PROBE_COLOURS = dict(zip(run.config["probes"],
                         sns.color_palette("colorblind", len(run.config["probes"]))))
figure_count = 0
# Left-aligned tables that wrap inside the page (nbconvert's lab theme right-aligns them).
display(HTML("<style>table.dataframe th, table.dataframe td {text-align: left !important; "
             "vertical-align: top} table.dataframe {margin-bottom: 1em}</style>"))


def show(fig: plt.Figure, name: str, description: str) -> None:
    """Display a figure as an embedded PNG with alternative text; keep a copy for Snakemake's
    report."""
    global figure_count
    figure_count += 1
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    if run.figures:
        (run.figures / f"{figure_count:02d}-{name}.png").write_bytes(buffer.getvalue())
    data = base64.b64encode(buffer.getvalue()).decode()
    display(HTML(f'<img src="data:image/png;base64,{data}" alt="{html.escape(description)}" '
                 f'style="max-width: 100%">'))


def table(frame: pd.DataFrame, table_id: str | None = None) -> None:
    """Display a table without its index."""
    display(HTML(frame.to_html(index=False, border=0, table_id=table_id, na_rep="–",
                               classes="dataframe")))


def note(text: str) -> None:
    """Display a paragraph of Markdown."""
    display(Markdown(text))


def number(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Format ``columns`` with three significant digits."""
    return frame.assign(**{c: frame[c].map(rd.sig) for c in columns})


# %% [markdown]
# ## Run summary
#
# What was run: the datasets with their evaluation protocol, the models with their exact
# checkpoint revision, the probes and training protocol, and the software and hardware.

# %%
bench = rd.benchmark_table(run)
table(pd.DataFrame([
    {"item": "rendered", "value": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")},
    {"item": "datasets", "value": len(run.datasets)},
    {"item": "models", "value": len(run.models)},
    {"item": "probes", "value": len(run.config["probes"])},
    {"item": "seeds", "value": run.config["protocol"]["seeds"]},
    {"item": "jobs benchmarked", "value": len(bench)},
    {"item": "total run time (sum of job wall times, report excluded)",
     "value": f"{rd.duration(bench['wall time (s)'].sum())} "
              f"({rd.sig(bench['wall time (s)'].sum())} s)"},
]), "run-facts")
note("**Datasets**")
table(rd.dataset_table(run), "datasets")
note("**Models** (parameters counted from the checkpoint's safetensors files)")
table(rd.model_table(run), "models")
note("**Probes** (per layer and round, the grid of learning rates × weight decays is searched "
     "with seed 0 on validation accuracy; further seeds repeat the chosen point, and each "
     "run's best validation checkpoint predicts the test clips)")
table(rd.probe_table(run.config), "probes")
note("**Software** (the host that rendered this report)")
table(rd.software_versions(), "software")
note("**Hardware** (the host that rendered this report; extraction jobs may have run on a "
     "cluster node)")
table(rd.hardware(), "hardware")

# %% [markdown]
# ## Leaderboard
#
# One row per dataset, model and probe at the layer chosen on validation, best test accuracy
# first. Mean ± standard deviation over folds × seeds and the 95% confidence interval of the mean
# (Student t), three significant digits.

# %%
table(rd.leaderboard(run.summary), "leaderboard")

# %% [markdown]
# ## Published reference results
#
# Numbers that other benchmarks report for the same model and task, next to this run's test
# accuracy (in percent). A reference is matched by the dataset's adapter and options (the task
# definition, e.g. the class set) and by the model's checkpoint id; a number is comparable only
# when the protocol agrees too, and the table says when it does not.

# %%
comparison = rd.reference_comparison(run)
table(comparison, "reference-comparison")
if (comparison["source"] == "–").all():
    note("**No reference for this model/task** in this run: none of its dataset and model pairs "
         "appears in the published tables. All reference numbers (percent, mean ± std where "
         "published) follow for context.")
    shown = run.references
else:
    note("All published numbers for this run's tasks (any model; percent, mean ± std where "
         "published), for context:")
    shown = rd.task_references(run)
table(rd.reference_overview(shown), "references")
note("Sources of the reference protocols and how they differ from this workflow's (frozen "
     "encoder, one layer's pooled features chosen on validation, StandardScaler, linear or MLP "
     "probe trained with Adam and early stopping, official folds or splits):")
table(rd.reference_protocols(shown), "reference-protocols")


# %% [markdown]
# ## Per-dataset results
#
# For each dataset: test accuracy and macro-F1 of every model and probe at its selected layer
# (error bars: standard deviation over folds × seeds); test accuracy of every layer; and, for the
# configuration with the best validation accuracy, the confusion matrix, per-class scores and the
# most confused class pairs, pooled over test folds and seeds.

# %%
def score_bars(rows: pd.DataFrame, dataset: str) -> None:
    """Grouped bars of accuracy and macro-F1 per model and probe, with std error bars."""
    models = list(dict.fromkeys(rows["model"]))
    probes = [p for p in PROBE_COLOURS if p in set(rows["probe"])]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    width = 0.8 / len(probes)
    for ax, (metric, label) in zip(axes, [("accuracy", "test accuracy"),
                                          ("macro_f1", "test macro-F1")]):
        for k, probe in enumerate(probes):
            part = rows[rows["probe"] == probe].set_index("model").reindex(models)
            x = np.arange(len(models)) + (k - (len(probes) - 1) / 2) * width
            ax.bar(x, part[f"{metric}_mean"], width, yerr=part[f"{metric}_std"], capsize=3,
                   color=PROBE_COLOURS[probe], label=probe)
        ax.set_xticks(np.arange(len(models)), models, rotation=20, ha="right")
        ax.set(xlabel="model", ylabel=f"{label} (fraction)", ylim=(0, 1.05),
               title=f"{dataset}: {label}")
    axes[1].legend(title="probe", loc="lower right")
    show(fig, f"{dataset}-scores", f"{dataset}: bar charts of test accuracy and macro-F1 per "
                                   "model and probe, with standard-deviation error bars")


def layer_curves(rows: pd.DataFrame, dataset: str) -> None:
    """Test accuracy against layer, one panel per model; stars mark the selected layer."""
    models = list(dict.fromkeys(rows["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.8), sharey=True,
                             squeeze=False)
    for ax, model in zip(axes[0], models):
        per_layer = rows[(rows["model"] == model) & (rows["layer"] != rd.ALL_LAYERS)]
        for probe, part in per_layer.groupby("probe", sort=False):
            part = part.sort_values("layer")
            ax.plot(part["layer"], part["accuracy_mean"], marker="o",
                    color=PROBE_COLOURS[probe], label=probe)
            ax.fill_between(part["layer"], part["accuracy_mean"] - part["accuracy_std"],
                            part["accuracy_mean"] + part["accuracy_std"], alpha=0.15,
                            color=PROBE_COLOURS[probe])
            chosen = part[part["selected"]]
            ax.plot(chosen["layer"], chosen["accuracy_mean"], marker="*", markersize=16,
                    linestyle="none", color=PROBE_COLOURS[probe], markeredgecolor="black")
        weighted = rows[(rows["model"] == model) & (rows["layer"] == rd.ALL_LAYERS)]
        for _, row in weighted.iterrows():
            ax.axhline(row["accuracy_mean"], linestyle="--", color=PROBE_COLOURS[row["probe"]],
                       label=f"{row['probe']} (all layers)")
        layers = sorted(rows.loc[(rows["model"] == model) & (rows["layer"] != rd.ALL_LAYERS),
                                 "layer"].unique())
        ax.set(title=model, xlabel="layer (0 = input embedding)", ylabel="test accuracy",
               ylim=(0, 1.05))
        if layers:
            ax.set_xlim(layers[0] - 0.5, layers[-1] + 0.5)
            ax.set_xticks(layers if len(layers) <= 25 else layers[::len(layers) // 12])
    axes[0][-1].legend(title="probe (★ selected)", loc="lower right")
    fig.suptitle(f"{dataset}: accuracy by layer (band: ± std over folds × seeds)", y=1.02)
    show(fig, f"{dataset}-layers", f"{dataset}: line charts of test accuracy against layer, "
                                   "one panel per model, the selected layer starred")


def confusion_heatmap(predictions: pd.DataFrame, title: str, name: str) -> None:
    classes, counts = rd.confusion(predictions)
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    size = min(max(5, 0.42 * len(classes)), 24)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    sns.heatmap(share, xticklabels=classes, yticklabels=classes, cmap="Blues", vmin=0, vmax=1,
                annot=len(classes) <= 12, fmt=".2f", square=True, ax=ax,
                cbar_kws={"label": "fraction of the true class"})
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    ax.grid(False)
    show(fig, name, f"heatmap of the row-normalised confusion matrix, {title}")


for dataset in run.datasets:
    display(Markdown(f"### {dataset}"))
    rows = run.summary[run.summary["dataset"] == dataset]
    score_bars(rd.selected(rows), dataset)
    layer_curves(rows, dataset)
    best = rd.best_configuration(run.summary, dataset)
    predictions = run.predictions_of(dataset, best["model"], best["probe"])
    label = f"{best['model']}, {best['probe']} probe, layer {rd.layer_name(best['layer'])}"
    display(Markdown("#### Confusion matrix of the best configuration"))
    note(f"Best configuration on validation: **{label}**.")
    confusion_heatmap(predictions, f"{dataset}: {label}\n(rows normalised to the true class)",
                      f"{dataset}-confusion")
    display(Markdown("#### Per-class scores"))
    note("Precision, recall and F1 of each class (scikit-learn's classification report, pooled "
         "over folds and seeds: support counts each test clip once per seed).")
    scores = rd.class_report(predictions).reset_index()
    table(number(scores, ["precision", "recall", "f1"]), f"{dataset}-per-class")
    display(Markdown("#### Most confused class pairs"))
    table(rd.confused_pairs(predictions), f"{dataset}-confused-pairs")

# %% [markdown]
# ## Across tasks
#
# Test accuracy (mean over folds × seeds) of every layer on every dataset, one heatmap per model;
# rows are dataset and probe. A task whose best layer sits early or in the middle of the network
# says where the information the task needs lives.

# %%
for model in run.models:
    rows = run.summary[run.summary["model"] == model]
    grid = rows.pivot_table(index=["dataset", "probe"], columns="layer", values="accuracy_mean")
    grid = grid[sorted(grid.columns, key=lambda k: (k == rd.ALL_LAYERS, k))]
    grid.index = [f"{d} · {p}" for d, p in grid.index]
    grid.columns = [rd.layer_name(k) for k in grid.columns]
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * grid.shape[1] + 3), 0.6 * len(grid) + 1.6))
    sns.heatmap(grid, vmin=0, vmax=1, cmap="viridis", annot=grid.shape[1] <= 16, fmt=".2f",
                ax=ax, cbar_kws={"label": "test accuracy"})
    ax.set(xlabel="layer (0 = input embedding; all = weighted probe)",
           ylabel="dataset · probe", title=f"{model}: test accuracy by dataset and layer")
    ax.tick_params(axis="y", rotation=0)
    ax.grid(False)
    show(fig, f"{model}-layers-by-dataset",
         f"{model}: heatmap of test accuracy by dataset and probe (rows) and layer (columns)")

# %% [markdown]
# ## Error analysis
#
# For the best configuration of each dataset: a two-dimensional map (UMAP when installed,
# otherwise t-SNE, at most 2000 test clips) of the selected layer's standardised features,
# coloured by class and by whether the probe got the clip right across seeds; then the test clips
# with the highest cross-entropy loss (mean over seeds).

# %%
for dataset in run.datasets:
    display(Markdown(f"### {dataset}: errors of the best configuration"))
    best = rd.best_configuration(run.summary, dataset)
    store = run.store(dataset, best["model"])
    outcomes = rd.clip_outcomes(run.predictions_of(dataset, best["model"], best["probe"]))
    index = pd.Series(np.arange(len(store.meta)), index=store.meta["clip_id"])
    features = rd.layer_features(store, int(best["layer"]))[
        index[outcomes["clip_id"]].to_numpy()]
    points, rows, method = rd.embedding_2d(features)
    shown = outcomes.iloc[rows]
    outcome = np.select([shown["share correct"] == 1, shown["share correct"] == 0],
                        ["right in every seed", "wrong in every seed"], "right in some seeds")
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    n_classes = shown["label"].nunique()
    sns.scatterplot(x=points[:, 0], y=points[:, 1], hue=shown["label"].to_numpy(), s=22,
                    palette="tab10" if n_classes <= 10 else "husl", legend=n_classes <= 20,
                    ax=axes[0])
    sns.scatterplot(x=points[:, 0], y=points[:, 1], hue=outcome, s=22, ax=axes[1],
                    hue_order=["right in every seed", "right in some seeds",
                               "wrong in every seed"],
                    palette=["#4c9f70", "#f0a830", "#c03030"])
    for ax, title in zip(axes, ["coloured by class", "coloured by outcome"]):
        ax.set(xlabel=f"{method} 1 (arbitrary units)", ylabel=f"{method} 2 (arbitrary units)",
               title=title)
        if ax.get_legend():
            ax.legend(bbox_to_anchor=(1.01, 1), loc="upper left", fontsize="small")
    fig.suptitle(f"{dataset}: {best['model']}, layer {rd.layer_name(best['layer'])}, "
                 f"{len(rows)} test clips", y=1.02)
    fig.tight_layout()
    show(fig, f"{dataset}-embedding", f"{dataset}: {method} scatter plots of the test clips' "
                                      "features, coloured by class and by outcome")
    note("Test clips with the highest loss:")
    table(rd.highest_loss(outcomes, store), f"{dataset}-highest-loss")

# %% [markdown]
# ## Data audit
#
# What went into the probes: the class distribution per fold or split, clip durations, and the
# clips extraction padded (shorter than the model's minimum input), processed in windows (longer
# than `extraction.max_seconds`) or rejected, with the reasons. Silence and clipping are not
# measured by extraction yet, so they are not flagged here.

# %%
for dataset in run.datasets:
    display(Markdown(f"### {dataset}: data"))
    manifest = rd.read_manifest(run.manifests[dataset])
    part = (manifest["fold"].astype("Int64").astype(str).radd("fold ")
            if manifest["fold"].notna().all() else manifest["split"])
    counts = pd.crosstab(manifest["label"], part)
    meta = run.store(dataset, run.models[0]).meta
    fig, axes = plt.subplots(1, 2, figsize=(13, max(4, min(0.28 * len(counts), 20))),
                             width_ratios=[1.2, 1])
    counts.plot.barh(stacked=True, ax=axes[0], colormap="tab20", width=0.8)
    axes[0].set(xlabel="clips", ylabel="class", title="class distribution")
    axes[0].legend(title="fold / split", bbox_to_anchor=(1.01, 1), loc="upper left",
                   fontsize="small")
    if len(counts) > 60:
        axes[0].set_yticks([])
    axes[1].hist(meta["duration"], bins=30, color="#4878a8")
    axes[1].set(xlabel="clip duration (s)", ylabel="clips", title="duration of the kept clips")
    fig.suptitle(f"{dataset}: {len(manifest)} clips, {len(counts)} classes", y=1.02)
    fig.tight_layout()
    show(fig, f"{dataset}-data", f"{dataset}: stacked bar chart of clips per class and fold "
                                 "or split, and histogram of clip durations")
    table(rd.audit_table(run, dataset), f"{dataset}-audit")
    reasons = rd.rejection_reasons(run, dataset)
    if reasons.empty:
        note("No clip was rejected by any model's extraction.")
    else:
        note("Rejected clips by reason:")
        table(reasons, f"{dataset}-rejected")

# %% [markdown]
# ## Cost
#
# Wall time and peak memory of every job from Snakemake's benchmark files; for extraction jobs,
# the throughput in clips and in seconds of audio per second of wall time.

# %%
columns = ["wall time (s)", "max RSS (MB)", "clips / s", "audio s / s"]
table(number(bench, columns).assign(clips=bench["clips"].map(
    lambda v: "–" if pd.isna(v) else f"{int(v):,}")), "cost")
ordered = bench.sort_values("wall time (s)")
fig, ax = plt.subplots(figsize=(9, max(3, 0.32 * len(ordered) + 1)))
palette = dict(zip(dict.fromkeys(bench["step"]),
                   sns.color_palette("colorblind", bench["step"].nunique())))
ax.barh(ordered["step"] + ": " + ordered["job"], ordered["wall time (s)"],
        color=[palette[s] for s in ordered["step"]])
ax.set(xlabel="wall time (s)", ylabel="job", title="wall time per job")
ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in palette.values()],
          labels=list(palette), title="step", bbox_to_anchor=(1.01, 0), loc="lower left")
show(fig, "cost", "bar chart of the wall time of every job, coloured by step")
