# %% [markdown]
# ---
# title: "audioprobe report"
# subtitle: "Frozen audio representations probed layer by layer"
# format:
#   html:
#     embed-resources: true
#     html-math-method: plain
#     toc: true
#     toc-location: left
#     toc-depth: 3
# execute:
#   echo: false
#   warning: false
# jupyter: python3
# ---

# %% [markdown]
# How well do frozen audio representations serve each task, and where in the network does the
# information sit? Every number comes from probes trained on the pooled features of one layer
# (the weighted probe: a learned mix of all layers). Scalers, early stopping, the hyperparameter
# grid and the layer are chosen on training and validation data only, on the dataset's headline
# metric, separately in every evaluation round (official fold or split); the test score of a
# round is taken at that round's own chosen layer, and intervals treat the round, not the seed,
# as the unit of replication. Two kinds of interval: over several rounds (k-fold) it covers
# training and test sampling (Nadeau-Bengio corrected t, conservative); on a single split it
# holds the trained probe fixed and covers test sampling only (bootstrap-t over test groups).
# Every pair of models is compared, with Holm's correction over all of them; no choice in this
# report uses a test score. A difference "not distinguishable" is not shown to be zero.

# %%
import base64
import html
import io
import platform
from datetime import datetime

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import yaml
from IPython.display import HTML, Markdown, display
from itables import init_notebook_mode, to_html_datatable
from matplotlib.patches import Rectangle

from audioprobe import results
from audioprobe.joblog import run_details
from audioprobe.report import (audit, colours, cost, embedding, errors, findings, layers,
                               matrix, references, setup, vector)
from audioprobe.report.formatting import (duration, metric_name, percent, percent_interval,
                                          sig)

run = results.load()
if run.figures:
    run.figures.mkdir(parents=True, exist_ok=True)
figure_files = vector.Writer()  # each figure's PDF and SVG, written beside the page
sns.set_theme(style="whitegrid", context="paper", font_scale=1.2)
# One colour (and line style) per model, the same in every figure; other figures use greys,
# except the classes of the feature map (colour and marker, named in its legend).
MODEL_STYLES = colours.model_styles(run.models)
MODEL_COLOURS = {model: style["color"] for model, style in MODEL_STYLES.items()}
LAYERED_PROBES = layers.layered_probes(run)
FIGURE_WIDTH = 10  # inches at 90 dpi: 900 px, shown at most 1:1.25 on an 800 px window
figure_count = 0

display(HTML("""<style>
.jp-InputPrompt, .jp-OutputPrompt {display: none !important}
.jp-OutputArea-output {padding-left: var(--jp-code-padding)}
#TOC {font-size: 0.9rem; line-height: 1.35}
#TOC ul {list-style: none; padding-left: 0.9em; margin: 0.2em 0}
#TOC > ul {padding-left: 0}
#TOC a {text-decoration: none; color: #1f4e79}
#TOC a:hover {text-decoration: underline}
#toc-title {font-size: 1rem; margin: 0 0 0.4em}
body > #TOC {position: fixed; top: 0; left: 0; bottom: 0; width: 250px; overflow-y: auto;
  padding: 1rem 0.8rem; border-right: 1px solid #ddd; background: #fafafa; z-index: 10;
  box-sizing: border-box}
body.jp-Notebook > main {margin-left: 270px; max-width: 1120px; padding: 0 1.5rem;
  box-sizing: border-box}
@media (max-width: 1100px) {
  body > #TOC {position: static; width: auto; border-right: none;
    border-bottom: 1px solid #ddd; overflow: visible}
  body.jp-Notebook > main {margin-left: 0; padding: 0 0.6rem}
  #TOC ul ul li {display: inline; margin-right: 0.9em}
}
.jp-RenderedMarkdown p, .jp-RenderedMarkdown li, figcaption, .lead {max-width: 78ch}
.jp-RenderedHTMLCommon p {max-width: 78ch}
.table-wrap {overflow-x: auto; max-width: 100%; margin: 0.5em 0 1.2em}
.table-wrap table {margin: 0; border-collapse: collapse}
table.dataframe th, table.dataframe td {text-align: left !important; vertical-align: top;
  padding: 0.25em 0.6em}
table.matrix td.score {white-space: nowrap; text-align: right !important}
table.matrix th, table.matrix td {padding: 0.2em 0.45em}
table.matrix tr > :first-child {position: sticky; left: 0; z-index: 1; background: inherit}
table.matrix thead th:first-child {background: #fff}
table.matrix .ci {color: #555; font-size: 0.85em}
table.matrix th {white-space: nowrap}
.table-wrap .dt-search input {width: min(24em, 80vw)}
.scroll-hint {display: none; margin: -0.8em 0 1em; font-size: 0.9em; color: #1f4e79}
.scroll-hint.shown {display: block}
.tag {font-size: 0.75em; padding: 0 0.35em; border: 1px solid #888; border-radius: 3px;
  color: #333}
figure.report-figure {margin: 1em 0 1.6em}
figure.report-figure img {max-width: 100%; height: auto}
figcaption {font-size: 0.95em; color: #222}
pre.config {max-height: 30em; overflow: auto; background: #f6f6f6; padding: 0.6em;
  white-space: pre; max-width: 100%}
details > summary {cursor: pointer; margin: 0.4em 0}
@media print {
  body > #TOC, .dt-search, .scroll-hint, .scroll-hint.shown {display: none}
  body.jp-Notebook > main {margin: 0; max-width: none; padding: 0}
  .table-wrap {overflow: visible}
  table.matrix {font-size: 7pt; width: 100% !important; table-layout: auto}
  table.matrix th, table.matrix td.score {white-space: normal; padding: 0.1em 0.2em}
  table.matrix tr > :first-child {position: static}
  figure.report-figure, table {break-inside: avoid}
  details > *:not(summary) {display: block}
  a {color: inherit}
}
</style>"""))


