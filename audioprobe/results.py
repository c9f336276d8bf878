"""A finished run's outputs, keyed by dataset, model, probe and rule, as the page reads them.

The report rule names every input by its keys (``report_files`` in ``rules/common.smk``);
:func:`audioprobe.rendering.render` passes them to the page through the
``AUDIOPROBE_REPORT_INPUTS`` environment variable and :func:`load` reads them back. No key is
ever parsed from a path.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from audioprobe import manifest
from audioprobe.features.families import is_baseline
from audioprobe.features.store import Store, open_store
from audioprobe.joblog import read_run_details
from audioprobe.rendering import INPUTS_VARIABLE
from audioprobe.tables import read_predictions, read_table as read_result_table

@dataclass
class Run:
    """One workflow run's outputs, keyed by dataset, model and probe."""

    summary: pd.DataFrame
    config: dict
    layers: pd.DataFrame = field(default_factory=pd.DataFrame)
    comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    label_efficiency: pd.DataFrame = field(default_factory=pd.DataFrame)
    predictions: dict[tuple[str, str, str], Path] = field(default_factory=dict)
    curves: dict[tuple[str, str, str], Path] = field(default_factory=dict)
    layer_weights: dict[tuple[str, str, str], Path] = field(default_factory=dict)
    stores: dict[tuple[str, str], Path] = field(default_factory=dict)
    similarity: dict[str, Path] = field(default_factory=dict)
    rejected: dict[tuple[str, str], Path] = field(default_factory=dict)
    manifests: dict[str, Path] = field(default_factory=dict)
    notes: dict[str, dict] = field(default_factory=dict)
    cards: dict[str, dict] = field(default_factory=dict)
    jobs: pd.DataFrame = field(default_factory=pd.DataFrame)
    references: pd.DataFrame = field(default_factory=pd.DataFrame)
    reference_models: pd.DataFrame = field(default_factory=pd.DataFrame)
    protocols: pd.DataFrame = field(default_factory=pd.DataFrame)
    figures: Path | None = None
    tables: dict[str, Path] = field(default_factory=dict)
    workflow: Path | None = None
    _stores: dict = field(default_factory=dict, repr=False)
    _manifests: dict = field(default_factory=dict, repr=False)

    @property
    def datasets(self) -> list[str]:
        return [d for d in self.config["datasets"] if d in set(self.summary["dataset"])]

    @property
    def models(self) -> list[str]:
        return [m for m in self.config["models"] if m in set(self.summary["model"])]

    @property
    def probes(self) -> list[str]:
        return [p for p in self.config["probes"] if p in set(self.summary["probe"])]

    def headline_metric(self, dataset: str) -> str:
        """The dataset's headline metric (accuracy, balanced accuracy or the ICBHI score), as
        the summary records it."""
        return str(self.summary.loc[self.summary["dataset"] == dataset,
                                    "headline_metric"].iloc[0])

    def selection_metric(self, dataset: str) -> str:
        """The validation score the dataset's probes were selected on."""
        return str(self.summary.loc[self.summary["dataset"] == dataset,
                                    "selection_metric"].iloc[0])

    def role(self, model: str) -> str:
        """"baseline" (log-mel), "control" (random weights) or "" for a pretrained model."""
        card = self.cards.get(model) or self.config["models"].get(model, {})
        if is_baseline(card):
            return "baseline"
        return "control" if card.get("random_weights") else ""

    def probe_kind(self, probe: str) -> str:
        """linear, mlp or weighted."""
        return self.config["probes"][probe]["kind"]

    def manifest(self, dataset: str) -> pd.DataFrame:
        """The dataset's manifest (read once)."""
        if dataset not in self._manifests:
            self._manifests[dataset] = manifest.read(self.manifests[dataset])
        return self._manifests[dataset]

    def store(self, dataset: str, model: str) -> Store:
        """The opened feature store of one dataset and model (opened once)."""
        if (dataset, model) not in self._stores:
            self._stores[dataset, model] = open_store(self.stores[dataset, model])
        return self._stores[dataset, model]

    def predictions_of(self, dataset: str, model: str, probe: str) -> pd.DataFrame:
        """Test predictions at each round's chosen layer, every round and seed (ids and labels
        such as "NA" kept as text)."""
        return read_predictions(self.predictions[dataset, model, probe])

    def keyed_table(self, files: dict[tuple, Path]) -> pd.DataFrame:
        """The tables of ``files`` (keyed by dataset, model, probe), stacked with their keys
        as columns; empty when there are none."""
        frames = [read_table(path).assign(dataset=key[0], model=key[1], probe=key[2])
                  for key, path in files.items() if Path(path).exists()]
        frames = [f for f in frames if not f.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def n_layers(self, model: str) -> int:
        """Layers of a model (1 for a single-layer model such as log-mel)."""
        rows = self.layers[(self.layers["model"] == model) & (self.layers["layer"] >= 0)]
        return int(rows["layer"].max()) + 1 if len(rows) else 1

    def layer_names(self, model: str) -> list[str]:
        """What each of a model's layers is, as its family names them in its feature stores
        ("layer k" where no store says)."""
        n = self.n_layers(model)
        for dataset, name in self.stores:
            if name == model:
                names = self.store(dataset, model).attrs.get("layer_names")
                if names is not None and len(names) == n:
                    return [str(v) for v in names]
        return [f"layer {k}" for k in range(n)]


def _keyed(records: list[dict], *keys: str) -> dict:
    return {tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]]: Path(r["path"])
            for r in records}


