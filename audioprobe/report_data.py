"""Data preparation for the report: read the workflow's outputs and turn them into tables.

The report source (``report/report.py``) imports this module and keeps to plotting and display.
Its inputs arrive through the ``AUDIOPROBE_REPORT_INPUTS`` environment variable, a JSON object
``{"paths": {...}, "config": {...}}`` written by :func:`audioprobe.report.render`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import classification_report, confusion_matrix

from audioprobe.features.store import Store, open_store
from audioprobe.report import INPUTS_VARIABLE
from audioprobe.tables import ALL_LAYERS

# Reference task names (report/reference_results.csv) of a dataset adapter and its options.
# Each function returns None when the reference tables hold no such task definition.
TASKS = {
    "esc50": lambda o: {"esc50": "ESC-50", "esc10": "ESC-10"}.get(o.get("subset", "esc50")),
    "urbansound8k": lambda o: "UrbanSound8K",
    "speechcommands": lambda o: {
        (1, "words"): "Speech Commands v1 (30)", (2, "words"): "Speech Commands v2 (35)",
        (1, "12"): "Speech Commands v1 (12)", (2, "12"): "Speech Commands v2 (12)",
    }.get((int(o.get("version", 2)), str(o.get("task", "words")))),
    "nsynth": lambda o: ("NSynth instrument family"
                         if o.get("label", "instrument_family_str") == "instrument_family_str"
                         else None),
    "icbhi": lambda o: ("ICBHI 2017 cycles (4 classes)" if o.get("task", "cycles") == "cycles"
                        else None),
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
}

# Reference protocols: the probe kind that matches this workflow's, and how they differ.
PROTOCOLS = {
    "evar-linear": ("linear", "EVAR: linear head on one fixed layer's mean-pooled embeddings; "
                              "here the layer is chosen on validation"),
    "superb": ("weighted", "SUPERB: learnable weighted sum of all layers, then a 256-d "
                           "projector and mean pooling in front of the linear head"),
    "hear2021-mlp": ("mlp", "HEAR 2021: MLP on scene embeddings with a grid search"),
    "xares-linear": (None, "X-ARES: LayerNorm + linear for 10 epochs; in k-fold mode the "
                           "held-out fold also selects the checkpoint"),
    "dataset-paper": (None, "baseline from the dataset paper, not a frozen-encoder probe"),
    "fine-tuned": (None, "fine-tuned end to end, not a frozen-encoder probe"),
}

# Workflow steps (benchmark folders) in the order they run.
STEPS = ["datasets", "manifests", "models", "features", "merge", "probes", "tables"]

SOFTWARE = ["audioprobe", "torch", "torchaudio", "transformers", "scikit-learn", "numpy",
            "pandas", "h5py", "snakemake", "matplotlib", "seaborn"]


@dataclass
class Run:
    """One workflow run's outputs, keyed by dataset, model and probe: ``summary`` the headline
    table, ``layers`` the descriptive per-layer curves."""

    summary: pd.DataFrame
    config: dict
    predictions: dict[tuple[str, str, str], Path]
    stores: dict[tuple[str, str], Path]
    rejected: dict[tuple[str, str], Path]
    manifests: dict[str, Path]
    cards: dict[str, dict]
    benchmarks: list[Path]
    references: pd.DataFrame
    figures: Path | None
    layers: pd.DataFrame = field(default_factory=pd.DataFrame)
    _stores: dict = field(default_factory=dict, repr=False)

    @property
    def datasets(self) -> list[str]:
        return [d for d in self.config["datasets"] if d in set(self.summary["dataset"])]

    @property
    def models(self) -> list[str]:
        return [m for m in self.config["models"] if m in set(self.summary["model"])]

    def store(self, dataset: str, model: str) -> Store:
        """The opened feature store of one dataset and model (opened once)."""
        if (dataset, model) not in self._stores:
            self._stores[dataset, model] = open_store(self.stores[dataset, model])
        return self._stores[dataset, model]

    def predictions_of(self, dataset: str, model: str, probe: str) -> pd.DataFrame:
        """Test predictions of the selected layer, every fold and seed."""
        return pd.read_csv(self.predictions[dataset, model, probe],
                           dtype={"clip_id": str, "label": str, "prediction": str})


def load(environ: dict | None = None) -> Run:
    """Read the report inputs named in ``AUDIOPROBE_REPORT_INPUTS``."""
    spec = json.loads((environ or os.environ)[INPUTS_VARIABLE])
    paths, config = spec["paths"], spec["config"]
    return Run(
        summary=pd.read_csv(paths["summary"]),
        layers=pd.read_csv(paths["layers"]),
        config=config,
        predictions={(Path(p).parts[-3], Path(p).parts[-2], Path(p).stem): Path(p)
                     for p in paths["predictions"]},
        stores={(Path(p).parent.name, Path(p).stem): Path(p) for p in paths["stores"]},
        rejected={(Path(p).parent.name, Path(p).name.removesuffix(".rejected.csv")): Path(p)
                  for p in paths["rejected"]},
        manifests={Path(p).stem: Path(p) for p in paths["manifests"]},
        cards={Path(p).stem: json.loads(Path(p).read_text()) for p in paths["cards"]},
        benchmarks=[Path(p) for p in paths["benchmarks"]],
        references=read_references(paths["references"]),
        figures=Path(paths["figures"]) if paths.get("figures") else None,
    )


def read_references(path: str | Path) -> pd.DataFrame:
    """The published reference numbers, as written (strings keep their published digits)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