def show(fig: plt.Figure, name: str, caption: str, alt: str) -> None:
    """Display a figure as a numbered, captioned, embedded PNG; keep a copy for Snakemake's
    report."""
    global figure_count
    figure_count += 1
    width, height = fig.get_size_inches()
    if width > FIGURE_WIDTH:  # legible at 800 px: never wider than the page's figures
        fig.set_size_inches(FIGURE_WIDTH, height * FIGURE_WIDTH / width)
    box = vector.tight_box(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches=box)
    if run.figures:
        (run.figures / f"{figure_count:02d}-{name}.png").write_bytes(buffer.getvalue())
        figure_files.save(fig, run.figures / f"{figure_count:02d}-{name}", box)
    data = base64.b64encode(buffer.getvalue()).decode()
    display(HTML(f'<figure class="report-figure" id="fig-{name}">'
                 f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
                 f"<figcaption><b>Figure {figure_count}.</b> {caption}</figcaption></figure>"))
    plt.close(fig)


def table(frame: pd.DataFrame, table_id: str | None = None) -> None:
    """Display a table without its index, scrolling sideways inside its own box."""
    display(HTML('<div class="table-wrap">' + frame.to_html(
        index=False, border=0, table_id=table_id, na_rep="–", classes="dataframe",
        escape=True) + "</div>"))


def folded(summary: str, frame: pd.DataFrame, table_id: str) -> None:
    """A table behind a disclosure triangle."""
    display(HTML(f"<details><summary>{html.escape(summary)}</summary>"
                 '<div class="table-wrap">' + frame.to_html(
                     index=False, border=0, table_id=table_id, na_rep="–",
                     classes="dataframe") + "</div></details>"))


def note(text: str) -> None:
    """Display a paragraph of Markdown."""
    display(Markdown(text))


def fitted_limits(lows: list[float], highs: list[float]) -> tuple[float, float]:
    """Axis limits around the data with a 6% margin."""
    low, high = np.nanmin(lows), np.nanmax(highs)
    pad = max(0.06 * (high - low), 0.005)
    return low - pad, high + pad


# %% [markdown]
# ## Key findings
#
# Generated from the tables: per dataset, the model and probe best on validation (never chosen on
# a test score), its test score, where its layer sits, and the paired comparisons against the
# runner-up on validation, its random-weights control and the log-mel baseline (differences in
# percentage points, 95% intervals, Holm-adjusted p over all the comparisons of one dataset:
# every pair of models with each probe), and the models no other model beats.

# %%
for dataset in run.datasets:
    note(findings.dataset_finding(run, dataset))
layers_said = layers.layer_findings(run)
if layers_said:
    display(Markdown("### Where the best layers sit"))
    note("Per model and probe trained layer by layer: the layer chosen in most rounds with the "
         "spread of the rounds' choices, or no clear best layer where every layer's validation "
         "score lies inside the best layer's 95% interval.")
    note("\n".join(f"- {line}" for line in layers_said))
display(Markdown("### Caveats"))
said = findings.caveats(run)
note("\n".join(f"- {line}" for line in said) if said else
     "No dataset carries a note, and every task has published references.")

# %% [markdown]
# ## Results matrix
#
# The headline score (percent, one decimal) with its 95% interval for every model and probe
# (rows) on every dataset (columns); in bold, the models no other model with the same probe beats
# (Holm over every pair, not the highest test score); controls (random
# weights) and baselines (log-mel) tagged; mean rank across datasets (1 = best). Click a column
# to sort; type in the search box to filter rows. A single-layer model has no weighted-probe
# row: a learned mix of one layer is its linear probe.

