"""The manifest: one row per clip, the contract between dataset adapters and everything after.

Columns
-------
clip_id  unique string id of the clip
path     absolute path of the audio file
start    start of the clip within the file in seconds (NaN: from the beginning)
end      end of the clip within the file in seconds (NaN: to the end)
label    class name
fold     official fold number (1-based), or NaN when the dataset has fixed splits
split    "train", "valid" or "test", or empty when the dataset has folds
group    what must never cross a split: speaker, source recording, patient

An adapter records what it did beyond reading the layout in the frame's ``attrs``: ``notes``
(strings: clips moved, dropped or added, departures from a published protocol), ``comparable``
(False when the task departs from the protocol the published numbers use) and
``leakage_exceptions`` ({group: reason}: groups a published split itself puts on two sides,
accepted by the leakage check only when listed here). ``audit`` gathers them, with the class
counts, into the ``{dataset}.notes.json`` written next to the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from audioprobe.errors import LeakageError, ManifestError

COLUMNS = ["clip_id", "path", "start", "end", "label", "fold", "split", "group"]
SPLITS = ("train", "valid", "test")
MIN_FOLDS = 3


def make(rows: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """Build a manifest frame with every column, in order, with the canonical dtypes."""
    df = pd.DataFrame(rows).copy()
    for column in COLUMNS:
        if column not in df:
            df[column] = np.nan if column in ("start", "end", "fold") else ""
    df = df[COLUMNS]
    df["clip_id"] = df["clip_id"].astype(str)
    df["path"] = df["path"].astype(str)
    df["label"] = df["label"].astype(str)
    df["start"] = df["start"].astype(float)
    df["end"] = df["end"].astype(float)
    df["fold"] = df["fold"].astype("Int64")
    df["split"] = df["split"].fillna("").astype(str)
    df["group"] = df["group"].fillna("").astype(str)
    empty_group = df["group"] == ""
    df.loc[empty_group, "group"] = df.loc[empty_group, "clip_id"]
    return df.reset_index(drop=True)


def protocol(df: pd.DataFrame) -> str:
    """Return "folds" (k-fold cross-validation) or "splits" (official train/valid/test)."""
    has_fold = df["fold"].notna()
    has_split = df["split"] != ""
    if has_fold.all() and not has_split.any():
        return "folds"
    if has_split.all() and not has_fold.any():
        return "splits"
    raise ManifestError(
        "every row needs either a fold or a split, and all rows the same kind "
        f"({int(has_fold.sum())} rows have a fold, {int(has_split.sum())} a split, of {len(df)})"
    )


def validate(df: pd.DataFrame, name: str = "manifest", check_files: bool = True) -> None:
    """Raise ManifestError with a message naming the problem if the manifest breaks the contract.

    Groups listed in ``df.attrs["leakage_exceptions"]`` may sit on two sides (see the module doc).
    """
    missing = [c for c in COLUMNS if c not in df]
    if missing:
        raise ManifestError(f"{name}: missing columns {missing}")
    if df.empty:
        raise ManifestError(f"{name}: no clips")
    dupes = df["clip_id"][df["clip_id"].duplicated()].unique()
    if len(dupes):
        raise ManifestError(f"{name}: duplicate clip ids, e.g. {list(dupes[:5])}")
    if (df["label"].astype(str).str.strip() == "").any():
        first = df.loc[df["label"].astype(str).str.strip() == "", "clip_id"].iloc[0]
        raise ManifestError(f"{name}: clip {first} has no label")
    bad_split = ~df["split"].isin(("",) + SPLITS)
    if bad_split.any():
        row = df[bad_split].iloc[0]
        raise ManifestError(
            f"{name}: clip {row.clip_id} has split {row.split!r}; expected one of {SPLITS}"
        )
    check_labels(df, name)
    kind = protocol(df)
    if kind == "splits":
        check_splits(df, name)
    else:
        check_folds(df, name)
    negative = (df["start"] < 0) | (df["end"] < 0)
    if negative.any():
        raise ManifestError(f"{name}: clip {df.loc[negative, 'clip_id'].iloc[0]} has a "
                            "negative start or end; times are seconds from the file's start")
    segment = df["start"].notna() & df["end"].notna()
    if (df.loc[segment, "end"] <= df.loc[segment, "start"]).any():
        row = df[segment & (df["end"] <= df["start"])].iloc[0]
        raise ManifestError(f"{name}: clip {row.clip_id} ends before it starts")
    if check_files:
        for path in df["path"].unique():
            if Path(path).is_dir():
                raise ManifestError(f"{name}: {path} is a folder, not an audio file")
            if not Path(path).is_file():
                raise ManifestError(f"{name}: audio file not found: {path}")
    check_same_audio(df, name)
    check_no_leakage(df, name, allowed=df.attrs.get("leakage_exceptions", {}))


def check_labels(df: pd.DataFrame, name: str = "manifest") -> None:
    """Refuse labels that differ only in case or surrounding whitespace (one class written two
    ways) and a dataset of one class."""
    labels = pd.Series(sorted(df["label"].unique()))
    same = labels.groupby(labels.str.strip().str.casefold()).agg(list)
    clash = same[same.str.len() > 1]
    if len(clash):
        raise ManifestError(f"{name}: labels {', '.join(map(repr, clash.iloc[0]))} differ only "
                            "in case or surrounding whitespace; write each class one way")
    if len(labels) < 2:
        raise ManifestError(f"{name}: only one class ({labels.iloc[0]!r}); a probe needs at "
                            "least two")


def check_splits(df: pd.DataFrame, name: str = "manifest") -> None:
    """Official splits: train and test present, and a validation split that can be given or
    carved from at least two training groups."""
    absent = [s for s in ("train", "test") if not (df["split"] == s).any()]
    if absent:
        raise ManifestError(f"{name}: no clips in split(s) {absent}")
    if not (df["split"] == "valid").any() and df.loc[df["split"] == "train", "group"].nunique() < 2:
        raise ManifestError(f"{name}: the training split has one group and there is no valid "
                            "split: no group-disjoint validation can be carved from it")


def check_folds(df: pd.DataFrame, name: str = "manifest") -> None:
    """k-fold datasets: folds numbered from 1, at least 3 (round i tests on fold i, validates
    on the next and trains on the rest)."""
    if (df["fold"] < 1).any():
        raise ManifestError(f"{name}: clip {df.loc[df['fold'] < 1, 'clip_id'].iloc[0]} has fold "
                            f"{df.loc[df['fold'] < 1, 'fold'].iloc[0]}; folds are numbered from 1")
    if df["fold"].nunique() < MIN_FOLDS:
        raise ManifestError(f"{name}: cross-validation needs at least {MIN_FOLDS} folds (each round "
                            f"tests on one, validates on the next and trains on the rest); "
                            f"found {df['fold'].nunique()}")


def same_audio(df: pd.DataFrame) -> pd.Series:
    """One key per file or (path, start, end) segment: rows with one key hold the same audio."""
    bound = {c: df[c].map(lambda v: "" if pd.isna(v) else f"{float(v)!r}") if c in df else ""
             for c in ("start", "end")}
    return df["path"] + "|" + bound["start"] + "|" + bound["end"]


def check_same_audio(df: pd.DataFrame, name: str = "manifest") -> None:
    """Refuse a file, or a (path, start, end) segment, listed twice in different groups: the
    same audio on both sides of a split would pass the group check."""
    key = same_audio(df)
    groups = df["group"].groupby(key).nunique()
    shared = groups[groups > 1]
    if len(shared):
        rows = df[key == shared.index[0]]
        raise LeakageError(
            f"{name}: {len(shared)} file(s) or segment(s) listed more than once in different "
            f"groups, e.g. {rows['path'].iloc[0]} as clips {list(rows['clip_id'][:3])} in "
            f"groups {sorted(rows['group'].unique())[:3]}; the same audio must share one group")


def check_no_leakage(df: pd.DataFrame, name: str = "manifest",
                     allowed: Collection[str] = ()) -> None:
    """Refuse a manifest in which one group sits in more than one fold or split; ``allowed``:
    groups exempted by a recorded exception."""
    side = df["fold"].astype(str) if protocol(df) == "folds" else df["split"]
    sides_per_group = side.groupby(df["group"]).nunique()
    leaked = sides_per_group[(sides_per_group > 1) & ~sides_per_group.index.isin(list(allowed))]
    if len(leaked):
        example = leaked.index[0]
        where = sorted(side[df["group"] == example].unique())
        raise LeakageError(
            f"{name}: {len(leaked)} group(s) sit on both sides of a split, "
            f"e.g. group {example!r} in {where}; every clip of a group must share one fold/split"
        )


def audit(df: pd.DataFrame, dataset: str, adapter: str, options: dict | None = None) -> dict:
    """What a manifest's adapter recorded, with the class counts per side, as JSON-ready dict:
    dataset, adapter, options, comparable, notes, leakage_exceptions and class_counts
    ({"all" and each split or fold: {label: clips}})."""
    if protocol(df) == "folds":
        side, names = df["fold"].astype(str), [str(k) for k in sorted(df["fold"].unique())]
    else:
        side, names = df["split"], [s for s in SPLITS if (df["split"] == s).any()]
    counts = {"all": df["label"].value_counts().sort_index().to_dict()}
    for name in names:
        counts[name] = df.loc[side == name, "label"].value_counts().sort_index().to_dict()
    return {
        "dataset": dataset,
        "adapter": adapter,
        "options": dict(options or {}),
        "comparable": bool(df.attrs.get("comparable", True)),
        "notes": [str(note) for note in df.attrs.get("notes", [])] + data_notes(df),
        "leakage_exceptions": dict(df.attrs.get("leakage_exceptions", {})),
        "class_counts": {name: {str(k): int(v) for k, v in c.items()}
                         for name, c in counts.items()},
    }


def fingerprint(root: str | Path, listed: Iterable[str] = ()) -> str:
    """What a manifest was read from, as one hash: a root file's content (a custom CSV), or the
    name, size and modification time of every file under a root folder (index files and audio
    alike), and the size and modification time of each ``listed`` file outside the root (the
    audio a CSV lists). A changed, added or removed file changes it; "absent" for no root."""
    root = Path(root)
    if not root.exists():
        return "absent"
    digest = hashlib.sha256()
    if root.is_file():
        digest.update(root.read_bytes())
    else:
        for file in sorted(_files(root)):
            stat = os.stat(file)
            digest.update(f"{os.path.relpath(file, root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
                          .encode())
    inside = str(root.resolve()) + os.sep
    for line in file_states(p for p in set(listed) if not p.startswith(inside)):
        digest.update(line.encode())
    return "sha256:" + digest.hexdigest()[:16]


def file_states(paths: Iterable[str]) -> Iterable[str]:
    """One line per file, in path order: its path, size and modification time, or "missing"."""
    for path in sorted(paths):
        try:
            stat = os.stat(path)
            state = f"{stat.st_size}\0{stat.st_mtime_ns}"
        except OSError:
            state = "missing"
        yield f"{path}\0{state}\n"


def _files(folder: Path) -> Iterable[str]:
    """Every file under ``folder``, recursively (os.scandir: a stat-free walk)."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=True):
                yield from _files(Path(entry.path))
            elif entry.is_file(follow_symlinks=True):
                yield entry.path


