"""Setup and run details: datasets, models and probes as run; the hyperparameters each round
chose; the software and hardware of the jobs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from audioprobe.features.families import is_baseline
from audioprobe.report.formatting import layer_name, metric_name
from audioprobe.results import Run
from audioprobe.settings import probe_spec


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
        manifest = run.manifest(name)
        rows.append({
            "dataset": name,
            "adapter": spec["adapter"],
            "options": ", ".join(f"{k}={v}" for k, v in spec.get("options", {}).items()) or "–",
            "clips": len(manifest),
            "classes": manifest["label"].nunique(),
            "protocol": protocol_of(manifest),
            "headline metric": metric_name(run.headline_metric(name)),
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
        role = run.role(name)
        rows.append({
            "model": name,
            "family": card["family"],
            "checkpoint": card["model_id"],
            "revision": str(card["revision"]),
            "weights": {"baseline": "none (baseline)", "control": "random (control)"}.get(
                role, "pretrained"),
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
            "input": ("all layers, weighted (multi-layer models only)"
                      if spec["kind"] == "weighted" else "one layer"),
            "hidden layers": " × ".join(str(h) for h in hidden) or "–",
        })
    return pd.DataFrame(rows)


def run_facts(run: Run, commit: str | None) -> pd.DataFrame:
    """The workflow's commit and the protocol's seeds and search grid."""
    protocol = run.config.get("protocol", {})
    return pd.DataFrame([
        {"item": "workflow commit", "value": commit or "not a git checkout"},
        {"item": "seeds per round", "value": protocol.get("seeds", "–")},
        {"item": "learning rates searched",
         "value": ", ".join(map(str, protocol.get("learning_rates", [])))},
        {"item": "weight decays searched",
         "value": ", ".join(map(str, protocol.get("weight_decays", [])))},
        {"item": "max epochs (patience)",
         "value": f"{protocol.get('max_epochs', '–')} ({protocol.get('patience', '–')})"},
    ])


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
    return table.groupby(list(table.columns), sort=False).size().rename("jobs").reset_index()


def chosen_hyperparameters(run: Run) -> tuple[pd.DataFrame, str]:
    """Per dataset, model, probe and round: the layer, learning rate and weight decay the
    round chose on validation (seed 0's grid search; further seeds repeat it); and what the
    rows count, in words."""
    runs = run.runs
    if runs.empty or "chosen" not in runs:
        return pd.DataFrame(), ""
    chosen = runs[runs["chosen"].astype(bool)]
    chosen = chosen[chosen["seed"] == chosen["seed"].min()]
    columns = [c for c in ("dataset", "model", "probe", "fold", "layer", "lr", "weight_decay",
                           "epochs", "val_accuracy") if c in chosen]
    table = chosen[columns].drop_duplicates(["dataset", "model", "probe", "fold"])
    rounds = table[["dataset", "fold"]].drop_duplicates()
    what = (f"{len(table)} rows, one per dataset, model, probe and round: {len(rounds)} "
            f"evaluation rounds over {rounds['dataset'].nunique()} datasets")
    table = table.assign(layer=table["layer"].map(layer_name))
    return table.rename(columns={"fold": "round", "weight_decay": "weight decay",
                                 "lr": "learning rate", "val_accuracy": "val. accuracy"}), what