# %%
def matrix_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The models x datasets matrix as HTML cells, followed by one hidden sort key per dataset
    (the score, -1 where missing) that the dataset's column sorts by."""
    cells = pd.DataFrame({
        "model": [html.escape(m) + (f' <span class="tag">{r}</span>' if r else "")
                  for m, r in zip(frame["model"], frame["role"])],
        "probe": frame["probe"].map(html.escape)})
    keys = {}
    for dataset in run.datasets:
        head = (f'<span title="{metric_name(run.headline_metric(dataset))}">'
                f"{html.escape(dataset)}</span>")
        cells[head] = [score_cell(c) for c in frame[dataset]]
        keys[f"{dataset} sort key"] = [f"{100 * c['score']:.4f}" if isinstance(c, dict) else "-1"
                                       for c in frame[dataset]]
    cells["mean rank"] = frame["mean rank"].map(lambda v: f"{v:.2f}")
    return cells.assign(**keys)


def score_cell(cell: dict | None) -> str:
    """Percent (bold for the dataset's best) over its 95% interval; a dash when missing."""
    if not isinstance(cell, dict):
        return "–"
    score = percent(cell["score"])
    return (f"{f'<b>{score}</b>' if cell['best'] else score}<br>"
            f'<span class="ci">{percent_interval(cell["low"], cell["high"])}</span>')


def matrix_table(frame: pd.DataFrame) -> str:
    """The matrix as a DataTables table (itables, offline): a search box, every column sortable,
    a dataset's column sorted by its hidden score; a hint shows while columns are out of
    view."""
    cells = matrix_frame(frame)
    n = len(run.datasets)
    scores = list(range(2, 3 + n))
    return ('<div class="table-wrap matrix-wrap" id="matrix-wrap">' + to_html_datatable(
        cells, connected=False, allow_html=True, table_id="matrix", paging=False,
        text_in_header_can_be_selected=False, display_logo_when_loading=False,
        classes="display compact dataframe matrix", style="width: auto; margin: 0",
        layout={"topStart": "search", "topEnd": None, "bottomStart": None, "bottomEnd": None},
        language={"searchPlaceholder": "model, probe, control, baseline"},
        columnDefs=[*({"targets": 2 + i, "orderData": 3 + n + i} for i in range(n)),
                    {"targets": scores, "className": "score"},
                    {"targets": list(range(3 + n, 3 + 2 * n)), "visible": False,
                     "searchable": False}]) + "</div>"
            + '<p class="scroll-hint" id="matrix-hint">More datasets to the right: scroll the '
              "matrix sideways →</p>" + SCROLL_HINT)


SCROLL_HINT = """<script>
(() => {
  const update = () => {
    const wrap = document.getElementById('matrix-wrap');
    const hint = document.getElementById('matrix-hint');
    if (!wrap || !hint) return;
    const hidden = wrap.scrollWidth - wrap.clientWidth - wrap.scrollLeft > 2;
    hint.classList.toggle('shown', hidden);
  };
  window.addEventListener('resize', update);
  document.addEventListener('scroll', update, true);
  new MutationObserver(update).observe(document.body, {childList: true, subtree: true});
  update();
})();
</script>"""

init_notebook_mode(all_interactive=False, connected=False)
display(HTML(matrix_table(matrix.matrix(run))))
note("Headline metric per dataset: " + "; ".join(
    f"{d}: {metric_name(run.headline_metric(d))}" for d in run.datasets) + ".")
links = [f'<a href="../tables/{name}.csv">{name}.csv</a>' for name in run.tables]
folder = next(iter(run.tables.values())).parent.resolve() if run.tables else None
display(HTML(f'<p class="lead">The tables behind this report, linked from the report\'s '
             f'folder as <code>../tables/</code>: {", ".join(links)}. When rendered they were in '
             f'<code>{html.escape(str(folder))}</code>; a copy of the report keeps its links '
             "when <code>results/tables/</code> sits beside its folder.</p>"))

# %% [markdown]
# ## Setup
#
# The datasets with their evaluation protocol and headline metric (the ICBHI score for ICBHI,
# balanced accuracy where classes are imbalanced), the models (log-mel is the weight-free
# baseline; a random-weights model is the control of the pretrained model configured the same
# way) and the probes.

# %%
table(setup.dataset_table(run), "datasets")
table(setup.model_table(run), "models")
table(setup.probe_table(run), "probes")

# %% [markdown]
# ## Per-dataset results
#
# For each dataset: validation and test scores of every layer for every model on relative depth
# (0 = a model's first stored layer, 1 = its last), the paired comparisons, and for the
# configuration best on validation the confusion matrix, per-class scores and most confused
# pairs (in test clips, each clip's seeds averaged, each round at its own chosen layer).

# %%
def legend_text(model: str, chosen: list[str]) -> str:
    """A layer figure's legend entry of a model: each probe's chosen layers (round by round),
    or for a single-layer model its reference line."""
    if not chosen:
        return f"{model} (single layer, reference line)"
    return f"{model}: chosen layers, " + "; ".join(chosen)