# Number formatting ---------------------------------------------------------------------------

def sig(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits ("–" when missing)."""
    if value is None or not math.isfinite(value):
        return "–"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:#.{digits}g}".rstrip(".")


def mean_std(mean: float, std: float) -> str:
    return f"{sig(mean)} ± {sig(std)}"


def interval(low: float, high: float) -> str:
    """A confidence interval from its bounds."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "–"
    return f"[{sig(low)}, {sig(high)}]"


def layer_name(layer: int) -> str:
    """A layer number, or "all" for the weighted probe's rows."""
    return "all" if layer == ALL_LAYERS else str(int(layer))


def layers_name(chosen: str) -> str:
    """Each round's chosen layer (the summary's ``chosen_layers``), in round order."""
    return ", ".join(layer_name(int(k)) for k in str(chosen).split(";"))


def duration(seconds: float) -> str:
    """Seconds as h:mm:ss."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# Run summary ---------------------------------------------------------------------------------

def protocol_of(manifest: pd.DataFrame) -> str:
    """Folds or official splits of a manifest, with their sizes."""
    if manifest["fold"].notna().all():
        counts = manifest["fold"].astype(int).value_counts().sort_index()
        return f"{len(counts)} folds ({', '.join(str(n) for n in counts)} clips)"
    counts = manifest["split"].value_counts()
    return "splits: " + ", ".join(f"{s} {counts.get(s, 0)}" for s in ("train", "valid", "test"))


def read_manifest(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"clip_id": str, "label": str, "split": str, "group": str},
                       keep_default_na=False, na_values={"fold": [""], "start": [""],
                                                          "end": [""]})


def dataset_table(run: Run) -> pd.DataFrame:
    """One row per dataset: adapter, options, clips, classes and evaluation protocol."""
    rows = []
    for name in run.datasets:
        spec = run.config["datasets"][name]
        manifest = read_manifest(run.manifests[name])
        classes = sorted(manifest["label"].unique())
        rows.append({
            "dataset": name,
            "adapter": spec["adapter"],
            "options": ", ".join(f"{k}={v}" for k, v in spec.get("options", {}).items()) or "–",
            "clips": len(manifest),
            "classes": len(classes),
            "class names": ", ".join(classes[:12]) + (" …" if len(classes) > 12 else ""),
            "protocol": protocol_of(manifest),
        })
    return pd.DataFrame(rows)


def parameter_count(card: dict) -> int | None:
    """Parameters of a model from its safetensors headers (0 for log-mel; None if unknown)."""
    if card["family"] == "logmel":
        return 0
    files = sorted(Path(card["path"]).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        with open(path, "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        total += sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
    return total


def model_table(run: Run) -> pd.DataFrame:
    """One row per model: family, checkpoint, revision, parameters, layers and pooling."""
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
            "weights": ("none (weight-free)" if card["family"] == "logmel" else
                        "random (control)" if card.get("random_weights") else "pretrained"),
            "parameters": "–" if count is None else f"{count:,}",
            "layers": int(attrs["n_layers"]),
            "pooling": attrs["pooling"],
            "sample rate (Hz)": int(attrs["sample_rate"]),
        })
    return pd.DataFrame(rows)


def probe_table(config: dict) -> pd.DataFrame:
    """One row per probe, with the training protocol shared by all of them."""
    protocol = config["protocol"]
    return pd.DataFrame([{
        "probe": name,
        "kind": spec["kind"],
        "input": "all layers, weighted" if spec["kind"] == "weighted" else "one layer",
        "hidden layers": (" × ".join(str(h) for h in spec.get("hidden", [256, 256]))
                          if spec["kind"] == "mlp" else "–"),
        "dropout": spec.get("dropout", 0.0),
        "batch norm": "yes" if spec.get("batch_norm") else "no",
        "seeds": protocol["seeds"],
        "learning rates": ", ".join(str(v) for v in protocol["learning_rates"]),
        "weight decays": ", ".join(str(v) for v in protocol["weight_decays"]),
        "max epochs (patience)": f"{protocol['max_epochs']} ({protocol['patience']})",
    } for name, spec in config["probes"].items()])


def software_versions() -> pd.DataFrame:
    """Versions of Python and the packages the results depend on."""
    rows = [{"package": "python", "version": platform.python_version()}]
    for name in SOFTWARE:
        try:
            rows.append({"package": name, "version": version(name)})
        except PackageNotFoundError:
            rows.append({"package": name, "version": "not installed"})
    return pd.DataFrame(rows)


def hardware() -> pd.DataFrame:
    """CPU and GPU of the host that renders the report."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    gpus = "none found"
    if shutil.which("nvidia-smi"):
        result = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total",
                                 "--format=csv,noheader"], capture_output=True, text=True)
        gpus = "; ".join(line.strip() for line in result.stdout.splitlines()
                         if line.strip()) or gpus
    return pd.DataFrame([
        {"item": "CPU", "value": f"{cpu} ({os.cpu_count()} logical cores)"},
        {"item": "GPU", "value": gpus},
        {"item": "OS", "value": f"{platform.system()} {platform.release()}"},
        {"item": "Python executable", "value": sys.executable},
    ])


