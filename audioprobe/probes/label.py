"""Label new audio files with a trained probe: top-k classes and their probabilities.

The probe file (``probes/saved.py``) holds the model card, the extraction settings the probe's
features were made with and one trained probe per evaluation round, each with the layer its
round chose on validation. New files are extracted with those settings; every round's probe
reads its own layer and their probabilities are averaged.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from audioprobe import manifest
from audioprobe.features.families import load_encoder
from audioprobe.features.extract import extract
from audioprobe.features.store import open_store
from audioprobe.probes import ALL_LAYERS, saved
from audioprobe.settings import ExtractionSettings
from audioprobe.probes.train import Architecture, Member, StackedProbe


def features(paths: list[str], probes: dict
             ) -> tuple[dict[int, torch.Tensor], np.ndarray, pd.DataFrame]:
    """Features of the layers the rounds' probes read, for ``paths``, extracted as the probe's
    were; the indices of the files kept, and the rejected ones (clip_id = index, path, reason)."""
    settings = probes.get("extraction", {"pooling": probes["pooling"]})
    clips = manifest.make([{"clip_id": str(i), "path": str(Path(p).resolve()), "label": "?",
                            "fold": 1} for i, p in enumerate(paths)])
    with tempfile.TemporaryDirectory() as tmp:
        store_path = Path(tmp) / "clips.h5"
        rejected = extract(clips, load_encoder(probes["card"]), store_path, attrs={},
                           settings=ExtractionSettings.from_config(
                               settings, num_workers=0, batch_size=8))
        store = open_store(store_path)
        needed = {r["layer"] for r in probes["rounds"]}
        layers = range(store.n_layers) if ALL_LAYERS in needed else sorted(needed)
        values = {k: torch.as_tensor(store.layer(k), dtype=torch.float64) for k in layers}
        kept = store.meta["clip_id"].astype(int).to_numpy()
    return values, kept, rejected


def label(paths: list[str], probe_file: str | Path, top_k: int = 5) -> pd.DataFrame:
    """One row per file and rank, files in the order given: file, rank, class, probability (or
    the reason it was skipped). The probe's model is loaded from its card, refused when its
    weights changed since."""
    probes = saved.read(probe_file)
    values, kept, rejected = features(paths, probes)
    rows = []
    if len(kept):  # none when every file was skipped
        proba = np.mean([_predict(_inputs(values, r["layer"]), probes, r)
                         for r in probes["rounds"]], axis=0)
        classes = np.asarray(probes["classes"])
        rows = [(i, {"file": paths[i], "rank": rank + 1, "class": classes[c],
                     "probability": p[c]})
                for i, p in zip(kept, proba) for rank, c in enumerate(np.argsort(-p)[:top_k])]
    rows += [(int(r.clip_id), {"file": paths[int(r.clip_id)], "rank": 0, "class": "",
                               "probability": np.nan, "skipped": r.reason})
             for r in rejected.itertuples()]
    rows.sort(key=lambda row: row[0])  # stable: each file's ranks stay in order
    return pd.DataFrame([row for _, row in rows],
                        columns=["file", "rank", "class", "probability", "skipped"]
                        ).fillna({"skipped": ""})


def _inputs(features: dict[int, torch.Tensor], layer: int) -> torch.Tensor:
    """(L, N, D) input of a probe: its one layer, or every layer for the weighted probe."""
    return torch.stack(list(features.values()) if layer == ALL_LAYERS else [features[layer]])


def _predict(features: torch.Tensor, probes: dict, trained: dict) -> np.ndarray:
    arch = Architecture(**probes["architecture"])
    x = ((features - trained["mean"][:, None]) / trained["scale"][:, None]).float()
    model = StackedProbe([[Member(1.0, 0.0, 0)]], arch, x.shape[0], x.shape[-1],
                         len(probes["classes"]))
    model.load(trained["state"])
    model.eval()
    with torch.no_grad():
        return torch.softmax(model(x)[0], -1).numpy()