def layer_figure(dataset: str) -> None:
    """Validation (left) and test (right) score by relative depth, one row per probe."""
    selected, metric = run.selection_metric(dataset), run.headline_metric(dataset)
    probes = LAYERED_PROBES or run.probes
    fig, axes = plt.subplots(len(probes), 2, figsize=(FIGURE_WIDTH, 3.4 * len(probes)),
                             squeeze=False)
    weighted = layers.weighted_lines(run, dataset)
    chosen: dict[str, tuple] = {}  # per model: its line and each probe's chosen layers
    weighted_lines: dict[str, object] = {}  # a weighted probe's line by its label
    for r, probe in enumerate(probes):
        for c, (key, label) in enumerate([("validation", f"validation {metric_name(selected)}"),
                                          ("test", f"test {metric_name(metric)}")]):
            ax, lows, highs = axes[r][c], [], []
            for curve in layers.curves(run, dataset, probe):
                model, style = curve["model"], MODEL_STYLES[curve["model"]]
                mean, low, high = curve[key]
                if curve["n_layers"] == 1:
                    line = ax.axhline(mean[0], color=style["color"], linestyle="--", linewidth=2)
                    ax.axhspan(low[0], high[0], color=style["color"], alpha=0.12)
                    text = None
                else:
                    line, = ax.plot(curve["depth"], mean, marker="o", markersize=3.5, **style)
                    ax.fill_between(curve["depth"], low, high, color=style["color"], alpha=0.15)
                    modal = curve["layers"] == curve["modal"]
                    ax.plot(curve["depth"][modal], mean[modal], marker="*", markersize=14,
                            color=style["color"], markeredgecolor="black", linestyle="none")
                    text = f"{probe} {', '.join(map(str, curve['chosen']))}"
                lows += list(low)
                highs += list(high)
                if c == 0:
                    chosen.setdefault(model, (line, []))[1].extend([text] if text else [])
            if c == 1:
                for model, wprobe, value in weighted:
                    line = ax.axhline(value, color=MODEL_STYLES[model]["color"], linestyle=":",
                                      linewidth=1.8)
                    lows.append(value)
                    highs.append(value)
                    weighted_lines.setdefault(f"{model}: {wprobe} probe, all layers (test)", line)
            if lows:
                ax.set_ylim(*fitted_limits(lows, highs))
            ax.set(xlim=(-0.03, 1.03), xlabel="relative depth (0 = first, 1 = last)",
                   ylabel=label, title=f"{probe} probe: {label}")
    fig.legend([line for line, _ in chosen.values()] + list(weighted_lines.values()),
               [legend_text(model, texts) for model, (_, texts) in chosen.items()]
               + list(weighted_lines), loc="upper center", bbox_to_anchor=(0.5, 0), ncol=2,
               fontsize="small", frameon=False, title="★ layer chosen in most rounds")
    fig.tight_layout()
    show(fig, f"{dataset}-layers", layers.curve_caption(run, dataset),
         f"{dataset}: line charts of validation and test score against relative depth per model")


def confusion_figure(predictions: pd.DataFrame, dataset: str, label: str) -> None:
    """The row-normalised confusion matrix; above the sub-matrix size, the most confused
    classes, on a scale that the off-diagonal cells fill."""
    classes, counts = errors.confusion(predictions)
    shown, share = errors.most_confused(classes, counts)
    off = share - np.diag(np.diag(share))
    cut = len(shown) < len(classes)
    top = 100 * max(float(off.max()), 0.01) if cut else 100
    size = min(max(5, 0.42 * len(shown)), 10)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    sns.heatmap(100 * share, xticklabels=shown, yticklabels=shown, cmap="Greys", vmin=0,
                vmax=top, annot=len(shown) <= 15, fmt=".0f", annot_kws={"fontsize": 8},
                square=True, ax=ax, cbar_kws={"label": "percent of the true class"
                                              + (" (scale clipped)" if cut else "")})
    ax.set(xlabel="predicted class", ylabel="true class")
    ax.grid(False)
    what = (f"the {len(shown)} most confused of its {len(classes)} classes (errors from and "
            f"into them), shaded up to the largest off-diagonal share ({top:.0f}%) so that "
            "confusions show; diagonal cells above it are black" if cut else
            f"all {len(classes)} classes")
    show(fig, f"{dataset}-confusion",
         f"Confusion matrix of {label} on {dataset}, {what}; rows normalised to the true "
         "class's test clips (seeds averaged).",
         f"{dataset}: heatmap of the row-normalised confusion matrix")


for dataset in run.datasets:
    display(Markdown(f"### {dataset}: results"))
    layer_figure(dataset)
    compared = findings.comparison_table(run, dataset)
    if compared.empty:
        note("No paired comparison was run on this dataset.")
    else:
        folded(f"Paired comparisons on {dataset} ({len(compared)})", compared,
               f"{dataset}-comparisons")
    best = findings.best_row(run, dataset)
    predictions = run.predictions_of(dataset, best["model"], best["probe"])
    label = f"{best['model']} with the {best['probe']} probe"
    confusion_figure(predictions, dataset, label)
    scores = errors.class_report(predictions).reset_index()
    folded(f"Per-class precision, recall and F1 of {label} (support in test clips)",
           scores.assign(**{c: scores[c].map(sig) for c in ("precision", "recall", "f1",
                                                             "seeds agree")}),
           f"{dataset}-per-class")
    note(f"Most confused class pairs of {label}, in test clips:")
    table(errors.confused_pairs(predictions), f"{dataset}-confused-pairs")

