"""A synthetic study in the workflow's output formats, to render the report at scale.

Six datasets, four models (two pretrained 13-layer encoders, a random-weights control, the
log-mel baseline) and three probes by default: manifests, feature stores, rejected clips, model
cards, manifest notes, per-job benchmarks and logs, and the tables of ``results/tables``
(runs, summary, layers, comparisons) with the predictions. Scores follow smooth per-layer curves
with noise per round; each round chooses its layer on validation. Nothing here is a measured
result. Run ``python -m audioprobe.synthetic_study OUT`` to write a study and render its report.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from scipy import stats

from audioprobe import statistics
from audioprobe.features.families import family
from audioprobe.features.store import open_store
from audioprobe.joblog import run_details
from audioprobe.layer_similarity import layer_similarity
from audioprobe.manifest import COLUMNS
from audioprobe.tables import (ALL_LAYERS, FLIP_TEST, KFOLD_INTERVAL, RELATIONS, SPLIT_INTERVAL,
                               T_TEST, layer_curves)

# name: adapter, options, classes, rounds (0: official train/valid/test split), headline metric
DATASETS = {
    "esc10": ("esc50", {"subset": "esc10"}, 10, 5, "accuracy"),
    "urbansound8k": ("urbansound8k", {}, 10, 10, "accuracy"),
    "speechcommands": ("speechcommands", {"version": 1, "task": "12"}, 12, 0, "accuracy"),
    "nsynth": ("nsynth", {}, 11, 0, "accuracy"),
    "librispeech": ("librispeech", {}, 20, 0, "accuracy"),
    "icbhi": ("icbhi", {}, 4, 0, "balanced_accuracy"),
}
# name: family, checkpoint, layers, quality, random weights
MODELS = {
    "hubert": ("transformers", "facebook/hubert-base-ls960", 13, 0.9, False),
    "wav2vec2": ("transformers", "facebook/wav2vec2-base", 13, 0.8, False),
    "hubert_random": ("transformers", "facebook/hubert-base-ls960", 13, 0.25, True),
    "logmel": ("logmel", "logmel", 1, 0.35, False),
}
PROBES = {"linear": {"kind": "linear"}, "mlp": {"kind": "mlp", "hidden": [256, 256]},
          "weighted": {"kind": "weighted"}}
METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
SEEDS = 2
COMPARISON_COLUMNS = ["dataset", "probe", "metric", "model_a", "model_b", "relation", "mean_a",
                      "mean_b", "difference", "ci_low", "ci_high", "p_value", "test", "n",
                      "p_holm"]


def config(datasets: list[str], models: list[str], probes: list[str]) -> dict:
    """The study's configuration, shaped as the workflow's validated config."""
    return {
        "datasets": {d: {"adapter": DATASETS[d][0], "options": DATASETS[d][1],
                         "root": f"resources/datasets/{d}"} for d in datasets},
        "models": {m: {"family": MODELS[m][0], "checkpoint": MODELS[m][1],
                       **({"random_weights": True} if MODELS[m][4] else {})} for m in models},
        "probes": {p: PROBES[p] for p in probes},
        "protocol": {"seeds": SEEDS, "learning_rates": [0.001, 0.0001],
                     "weight_decays": [0.0, 0.01], "max_epochs": 100, "patience": 5},
        "extraction": {"max_seconds": 30.0, "pooling": "mean", "shard_size": 2000},
    }


def _curve(rng: np.random.Generator, n_layers: int, quality: float, base: float,
           peak: float) -> np.ndarray:
    """A smooth accuracy-by-layer curve peaking at relative depth ``peak``."""
    depth = np.linspace(0, 1, n_layers)
    bump = np.exp(-((depth - peak) / 0.3) ** 2)
    return np.clip(base + (0.97 - base) * quality * (0.55 + 0.45 * bump)
                   + rng.normal(0, 0.005, n_layers), 0.02, 0.99)


def _manifest(rng: np.random.Generator, dataset: str, clips: int) -> pd.DataFrame:
    _, _, classes, rounds, _ = DATASETS[dataset]
    labels = [f"class_{i % classes:02d}" for i in range(clips)]
    rows = pd.DataFrame({"clip_id": [f"{dataset}-{i:04d}" for i in range(clips)],
                         "label": labels, "group": [f"g{i:04d}" for i in range(clips)]})
    rows["path"] = rows["clip_id"] + ".wav"
    rows["start"], rows["end"] = np.nan, np.nan
    if rounds:
        rows["fold"] = (np.arange(clips) // classes) % rounds + 1  # every class in every fold
        rows["split"] = ""
    else:
        rows["fold"] = np.nan
        rows["split"] = rng.choice(["train", "valid", "test"], clips, p=[0.6, 0.2, 0.2])
    return rows[COLUMNS]


def _store(path: Path, rng: np.random.Generator, manifest: pd.DataFrame, curve: np.ndarray,
           model: str, dim: int = 16) -> None:
    """Features whose class separation follows the model's per-layer curve."""
    classes = sorted(manifest["label"].unique())
    index = manifest["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    centres = rng.normal(0, 1, (len(classes), dim))
    features = np.stack([centres[index] * 2.5 * s + rng.normal(0, 1, (len(manifest), dim))
                         for s in curve]).astype("float32")
    text = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f["features"] = features
        for column in ("clip_id", "label", "split", "group"):
            f.create_dataset(column, data=manifest[column].astype(str).to_numpy(dtype=object),
                             dtype=text)
        f["fold"] = manifest["fold"].fillna(0).astype(int).to_numpy()
        f["duration"] = rng.uniform(1, 5, len(manifest))
        f["padded"] = np.zeros(len(manifest), bool)
        f.attrs.update({"dataset": manifest["clip_id"].iloc[0].split("-")[0], "model": model,
                        "n_layers": len(curve), "pooling": "mean", "sample_rate": 16000,
                        "family": MODELS[model][0], "complete": True,
                        "layer_names": family(MODELS[model][0]).layer_names(len(curve))})


def _rounds(manifest: pd.DataFrame) -> list[int]:
    folds = manifest["fold"].dropna()
    return sorted(folds.astype(int).unique()) if len(folds) == len(manifest) else [0]


def _interval(scores: np.ndarray, n_test: int, n_train: int) -> tuple[float, float, str]:
    """A 95% interval of the mean over rounds (Nadeau-Bengio corrected t) or, with one round,
    a normal interval over test clips."""
    n, mean = len(scores), float(scores.mean())
    if n == 1:
        half = 1.96 * np.sqrt(mean * (1 - mean) / n_test)
        text = f"{SPLIT_INTERVAL}, normal approximation over {n_test} test clips, n=1 split"
        return mean - half, mean + half, text
    estimate = statistics.corrected_t(scores, n_test / n_train, bounds=(0, 1))
    return estimate.low, estimate.high, f"{KFOLD_INTERVAL}, Nadeau-Bengio corrected t, n={n} rounds"


def _probe_results(rng, dataset, model, probe, curve, rounds, n_test, n_train):
    """Per layer, round and seed: validation and test scores; each round's chosen layer."""
    layers = [ALL_LAYERS] if probe == "weighted" else list(range(len(curve)))
    level = {ALL_LAYERS: curve.max() + 0.01} if probe == "weighted" else dict(enumerate(curve))
    shift = {"linear": 0.0, "mlp": 0.015, "weighted": 0.0}[probe]
    rows = []
    for round_ in rounds:
        round_noise = rng.normal(0, 0.015)
        val = {k: np.clip(level[k] + shift + round_noise + rng.normal(0, 0.012), 0, 1)
               for k in layers}
        chosen = max(val, key=val.get)
        for k in layers:
            for seed in range(SEEDS):
                test = float(np.clip(level[k] + shift + round_noise + rng.normal(0, 0.006), 0, 1))
                rows.append({"dataset": dataset, "model": model, "probe": probe, "layer": k,
                             "fold": round_, "seed": seed, "lr": 0.001,
                             "weight_decay": [0.0, 0.01][int(rng.integers(2))],
                             "epochs": int(rng.integers(8, 40)),
                             "selection_metric": "accuracy", "val_score": float(val[k]),
                             "val_accuracy": float(val[k] + rng.normal(0, 0.003)),
                             "n_train": n_train, "n_valid": n_test, "n_test": n_test,
                             "accuracy": test, "balanced_accuracy": test - 0.01,
                             "macro_f1": test - 0.02, "top5_accuracy": min(1.0, test + 0.1),
                             "chosen": k == chosen})
    return rows


def _summaries(runs: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """summary.csv and layers.csv rows of one dataset x model x probe."""
    per_round = runs.groupby(["fold", "layer"], as_index=False).mean(numeric_only=True)
    key = runs.iloc[0][["dataset", "model", "probe"]].to_dict()
    chosen = per_round[per_round["chosen"] > 0].sort_values("fold")
    layers_chosen = chosen["layer"].astype(int).tolist()
    modal = max(set(layers_chosen), key=layers_chosen.count)
    n_test, n_train = int(runs["n_test"].iloc[0]), int(runs["n_train"].iloc[0])
    summary = key | {"n_rounds": len(chosen), "n_seeds": SEEDS,
                     "chosen_layers": ";".join(map(str, layers_chosen)), "modal_layer": modal,
                     "modal_rounds": layers_chosen.count(modal), "headline_metric": metric}
    for m in METRICS:
        scores = chosen[m].to_numpy()
        low, high, text = _interval(scores, n_test, n_train)
        seed_sd = runs[runs["chosen"]].groupby("fold")[m].std().mean()
        summary |= {f"{m}_mean": scores.mean(), f"{m}_sd": scores.std(ddof=1) if len(scores) > 1
                    else np.nan, f"{m}_ci_low": low, f"{m}_ci_high": high, f"{m}_seed_sd": seed_sd}
        summary["interval"] = text
    summary["val_accuracy_mean"] = chosen["val_accuracy"].mean()
    summary["selection_metric"] = "accuracy"
    summary["val_score_mean"] = chosen["val_score"].mean()
    return pd.DataFrame([summary]), layer_curves(runs)


def _compare(dataset, probe, metric, a, b, relation, scores, n_test, n_train):
    difference = scores[a] - scores[b]
    n = len(difference)
    if n > 1:
        estimate = statistics.corrected_t(difference, n_test / n_train, bounds=(-1, 1))
        low, high, p = estimate.low, estimate.high, estimate.p_value
        test = T_TEST
    else:
        se = np.sqrt(2 * 0.25 / n_test)
        p = 2 * stats.norm.sf(abs(difference.mean()) / se)
        low, high = difference.mean() - 1.96 * se, difference.mean() + 1.96 * se
        test = FLIP_TEST
    return {"dataset": dataset, "probe": probe, "metric": metric, "model_a": a, "model_b": b,
            "relation": relation, "mean_a": scores[a].mean(), "mean_b": scores[b].mean(),
            "difference": difference.mean(), "ci_low": low, "ci_high": high, "p_value": p,
            "test": test, "n": n}


def _comparisons(summary: pd.DataFrame, runs: pd.DataFrame, n_test: dict,
                 n_train: dict) -> pd.DataFrame:
    rows = []
    for dataset, part in summary.groupby("dataset", sort=False):
        metric = part["headline_metric"].iloc[0]
        chosen = runs[(runs["dataset"] == dataset) & runs["chosen"]]
        for probe, rows_of_probe in part.groupby("probe", sort=False):
            scores = {m: g.groupby("fold")[metric].mean().to_numpy()
                      for m, g in chosen[chosen["probe"] == probe].groupby("model")}
            pairs = [(m, f"{m}_random", RELATIONS[0]) for m in scores
                     if f"{m}_random" in scores]
            pairs += [(m, "logmel", RELATIONS[1]) for m in scores
                      if MODELS[m][0] != "logmel" and "logmel" in scores]
            models = list(scores)
            pairs += [(a, b, RELATIONS[2]) for i, a in enumerate(models) for b in models[i + 1:]]
            seen = set()
            for a, b, relation in pairs:  # each pair once, as the workflow's tables do
                if frozenset((a, b)) not in seen:
                    seen.add(frozenset((a, b)))
                    rows.append(_compare(dataset, probe, metric, a, b, relation, scores,
                                         n_test[dataset], n_train[dataset]))
    table = pd.DataFrame(rows, columns=[*COMPARISON_COLUMNS[:-1]])
    table["p_holm"] = table.groupby("dataset")["p_value"].transform(_holm)
    return table


def _holm(p: pd.Series) -> pd.Series:
    order = np.argsort(p.to_numpy())
    adjusted = np.maximum.accumulate((len(p) - np.arange(len(p))) * p.to_numpy()[order])
    out = np.empty(len(p))
    out[order] = np.minimum(adjusted, 1)
    return pd.Series(out, index=p.index)


def _predictions(rng, manifest, runs, classes) -> pd.DataFrame:
    chosen = runs[runs["chosen"]]
    rows = []
    for (round_, seed), part in chosen.groupby(["fold", "seed"]):
        test = (manifest[manifest["fold"] == round_] if round_ else
                manifest[manifest["split"] == "test"])
        p_right = float(part["accuracy"].iloc[0])
        right = rng.random(len(test)) < p_right
        wrong = rng.choice(classes, len(test))
        prediction = np.where(right, test["label"], wrong)
        rows.append(pd.DataFrame({"clip_id": test["clip_id"].to_numpy(),
                                  "layer": int(part["layer"].iloc[0]), "fold": round_,
                                  "seed": seed, "label": test["label"].to_numpy(),
                                  "prediction": prediction,
                                  "loss": np.where(right, rng.uniform(0.01, 0.7, len(test)),
                                                   rng.uniform(0.7, 4, len(test)))}))
    return pd.concat(rows, ignore_index=True)


def _job(folder: Path, rule: str, job: str, seconds: float, details: dict) -> dict:
    benchmark = folder / "benchmarks" / rule / f"{job}.tsv"
    log = folder / "logs" / rule / f"{job}.log"
    for path in (benchmark, log):
        path.parent.mkdir(parents=True, exist_ok=True)
    benchmark.write_text(f"s\th:m:s\tmax_rss\n{seconds:.2f}\t0:00:00\t{200 + seconds:.1f}\n")
    log.write_text(f"2026-01-01 00:00:00,000 INFO audioprobe.joblog: run details: "
                   f"{json.dumps(details)}\n")
    return {"rule": rule, "job": job or rule, "benchmark": str(benchmark), "log": str(log)}


def _curves(rng: np.random.Generator, rows: pd.DataFrame, max_epochs: int = 100,
            patience: int = 5) -> pd.DataFrame:
    """Per-epoch losses and accuracies of each round's chosen probe (seed 0), decaying towards
    its checkpoint and running ``patience`` epochs past it."""
    frames = []
    for row in rows[rows["chosen"] & (rows["seed"] == 0)].itertuples():
        epochs = np.arange(1, min(row.epochs + patience, max_epochs) + 1)
        decay = np.exp(-epochs / max(row.epochs / 3, 1))
        valid = 0.4 + 1.6 * decay + np.maximum(0, epochs - row.epochs) * 0.02
        frames.append(pd.DataFrame({
            "probe": row.probe, "fold": row.fold, "layer": row.layer, "seed": 0, "lr": row.lr,
            "weight_decay": row.weight_decay, "epoch": epochs,
            "train_loss": 0.2 + 1.8 * decay + rng.normal(0, 0.01, len(epochs)),
            "train_accuracy": np.clip(1 - 0.9 * decay, 0, 1),
            "valid_loss": valid, "valid_accuracy": np.clip(0.95 - 0.85 * decay, 0, 1),
            "chosen_epoch": row.epochs, "stopped_at_max_epochs": epochs[-1] >= max_epochs,
            "best_at_first_epoch": row.epochs == 1}))
    return pd.concat(frames, ignore_index=True)


def _layer_weights(rng: np.random.Generator, probe: str, curve: np.ndarray,
                   rounds: list[int]) -> pd.DataFrame:
    """Softmax layer weights of every round and seed, leaning towards the better layers."""
    rows = []
    for fold in rounds:
        for seed in range(SEEDS):
            logits = 3 * (curve - curve.mean()) + rng.normal(0, 0.1, len(curve))
            weights = np.exp(logits) / np.exp(logits).sum()
            rows += [{"probe": probe, "fold": fold, "seed": seed, "layer": k, "weight": w}
                     for k, w in enumerate(weights)]
    return pd.DataFrame(rows)


def _label_efficiency(one: pd.Series, metric: str, fractions: tuple[float, ...] = (
        0.01, 0.05, 0.1, 1.0)) -> list[dict]:
    """The summary's score at fraction 1 and lower scores below it, with the same spread."""
    full, chance = one[f"{metric}_mean"], 0.1
    return [{"dataset": one["dataset"], "model": one["model"], "probe": one["probe"],
             "fraction": f, "n_train_mean": 0, "n_rounds": one["n_rounds"], "metric": metric,
             "mean": chance + (full - chance) * f ** 0.25, "sd": one[f"{metric}_sd"],
             "ci_low": chance + (one[f"{metric}_ci_low"] - chance) * f ** 0.25,
             "ci_high": chance + (one[f"{metric}_ci_high"] - chance) * f ** 0.25,
             "modal_layer": one["modal_layer"], "interval": one["interval"]}
            for f in fractions]


def write_study(folder: Path, datasets: list[str] | None = None,
                models: list[str] | None = None, probes: list[str] | None = None,
                clips: int = 240, seed: int = 0) -> tuple[dict, dict]:
    """Write a synthetic study under ``folder``; return the report's keyed files and config."""
    datasets = datasets or list(DATASETS)
    models = models or list(MODELS)
    probes = probes or list(PROBES)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    gpu_node = run_details() | {"host": "gpu-node-01 (synthetic)",
                                "gpu": "NVIDIA H100 80GB HBM3 (synthetic)"}
    files = {k: [] for k in ("predictions", "stores", "rejected", "manifests", "notes",
                             "cards", "jobs", "curves", "layer_weights", "similarity")}
    runs, summary, layers, n_test, n_train, efficiency = [], [], [], {}, {}, []
    for model in models:
        family, checkpoint, n_layers, _, random_weights = MODELS[model]
        card = folder / "resources/models" / f"{model}.json"
        card.parent.mkdir(parents=True, exist_ok=True)
        card.write_text(json.dumps({"family": family, "model_id": checkpoint,
                                    "revision": "synthetic", "random_weights": random_weights}))
        files["cards"].append({"model": model, "path": str(card)})
        files["jobs"].append(_job(folder, "fetch_model", model, 5, run_details()))
    for d_index, dataset in enumerate(datasets):
        _, _, n_classes, _, metric = DATASETS[dataset]
        manifest = _manifest(rng, dataset, clips)
        base = folder / "results/manifests" / dataset
        base.parent.mkdir(parents=True, exist_ok=True)
        manifest.to_csv(f"{base}.csv", index=False)
        files["manifests"].append({"dataset": dataset, "path": f"{base}.csv"})
        notes = {"notes": ["synthetic study: clips, features and scores are simulated"],
                 "comparable": dataset != "icbhi"}
        if dataset == "icbhi":
            notes["notes"].append("split by patient instead of the official 60/40 split")
            notes["leakage_exceptions"] = {"patient 101": "recordings in train and in test"}
        Path(f"{base}.notes.json").write_text(json.dumps(notes))
        files["notes"].append({"dataset": dataset, "path": f"{base}.notes.json"})
        files["jobs"].append(_job(folder, "manifest", dataset, 2, run_details()))
        rounds = _rounds(manifest)
        if rounds == [0]:
            n_test[dataset] = int((manifest["split"] == "test").sum())
            n_train[dataset] = int((manifest["split"] == "train").sum())
        else:
            n_test[dataset] = clips // len(rounds)
            n_train[dataset] = clips - 2 * n_test[dataset]
        classes = sorted(manifest["label"].unique())
        base_score = 1 / n_classes
        peak = rng.uniform(0.3, 0.8)
        for model in models:
            _, _, n_layers, quality, _ = MODELS[model]
            curve = _curve(rng, n_layers, quality * rng.uniform(0.85, 1.0), base_score,
                           peak + rng.normal(0, 0.08))
            store = folder / "results/features" / dataset / f"{model}.h5"
            store.parent.mkdir(parents=True, exist_ok=True)
            rejected_ids = manifest["clip_id"].iloc[:2] if d_index == 0 else []
            kept = manifest[~manifest["clip_id"].isin(rejected_ids)]
            _store(store, rng, kept, curve, model)
            rejected = store.with_suffix(".rejected.csv")
            pd.DataFrame({"clip_id": list(rejected_ids),
                          "reason": ["unreadable audio (synthetic)"] * len(rejected_ids)}
                         ).to_csv(rejected, index=False)
            files["stores"].append({"dataset": dataset, "model": model, "path": str(store)})
            files["rejected"].append({"dataset": dataset, "model": model,
                                      "path": str(rejected)})
            details = gpu_node if MODELS[model][0] != "logmel" else run_details()
            files["jobs"].append(_job(folder, "extract_shard", f"{dataset}/{model}/0",
                                      rng.uniform(20, 200), details))
            for probe in probes:
                rows = pd.DataFrame(_probe_results(rng, dataset, model, probe, curve, rounds,
                                                   n_test[dataset], n_train[dataset]))
                runs.append(rows)
                one, per_layer = _summaries(rows, metric)
                summary.append(one)
                layers.append(per_layer)
                path = folder / "results/predictions" / dataset / model / f"{probe}.csv"
                path.parent.mkdir(parents=True, exist_ok=True)
                _predictions(rng, kept, rows, classes).to_csv(path, index=False)
                files["predictions"].append({"dataset": dataset, "model": model,
                                             "probe": probe, "path": str(path)})
                files["jobs"].append(_job(folder, "probe", f"{dataset}/{model}/{probe}",
                                          rng.uniform(10, 90), gpu_node))
                extra = {"curves": _curves(rng, rows), "layer_weights": _layer_weights(
                    rng, probe, curve, rounds) if PROBES[probe]["kind"] == "weighted" else
                    pd.DataFrame(columns=["probe", "fold", "seed", "layer", "weight"])}
                for name, frame in extra.items():
                    path = folder / "results/probes" / dataset / model / f"{probe}.{name}.csv"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    frame.to_csv(path, index=False)
                    files[name].append({"dataset": dataset, "model": model, "probe": probe,
                                        "path": str(path)})
                if PROBES[probe]["kind"] == "linear":
                    efficiency += _label_efficiency(one.iloc[0], metric)
        stores = {m: open_store(folder / "results/features" / dataset / f"{m}.h5")
                  for m in models}
        similarity = folder / "results/similarity" / f"{dataset}.csv"
        similarity.parent.mkdir(parents=True, exist_ok=True)
        layer_similarity(stores).assign(dataset=dataset).to_csv(similarity, index=False)
        files["similarity"].append({"dataset": dataset, "path": str(similarity)})
    tables = folder / "results/tables"
    tables.mkdir(parents=True, exist_ok=True)
    runs, summary = pd.concat(runs, ignore_index=True), pd.concat(summary, ignore_index=True)
    runs.to_csv(tables / "runs.csv", index=False)
    summary.to_csv(tables / "summary.csv", index=False)
    pd.concat(layers, ignore_index=True).to_csv(tables / "layers.csv", index=False)
    _comparisons(summary, runs, n_test, n_train).to_csv(tables / "comparisons.csv", index=False)
    files["jobs"].append(_job(folder, "summary", "summary", 3, run_details()))
    pd.DataFrame(efficiency).to_csv(tables / "label_efficiency.csv", index=False)
    files |= {name: str(tables / f"{name}.csv")
              for name in ("summary", "layers", "comparisons", "runs", "label_efficiency")}
    return files, config(datasets, models, probes)


def main() -> None:
    from audioprobe.rendering import render

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[1]
    files, settings = write_study(args.folder)
    files |= {"references": str(repo / "report/reference_results.csv"),
              "figures": str(args.folder / "results/report/figures")}
    output = args.folder / "results/report/report.html"
    start = time.perf_counter()
    render(repo / "report/page.py", output, files, settings)
    print(f"{output}: {output.stat().st_size / 1e6:.1f} MB, rendered in "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