# Leaderboard and references ------------------------------------------------------------------

def selected(summary: pd.DataFrame) -> pd.DataFrame:
    """The headline rows (each round at its own chosen layer), one per dataset, model and
    probe."""
    return summary.reset_index(drop=True)


def leaderboard(summary: pd.DataFrame) -> pd.DataFrame:
    """Display table: per dataset, model and probe, each round at its chosen layer, best first;
    the ICBHI score too when a dataset has one."""
    rows = selected(summary).sort_values(["dataset", "accuracy_mean"], ascending=[True, False])
    extra = {}
    if "icbhi_score_mean" in rows and rows["icbhi_score_mean"].notna().any():
        extra["ICBHI score (mean ± std)"] = [mean_std(m, s) for m, s in
                                             zip(rows["icbhi_score_mean"],
                                                 rows["icbhi_score_sd"])]
    return pd.DataFrame({
        "dataset": rows["dataset"],
        "model": rows["model"],
        "probe": rows["probe"],
        "layer per round": rows["chosen_layers"].map(layers_name),
        "accuracy (mean ± std)": [mean_std(m, s) for m, s in
                                  zip(rows["accuracy_mean"], rows["accuracy_sd"])],
        "accuracy 95% CI": [interval(lo, hi) for lo, hi in
                            zip(rows["accuracy_ci_low"], rows["accuracy_ci_high"])],
        "macro-F1 (mean ± std)": [mean_std(m, s) for m, s in
                                  zip(rows["macro_f1_mean"], rows["macro_f1_sd"])],
        "macro-F1 95% CI": [interval(lo, hi) for lo, hi in
                            zip(rows["macro_f1_ci_low"], rows["macro_f1_ci_high"])],
        **extra,
        "val. accuracy": [sig(v) for v in rows["val_accuracy_mean"]],
        "rounds × seeds": [f"{f} × {s}" for f, s in zip(rows["n_rounds"], rows["n_seeds"])],
        "interval": rows["interval"],
    }).reset_index(drop=True)


