"""Data audit: classes per fold or split, clips padded, windowed or rejected, with reasons."""

from __future__ import annotations

import pandas as pd

from audioprobe.report.formatting import sig
from audioprobe.results import Run


def class_counts(run: Run, dataset: str) -> pd.DataFrame:
    """Clips per class (rows) and fold or split (columns, "fold k" or train/valid/test)."""
    manifest = run.manifest(dataset)
    if manifest["fold"].notna().all():
        counts = pd.crosstab(manifest["label"], manifest["fold"].astype(int))
        counts.columns = [f"fold {k}" for k in counts.columns]
        return counts
    counts = pd.crosstab(manifest["label"], manifest["split"])
    return counts.reindex(columns=[s for s in ("train", "valid", "test") if s in counts.columns])


def rejected_of(run: Run, dataset: str, model: str) -> pd.DataFrame:
    """Rejected clips of one extraction with a short reason (the message before details)."""
    table = pd.read_csv(run.rejected[dataset, model], dtype=str, keep_default_na=False)
    return table.assign(category=table["reason"].str.split(" (", n=1, regex=False).str[0])


def _attribute(attrs: dict, key: str):
    value = attrs.get(key)
    return value.item() if hasattr(value, "item") else value


def audit_table(run: Run, dataset: str) -> pd.DataFrame:
    """Per model: clips in the manifest, kept, padded, processed in windows (longer than the
    window its store was extracted with), rejected, and the store's pooling."""
    manifest = run.manifest(dataset)
    rows = []
    for model in run.models:
        store = run.store(dataset, model)
        meta = store.meta
        window = _attribute(store.attrs, "max_seconds")
        windowed = int((meta["duration"] > float(window)).sum()) if window else None
        rows.append({
            "model": model,
            "clips in manifest": len(manifest),
            "kept": len(meta),
            "padded (shorter than the model's minimum input)": int(meta["padded"].sum()),
            "window (s)": sig(float(window)) if window else "–",
            "windowed (longer than the window)": "–" if windowed is None else windowed,
            "pooling": str(_attribute(store.attrs, "pooling") or "–"),
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