def data_notes(df: pd.DataFrame) -> list[str]:
    """What a manifest's data hold that the results must be read with: labels of test clips
    that no training clip has (a probe can never predict them)."""
    if protocol(df) != "splits":
        return []
    unseen = sorted(set(df.loc[df["split"] == "test", "label"])
                    - set(df.loc[df["split"] == "train", "label"]))
    if not unseen:
        return []
    clips = int(df.loc[df["split"] == "test", "label"].isin(unseen).sum())
    return [f"label(s) {', '.join(unseen)} in the test split but never in train: no probe can "
            f"predict them, and their {clips} test clip(s) count as errors"]


def write_audit(record: dict, path: str | Path) -> None:
    """Write ``audit``'s record as indented JSON."""
    Path(path).write_text(json.dumps(record, indent=2) + "\n")


def write(df: pd.DataFrame, path: str | Path) -> None:
    """Write a manifest as CSV (the format every later stage reads)."""
    df.to_csv(path, index=False)


def read(path: str | Path) -> pd.DataFrame:
    """Read a manifest CSV back with canonical dtypes."""
    # Only empty cells are missing: clip ids and labels such as NA, nan or None stay text.
    df = pd.read_csv(path, dtype={"clip_id": str, "label": str, "split": str, "group": str},
                     keep_default_na=False, na_values={c: [""] for c in ("start", "end", "fold")})
    return make(df)