# %% [markdown]
# ## Across tasks
#
# For each model with more than one layer, with the first probe trained layer by layer: the
# test score of every layer on every dataset, as points below that dataset's best layer of the
# model, so that close scores separate; the number in a cell is the score itself (percent) and
# the box marks the layer chosen in most rounds.

# %%
grids = layers.across_tasks(run, LAYERED_PROBES[0]) if LAYERED_PROBES else {}
if len(run.datasets) < 2:
    note("One dataset only: a comparison across tasks needs two or more.")
elif not grids:
    note("No model with more than one layer was probed layer by layer.")
else:
    probe = LAYERED_PROBES[0]
    fig, axes = plt.subplots(len(grids), 1, figsize=(FIGURE_WIDTH, 0.55 * len(run.datasets)
                                                      * len(grids) + 1.2 * len(grids)),
                             squeeze=False)
    floor = max(min(np.percentile(g["gaps"], 10) for g in grids.values()), -15.0)
    for ax, (model, grid) in zip(axes[:, 0], grids.items()):
        sns.heatmap(grid["gaps"], ax=ax, cmap="Greys", vmin=floor, vmax=0,
                    annot=grid["scores"], fmt=".0f", annot_kws={"fontsize": 8},
                    xticklabels=range(grid["gaps"].shape[1]), yticklabels=run.datasets,
                    cbar_kws={"label": "points below the best layer"})
        for row, layer in enumerate(grid["boxes"]):
            if layer is not None:
                for colour, width in (("white", 4), ("black", 1.8)):
                    ax.add_patch(Rectangle((layer, row), 1, 1, fill=False, edgecolor=colour,
                                           linewidth=width))
        ax.set(title=f"{model}, {probe} probe",
               xlabel=f"layer (0 = {run.layer_names(model)[0]})", ylabel="dataset")
        ax.tick_params(axis="y", rotation=0)
    fig.tight_layout()
    show(fig, "layers-across-tasks",
         f"Test score by layer across datasets ({probe} probe), shaded by the distance from "
         f"each dataset's best layer (clipped at {floor:.0f} points), the layer chosen in most "
         "rounds boxed; look for whether the tasks peak at the same depth.",
         "heatmaps of test score by dataset and layer, one per model")

# %% [markdown]
# ## Comparison with published results
#
# Only the published numbers for the same task definition and checkpoint as one of this run's
# rows, with how the protocols differ in probe and layer, split and test set, and class
# balance, and whether the dataset is comparable at all (its adapter's notes). The full
# reference table is in Appendix B.

# %%
matched = references.reference_matches(run)
if matched.empty:
    note("No published number matches a task and checkpoint of this run.")
else:
    same = int((matched["probe type"] == "same").sum())
    note(f"{len(matched)} published numbers match; {same} of them use the same probe type.")
    table(matched.drop(columns=["key"]), "reference-matches")
    note("How each matched protocol differs from this run's:")
    table(references.protocol_differences(run, matched), "protocol-differences")

# %% [markdown]
# ## Error analysis
#
# For the configuration best on validation of each dataset: a t-SNE map (at most 1000 test
# clips) of the standardised features, at the layer its caption names; with at most 30 classes
# the class in colour and marker on the left, and the outcome on the right (grey dot: right in
# every seed; open circle: right in some; black cross: wrong in every seed). With more classes,
# the map shows the outcome only, beside each class's share of right predictions, sorted.
# Then the clips with the highest loss.

# %%
OUTCOMES = (("right in every seed", lambda s: s == 1, {"marker": "o", "color": "#b0b0b0", "s": 14}),
            ("right in some seeds", lambda s: (s > 0) & (s < 1),
             {"marker": "o", "facecolors": "none", "edgecolors": "#404040", "s": 22}),
            ("wrong in every seed", lambda s: s == 0, {"marker": "x", "color": "black", "s": 22}))