def read_table(path: str | Path | None) -> pd.DataFrame:
    """A results table, or an empty one when the run has none."""
    if path is None or not Path(path).exists():
        return pd.DataFrame()
    return read_result_table(path)


def read_notes(path: Path) -> dict:
    """A dataset's manifest notes ({"notes": [...], "comparable": bool, "leakage_exceptions":
    {group: reason}}); empty when the adapter wrote none or the file cannot be read."""
    try:
        notes = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(notes, dict):
        return {}
    listed = notes.get("notes", [])
    exceptions = notes.get("leakage_exceptions") or {}
    return {"notes": [str(n) for n in (listed if isinstance(listed, list) else [listed])],
            "comparable": notes.get("comparable"),
            "leakage_exceptions": exceptions if isinstance(exceptions, dict) else {}}


def read_jobs(records: list[dict]) -> pd.DataFrame:
    """One row per job: rule, job (its wildcards joined), its wildcards, wall time and peak
    memory from its benchmark file, when it finished (the benchmark file's modification time,
    seconds since the epoch), and the run details its log starts with. A job without a
    benchmark file did not run in this config (a dataset with nothing to download)."""
    rows = []
    for job in records:
        if not Path(job["benchmark"]).is_file():
            continue
        bench = pd.read_csv(job["benchmark"], sep="\t")
        rows.append({
            "rule": job["rule"], "job": job["job"], "wildcards": job.get("wildcards", {}),
            "wall time (s)": float(pd.to_numeric(bench["s"], errors="coerce").mean()),
            "max RSS (MB)": float(pd.to_numeric(bench["max_rss"], errors="coerce").max()),
            "finished": Path(job["benchmark"]).stat().st_mtime,
            "details": read_run_details(job["log"]) if job.get("log") else None,
        })
    return pd.DataFrame(rows, columns=["rule", "job", "wildcards", "wall time (s)",
                                       "max RSS (MB)", "finished", "details"])


def load(environ: dict | None = None) -> Run:
    """Read the report inputs named in ``AUDIOPROBE_REPORT_INPUTS``."""
    spec = json.loads((environ or os.environ)[INPUTS_VARIABLE])
    files, config = spec["files"], spec["config"]
    tables = {name: Path(files[name]) for name in ("summary", "layers", "comparisons", "runs",
                                                   "label_efficiency") if files.get(name)}
    run = Run(
        summary=read_table(tables["summary"]),
        config=config,
        layers=read_table(tables.get("layers")),
        comparisons=read_table(tables.get("comparisons")),
        runs=read_table(tables.get("runs")),
        label_efficiency=read_table(tables.get("label_efficiency")),
        predictions=_keyed(files.get("predictions", []), "dataset", "model", "probe"),
        curves=_keyed(files.get("curves", []), "dataset", "model", "probe"),
        layer_weights=_keyed(files.get("layer_weights", []), "dataset", "model", "probe"),
        stores=_keyed(files.get("stores", []), "dataset", "model"),
        similarity=_keyed(files.get("similarity", []), "dataset"),
        rejected=_keyed(files.get("rejected", []), "dataset", "model"),
        manifests=_keyed(files.get("manifests", []), "dataset"),
        notes={d: read_notes(p) for d, p in _keyed(files.get("notes", []), "dataset").items()},
        cards={m: json.loads(p.read_text())
               for m, p in _keyed(files.get("cards", []), "model").items()},
        jobs=read_jobs(files.get("jobs", [])),
        references=read_references(files["references"]),
        reference_models=read_references(files["reference_models"]),
        protocols=read_references(files["protocols"]).set_index("protocol", drop=False),
        figures=Path(files["figures"]) if files.get("figures") else None,
        tables=tables,
        workflow=Path(spec["workflow"]) if spec.get("workflow") else None,
    )
    return without_weighted_single_layer(run)


def without_weighted_single_layer(run: Run) -> Run:
    """The run without the weighted probe's rows of single-layer models (a learned mix of one
    layer is that layer's linear probe): their summary rows and their comparisons."""
    weighted = [p for p in run.probes if run.probe_kind(p) == "weighted"]
    single = [m for m in run.models if run.n_layers(m) == 1]
    if not weighted or not single:
        return run
    summary = run.summary
    drop = summary["probe"].isin(weighted) & summary["model"].isin(single)
    run.summary = summary[~drop].reset_index(drop=True)
    if len(run.comparisons):
        pairs = run.comparisons
        drop = pairs["probe"].isin(weighted) & (pairs["model_a"].isin(single)
                                                | pairs["model_b"].isin(single))
        run.comparisons = pairs[~drop].reset_index(drop=True)
    return run


def read_references(path: str | Path) -> pd.DataFrame:
    """A table of published references (numbers, model names or protocols) as written:
    strings keep their published digits."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def git_commit(folder: Path | None) -> str | None:
    """The commit checked out in ``folder`` (with "+ changes" when the tree is dirty), or None
    outside a git repository."""
    if folder is None:
        return None
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=folder, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + (" + uncommitted changes" if dirty.strip() else "")