def best_configuration(summary: pd.DataFrame, dataset: str) -> pd.Series:
    """The model and probe with the best validation accuracy on ``dataset``; ``layer`` is the
    layer most rounds chose."""
    rows = selected(summary)
    rows = rows[rows["dataset"] == dataset]
    best = rows.loc[rows["val_accuracy_mean"].idxmax()]
    return pd.concat([best, pd.Series({"layer": best["modal_layer"]})])


def reference_task(spec: dict) -> str | None:
    """The reference task name of a dataset spec, or None when no reference covers it."""
    rule = TASKS.get(spec["adapter"])
    return rule(spec.get("options", {})) if rule else None


def reference_comparison(run: Run) -> pd.DataFrame:
    """Reference numbers next to this run's, for every dataset, model and probe.

    A row without a reference says so; ``protocol`` tells whether the reference's protocol
    matches this run's probe or how it differs. This run's number is the reference's metric
    (accuracy, or the ICBHI score) in percent.
    """
    rows = []
    for _, row in selected(run.summary).iterrows():
        task = reference_task(run.config["datasets"][row["dataset"]])
        names = MODELS.get(run.cards[row["model"]]["model_id"], [])
        kind = run.config["probes"][row["probe"]]["kind"]
        refs = run.references[(run.references["task"] == task)
                              & run.references["model"].isin(names)]
        base = {"dataset": row["dataset"], "model": row["model"], "probe": row["probe"],
                "task": task or "–"}
        if refs.empty:
            rows.append(base | {"metric": "accuracy",
                                "this run (%)": sig(100 * row["accuracy_mean"]),
                                "reference": "no reference for this model/task",
                                "source": "–", "reference (%)": "–", "protocol": "–"})
        for _, ref in refs.iterrows():
            match, description = PROTOCOLS[ref["protocol"]]
            rows.append(base | {
                "metric": ref["metric"],
                "this run (%)": sig(100 * row.get(f"{ref['metric']}_mean", float("nan"))),
                "reference": ref["model"],
                "source": ref["source"],
                "reference (%)": published(ref),
                "protocol": ("same probe type" if match == kind
                             else f"protocol differs: {description}"),
            })
    return pd.DataFrame(rows)


def published(reference: pd.Series) -> str:
    """A reference number as published: value, and ± std when given."""
    return reference["value"] + (f" ± {reference['std']}" if reference["std"] else "")


def reference_overview(references: pd.DataFrame) -> pd.DataFrame:
    """References as one row per protocol and model, one column per task (percent)."""
    table = references.assign(number=references.apply(published, axis=1),
                              task=references["task"] + references["metric"].map(
                                  lambda m: "" if m == "accuracy" else f" [{m}]"))
    wide = table.pivot_table(index=["protocol", "model"], columns="task",
                             values="number", aggfunc="first", sort=False)
    wide = wide.reindex(columns=list(dict.fromkeys(table["task"]))).fillna("")
    return wide.rename_axis(columns=None).reset_index()


def reference_protocols(references: pd.DataFrame) -> pd.DataFrame:
    """The protocols of ``references``: their sources and how they differ from this workflow."""
    return pd.DataFrame([{
        "protocol": name,
        "sources": "; ".join(dict.fromkeys(
            references.loc[references["protocol"] == name, "source"])),
        "difference": description,
    } for name, (_, description) in PROTOCOLS.items() if name in set(references["protocol"])])


def task_references(run: Run) -> pd.DataFrame:
    """Every reference for the tasks of this run's datasets (any model), for context."""
    tasks = {reference_task(run.config["datasets"][d]) for d in run.datasets} - {None}
    return run.references[run.references["task"].isin(tasks)].reset_index(drop=True)


# Per dataset ---------------------------------------------------------------------------------