for dataset in run.datasets:
    display(Markdown(f"### {dataset}: errors"))
    best = findings.best_row(run, dataset)
    store = run.store(dataset, best["model"])
    outcomes = errors.clip_outcomes(run.predictions_of(dataset, best["model"], best["probe"]))
    mapped = embedding.feature_map(store, outcomes)
    points, shown = mapped.points, mapped.outcomes
    classes = sorted(shown["label"].unique())
    by_class = len(classes) <= colours.MAX_CLASSES
    fig, axes = plt.subplots(1, 2, figsize=(FIGURE_WIDTH, 4.6))
    outcome_ax = axes[1] if by_class else axes[0]
    if by_class:
        for name, style in colours.class_styles(classes).items():
            mask = (shown["label"] == name).to_numpy()
            axes[0].scatter(points[mask, 0], points[mask, 1], s=16, label=name, **style)
    for outcome, test, style in OUTCOMES:
        mask = test(shown["share correct"]).to_numpy()
        outcome_ax.scatter(points[mask, 0], points[mask, 1], label=outcome, **style)
    for ax, title in zip(axes[: 2 if by_class else 1], ["class", "outcome"] if by_class
                         else ["outcome"]):
        ax.set(xlabel=f"{mapped.method} 1", ylabel=f"{mapped.method} 2", title=title,
               xticks=[], yticks=[])
        ax.legend(bbox_to_anchor=(1.01, 1), loc="upper left", fontsize="small", frameon=False,
                  ncol=2 if by_class and ax is axes[0] and len(classes) > 15 else 1)
    if not by_class:
        recall = errors.class_recall(outcomes)
        axes[1].plot(np.arange(len(recall)), 100 * recall.to_numpy(), color="#404040")
        axes[1].text(0.97, 0.04, "lowest:\n" + "\n".join(
            f"{name} {100 * value:.0f}%" for name, value in recall.head(8).items()),
            transform=axes[1].transAxes, ha="right", va="bottom", fontsize="small",
            bbox={"facecolor": "white", "edgecolor": "#bbbbbb"})
        axes[1].set(xlabel=f"class, by share right (lowest first; {len(recall)} classes)",
                    ylabel="right predictions (%)", title="per class, sorted")
    fig.tight_layout()
    what = ("class (colour and marker) and outcome" if by_class else
            f"outcome only ({len(classes)} classes are too many to tell apart by colour), "
            "beside each class's share of right predictions, lowest first, the 8 lowest named")
    show(fig, f"{dataset}-embedding",
         f"{dataset}: {mapped.method} of {len(shown)} test clips under {best['model']} "
         f"({best['probe']} probe; features of {mapped.where}), by {what}. Errors that "
         "cluster in one region point to a class-level confusion rather than noise.",
         f"{dataset}: {mapped.method} scatter plots of test clips")
    note("Test clips with the highest loss:")
    table(errors.highest_loss(outcomes, store), f"{dataset}-highest-loss")

# %% [markdown]
# ## Data audit
#
# What went into the probes: the class distribution per fold or split, clip durations, the clips
# extraction padded, processed in windows (longer than the window length recorded in each
# model's feature store) or rejected (with reasons), and the notes the dataset adapter wrote
# into the manifest.

# %%
for dataset in run.datasets:
    display(Markdown(f"### {dataset}: data"))
    counts = audit.class_counts(run, dataset)
    meta = run.store(dataset, run.models[0]).meta
    fig, axes = plt.subplots(1, 2, figsize=(FIGURE_WIDTH, max(3.2, min(0.25 * len(counts), 14))),
                             width_ratios=[1.3, 1])
    counts.plot.barh(stacked=True, ax=axes[0], width=0.8, edgecolor="white", linewidth=0.3,
                     color=[plt.cm.Greys(v) for v in np.linspace(0.3, 0.95, counts.shape[1])])
    axes[0].set(xlabel="clips", ylabel="class", title="clips per class and fold or split")
    axes[0].legend(title="fold / split", bbox_to_anchor=(1.01, 1), loc="upper left",
                   fontsize="small", frameon=False)
    if len(counts) > 60:
        axes[0].set_yticks([])
    axes[1].hist(meta["duration"], bins=30, color="#6c757d")
    axes[1].set(xlabel="clip duration (s)", ylabel="clips", title="duration of the kept clips")
    fig.tight_layout()
    show(fig, f"{dataset}-data",
         f"{dataset}: {int(counts.to_numpy().sum())} clips in {len(counts)} classes; check that "
         "every fold or split holds every class and that no duration dominates.",
         f"{dataset}: stacked bars of clips per class and fold, histogram of durations")
    table(audit.audit_table(run, dataset), f"{dataset}-audit")
    reasons = audit.rejection_reasons(run, dataset)
    note("No clip was rejected by any model's extraction." if reasons.empty else
         "Rejected clips by reason:")
    if not reasons.empty:
        table(reasons, f"{dataset}-rejected")
    notes = run.notes.get(dataset, {})
    if notes.get("notes"):
        note("Manifest notes:\n\n" + "\n".join(f"- {n}" for n in notes["notes"]))
    if notes.get("comparable") is False:
        note("The adapter marks this dataset **not comparable** with published numbers.")

# %% [markdown]
# ## Cost
#
# Wall time and peak memory per rule from Snakemake's benchmark files (sum and longest job); for
# extraction, one row per model with its throughput in clips and in seconds of audio per second
# of its jobs' wall time.

# %%
spent = cost.cost_table(run)
elapsed = cost.times(run)
sittings = ("" if elapsed["sittings"] <= 1 else
            f" in each of the {elapsed['sittings']} sittings the jobs ran in, summed: runs of "
            f"Snakemake more than {cost.PAUSE / 60:g} minutes apart, the time between left out")
note(f"{len(run.jobs)} jobs. Elapsed (first job's start to last job's end{sittings}): "
     f"{duration(elapsed['elapsed'])} ({sig(elapsed['elapsed'])} s). Summed job wall time: "
     f"{duration(elapsed['summed'])} ({sig(elapsed['summed'])} s); more than elapsed where "
     "jobs ran in parallel. The report itself is excluded.")
table(spent.assign(**{c: spent[c].map(sig) for c in spent.columns
                      if c not in ("rule", "model", "jobs")}), "cost")
fig, ax = plt.subplots(figsize=(8, 0.4 * len(spent) + 1.2))
ordered = spent.sort_values("total wall time (s)")
ax.barh([f"{r} ({m})" if m != "–" else r for r, m in zip(ordered["rule"], ordered["model"])],
        ordered["total wall time (s)"], color="#6c757d")
ax.set(xlabel="total wall time (s)", ylabel="rule")
show(fig, "cost", "Total wall time per rule (extraction per model); the longest bar is where "
     "speed-ups pay off.", "bar chart of the total wall time of every rule")

# %% [markdown]
# ## Appendix A: Run details
#
# The configuration as run, the workflow's commit, the seeds and the hyperparameters each round
# chose, and the software and hardware of the jobs that did the work, read from their logs.
# The host that rendered this page is named separately at the end.

# %%
table(setup.run_facts(run, results.git_commit(run.workflow)), "run-facts")
display(HTML("<details><summary>Configuration as run (YAML)</summary><pre class='config'>"
             + html.escape(yaml.safe_dump(run.config, sort_keys=False)) + "</pre></details>"))
hyper, counted = setup.chosen_hyperparameters(run)
if not hyper.empty:
    folded(f"Hyperparameters chosen on validation ({counted})",
           hyper.assign(**{c: hyper[c].map(sig) for c in ("val. accuracy",) if c in hyper}),
           "chosen-hyperparameters")
note("Software and hardware of the jobs, from the run details each job logged at its start "
     "(one row per rule and environment):")