def class_report(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per-class precision, recall, F1 and support, pooled over folds and seeds."""
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
    """One row per test clip: label, most frequent prediction, share of seeds right, mean loss."""
    frame = predictions.assign(correct=predictions["label"] == predictions["prediction"])
    grouped = frame.groupby("clip_id", sort=False)
    return pd.DataFrame({
        "label": grouped["label"].first(),
        "prediction": grouped["prediction"].agg(lambda s: s.value_counts().index[0]),
        "predictions": grouped["prediction"].agg(lambda s: ", ".join(sorted(set(s)))),
        "share correct": grouped["correct"].mean(),
        "mean loss": grouped["loss"].mean(),
        "fold": grouped["fold"].first(),
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
        "fold": rows["fold"],
    }).reset_index(drop=True)


def layer_features(store: Store, layer: int) -> np.ndarray:
    """Features of one layer, or of all layers side by side for the weighted probe."""
    if layer == ALL_LAYERS:
        return np.concatenate([store.layer(k) for k in range(store.n_layers)], axis=1)
    return store.layer(layer)


def embedding_2d(features: np.ndarray, max_points: int = 2000,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """A 2-D map of ``features`` (UMAP when installed, else t-SNE) of at most ``max_points``
    rows; returns the points, the row indices used and the method's name."""
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(features), min(max_points, len(features)), replace=False))
    x = StandardScaler().fit_transform(features[rows])
    if find_spec("umap"):
        import umap

        return umap.UMAP(random_state=seed).fit_transform(x), rows, "UMAP"
    from sklearn.manifold import TSNE

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
    max_seconds = run.config.get("extraction", {}).get("max_seconds", 30.0)
    rows = []
    for model in run.models:
        meta = run.store(dataset, model).meta
        rejected = rejected_of(run, dataset, model)
        rows.append({
            "model": model,
            "clips in manifest": len(manifest),
            "kept": len(meta),
            "padded (shorter than the model's minimum input)": int(meta["padded"].sum()),
            f"windowed (longer than {sig(max_seconds)} s)": int(
                (meta["duration"] > max_seconds).sum()),
            "rejected": len(rejected),
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

def _extraction_per_store(table: pd.DataFrame, run: Run) -> pd.DataFrame:
    """Sum the shard jobs of each feature store (job dataset/model/shard) into one row with
    its throughput; other steps pass through."""
    shards = table["step"] == "features"
    if not shards.any():
        return table
    jobs = table[shards].assign(job=table.loc[shards, "job"].str.rsplit("/", n=1).str[0])
    merged = jobs.groupby("job", as_index=False).agg(
        {"step": "first", "wall time (s)": "sum", "max RSS (MB)": "max"})
    for i, job in merged["job"].items():
        dataset, model = job.split("/")
        meta = run.store(dataset, model).meta
        merged.loc[i, "clips"] = len(meta)
        merged.loc[i, "clips / s"] = len(meta) / merged.loc[i, "wall time (s)"]
        merged.loc[i, "audio s / s"] = meta["duration"].sum() / merged.loc[i, "wall time (s)"]
    return pd.concat([table[~shards], merged], ignore_index=True)


def benchmark_table(run: Run) -> pd.DataFrame:
    """One row per job with a benchmark file: step, job, wall time, peak memory, throughput."""
    rows = []
    for path in run.benchmarks:
        parts = path.with_suffix("").parts
        index = len(parts) - 1 - parts[::-1].index("benchmarks")
        step, job = parts[index + 1], "/".join(parts[index + 2:])
        bench = pd.read_csv(path, sep="\t")
        seconds = float(pd.to_numeric(bench["s"], errors="coerce").mean())
        row = {"step": step, "job": job, "wall time (s)": seconds,
               "max RSS (MB)": float(pd.to_numeric(bench["max_rss"], errors="coerce").max())}
        rows.append(row)
    columns = ["step", "job", "wall time (s)", "max RSS (MB)", "clips", "clips / s",
               "audio s / s"]
    table = _extraction_per_store(pd.DataFrame(rows), run).reindex(columns=columns)
    order = table["step"].map({s: i for i, s in enumerate(STEPS)}).fillna(len(STEPS))
    return table.assign(order=order).sort_values(["order", "job"]).drop(columns="order")