table(setup.job_environments(run), "job-environments")
host = run_details()
table(pd.DataFrame([
    {"item": "rendered", "value": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")},
    {"item": "host", "value": host["host"]}, {"item": "CPU", "value": host["cpu"]},
    {"item": "OS", "value": host["os"]},
    {"item": "python", "value": platform.python_version()},
    {"item": "packages", "value": ", ".join(f"{k} {v}" for k, v in host["packages"].items())},
]), "rendering-host")

# %% [markdown]
# ## Appendix B: Published references
#
# Every published number in `report/reference_results.csv`, with its source, year and link. A
# number is comparable with this run's only when task definition, split, test set, class
# balance and probe agree.

# %%
appendix = references.reference_appendix(run)
appendix["link"] = appendix["link"].map(
    lambda u: f'<a href="{html.escape(u)}" rel="noreferrer">{html.escape(u)}</a>' if u else "–")
display(HTML('<div class="table-wrap">' + appendix.to_html(
    index=False, border=0, table_id="references", classes="dataframe", escape=False,
    formatters={c: html.escape for c in appendix.columns if c != "link"}) + "</div>"))

# %% [markdown]
# ## Learned layer weights
#
# The weighted probe mixes all layers with learned softmax weights (as in SUPERB). Bars: each
# layer's weight, averaged over seeds within a round and then over rounds; whiskers: the
# smallest and largest round; dots: the rounds; dashed: uniform weights. Weights say where the
# probe reads, not how much a layer alone knows (the layer-wise probes say that), and layers of
# larger scale can take less weight for the same contribution.

# %%
from audioprobe.report import layer_weights as lw

weights = run.keyed_table(run.layer_weights)
if weights.empty:
    note("No weighted probe in this run (add one of `kind: weighted` to `probes`).")
else:
    names = {m: run.layer_names(m) for m in run.models}
    for dataset in [d for d in run.datasets if lw.multi_layer(weights, d)]:
        show(lw.figure(weights, dataset, MODEL_COLOURS, names), f"layer-weights-{dataset}",
             f"{dataset}: learned layer weights of the weighted probe, mean over rounds with "
             "their range.", f"bar charts of the layer weights on {dataset}, one per model")
    table(lw.entropy_table(weights), "layer-weights")

# %% [markdown]
# ## Probe training curves
#
# The validation (solid) and training (dotted) loss, epoch by epoch, of every round's chosen
# probe (seed 0, at the chosen grid point and layer); the dot marks the checkpoint kept. Red: a
# round that stopped at `max_epochs` (it may still have been learning: raise `max_epochs`) or
# whose best epoch was the first (the learning rate may be too high, or the features carry
# nothing the probe can use).

# %%
from audioprobe.report import training_curves as tc

curves = run.keyed_table(run.curves)
if not curves.empty:
    flags = tc.flag_table(curves)
    flagged = flags[(flags["stopped at max_epochs"] > 0) | (flags["best at first epoch"] > 0)]
    note(f"{len(flagged)} of {len(flags)} dataset × model × probe combinations have a flagged "
         "round." if len(flagged) else "No round stopped at `max_epochs` or at its first epoch.")
    last = int(flags["kept the last epoch run"].sum())
    if last:
        note(f"{last} of {int(flags['rounds'].sum())} rounds kept the last epoch they ran: their "
             "validation score stayed tied at its best while the loss still fell, and patience "
             "(counted from the last gain in score) ran out; a larger `protocol.patience` "
             "would train them longer.")
    for dataset in [d for d in run.datasets if d in set(curves["dataset"])]:
        show(tc.figure(curves, dataset, MODEL_COLOURS), f"training-curves-{dataset}",
             f"{dataset}: loss per epoch of each round's chosen probe (red: flagged).",
             f"small multiples of training and validation loss on {dataset}")
    folded(f"Epochs of the chosen probes ({len(flags)} combinations)", flags, "training-flags")

# %% [markdown]
# ## Label efficiency
#
# How much labelled data does a representation need? Each probe listed under
# `label_efficiency` is trained again on nested fractions of every round's training clips
# (whole groups, at least one clip of every class), with validation and test whole and every
# choice made per round on validation, on the same feature stores. Points: mean over rounds at
# each round's chosen layer; bands and brackets: the 95% interval of the summary table (over
# rounds; on a single split, over test groups with the probe held fixed). A fraction is what was
# asked for; each cell of the table gives the training clips it had (whole groups and every
# class make it more on small data).

# %%
from audioprobe.report import label_efficiency as le

if run.label_efficiency.empty:
    note("No label-efficiency run (set `label_efficiency.probes`).")
else:
    for dataset in [d for d in run.datasets if d in set(run.label_efficiency["dataset"])]:
        show(le.figure(run.label_efficiency, dataset, MODEL_COLOURS),
             f"label-efficiency-{dataset}",
             f"{dataset}: test score against the fraction of training clips, 95% intervals.",
             f"line chart of test score against training fraction on {dataset}")
    table(le.table(run.label_efficiency), "label-efficiency")

# %% [markdown]
# ## Layer similarity
#
# Do two models' layers carry the same information? Debiased linear CKA (Kornblith et al.,
# 2019, with the unbiased HSIC estimator) between every pair of layers of every model on the
# clips all their stores hold: 1 for representations equal up to rotation and scale, about 0
# for unrelated ones. Log-mel rows and columns compare each layer with the baseline. The table
# gives, for each pair of models, how well each layer of the first is matched by some layer of
# the second (the best CKA, averaged over the first model's layers).

# %%
from audioprobe.features.families import is_baseline
from audioprobe.report import layer_similarity as ls

similarity = {d: results.read_table(p) for d, p in run.similarity.items()}
baselines = [m for m in run.models if is_baseline(run.cards.get(m, {}))]
for dataset in [d for d in run.datasets if not similarity.get(d, pd.DataFrame()).empty]:
    show(ls.figure(similarity[dataset], run.models), f"layer-similarity-{dataset}",
         f"{dataset}: debiased linear CKA between every pair of layers "
         f"({int(similarity[dataset]['n_clips'].iloc[0])} clips); models in blocks, layers in "
         "order within each.", f"heatmap of layer similarity on {dataset}")
    table(ls.best_matches(similarity[dataset], baselines), f"layer-similarity-{dataset}")

# %% [markdown]
# ## Error analysis you can hear
#
# The test clips with the highest loss (mean over the rounds and seeds that tested them) of the
# best model and probe of each dataset (the highest headline mean), each with a spectrogram and
# the first seconds of its audio at 8 kHz. Off by default (`report.error_clips`); the number of
# clips is lowered where needed to keep the report under 10 MB.

# %%
from audioprobe.report import error_audio as ea

asked = int(run.config.get("report", {}).get("error_clips", 0))
if not asked:
    note("Off: set `report.error_clips` to list the highest-loss test clips with their audio.")
else:
    count = ea.clips_per_dataset(asked, len(run.datasets))
    if count < asked:
        note(f"{count} clips per dataset (of {asked} asked) keep the report under 10 MB.")
    for dataset in run.datasets if count else []:
        model, probe = ea.best_case(run.summary, dataset)
        if (dataset, model, probe) not in run.predictions:
            continue
        note(f"**{dataset}**: {model} ({probe} probe).")
        worst = ea.worst_clips(run.predictions_of(dataset, model, probe), count)
        display(HTML(ea.rows_html(worst, run.manifest(dataset))))

# %% [markdown]
# ## Reproduce this
#
# The commit, the software, the configuration as run, the data (each manifest's SHA-256) and
# the command. Every figure of this page is also in `results/report/figures/` as PNG, PDF and
# SVG; `results/supplement/` holds the models × datasets matrix as CSV and as a LaTeX table
# (booktabs) and BibTeX for every reference cited here.

# %%
from audioprobe.report import reproduce

display(HTML("<pre class='config'>" + html.escape(reproduce.block(
    run.config, results.git_commit(run.workflow), run.manifests,
    run_details()["packages"])) + "</pre>"))
figure_files.close()
