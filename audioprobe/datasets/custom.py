"""Your own data: a CSV manifest, or one folder per class.

CSV: columns ``path,label`` required; optional ``split`` (train/valid/test), ``fold``, ``group``,
``start``, ``end``; paths relative to the CSV's folder. Folder layout: ``root/<label>/<file>``.
Where neither a split nor a fold is given, stratified folds are made that keep each group whole.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from audioprobe import manifest
from audioprobe.datasets.metadata import entries
from audioprobe.errors import LayoutError

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}
OPTIONAL = ["split", "fold", "group", "start", "end"]
NUMERIC = ["fold", "start", "end"]


def build(root: Path, n_folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """Read a CSV manifest (``root`` is the file) or a folder per class (``root`` is the folder)."""
    if root.is_file():
        df = _from_csv(root)
    elif root.is_dir():
        df = _from_folders(root)
    else:
        raise LayoutError(f"custom dataset: {root} is neither a CSV file nor a folder")
    df = manifest.make(df)
    if df["fold"].isna().all() and (df["split"] == "").all():
        df["fold"] = assign_folds(df, n_folds, seed)
    return df


def _from_csv(csv: Path) -> pd.DataFrame:
    # Text is read as written: pandas' default would turn labels or groups such as "NA" or
    # "None" into NaN (and then one class "nan"); only empty numeric cells are missing.
    try:
        table = pd.read_csv(csv, dtype={"label": str, "group": str, "split": str,
                                        "clip_id": str, **{c: str for c in NUMERIC}},
                            keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise LayoutError(f"{csv}: empty file; expected a header line (path,label,...) and one "
                          "row per clip") from None
    except pd.errors.ParserError as error:  # e.g. a row with more cells than the header
        raise LayoutError(f"{csv}: not a CSV table: {str(error).strip()}") from None
    if table.empty:
        raise LayoutError(f"{csv}: a header line and no clips; expected one row per clip")
    missing = {"path", "label"} - set(table.columns)
    if missing:
        raise LayoutError(f"{csv}: missing required column(s) {sorted(missing)}")
    unknown = set(table.columns) - {"path", "label", "clip_id", *OPTIONAL}
    if unknown:
        raise LayoutError(f"{csv}: unknown column(s) {sorted(unknown)}; allowed: path, label, "
                          f"clip_id, {', '.join(OPTIONAL)}")
    for column in NUMERIC:
        if column in table:
            table[column] = _numbers(table[column], column, csv, whole=column == "fold")
    table["path"] = [str((csv.parent / p).resolve()) for p in table["path"]]
    if "clip_id" not in table:
        table["clip_id"] = [
            Path(p).stem if "start" not in table or pd.isna(s) else f"{Path(p).stem}_{s:g}"
            for p, s in zip(table["path"], table.get("start", [None] * len(table)))
        ]
    if "group" not in table:  # the same file or segment listed twice is one group
        table["group"] = table.groupby(manifest.same_audio(table))["clip_id"].transform("first")
    return table


def _numbers(cells: pd.Series, column: str, csv: Path, whole: bool) -> pd.Series:
    """A numeric column read as text: empty cells missing, anything else a (whole) number, or
    a LayoutError naming the row."""
    given = cells.str.strip() != ""
    values = pd.to_numeric(cells.where(given), errors="coerce")
    bad = (values.isna() & given) | (values.notna() & (values % 1 != 0) & whole)
    if bad.any():
        row = int(bad.idxmax())
        kind = "a whole number" if whole else "a number"
        raise LayoutError(f"{csv}: row {row + 2}: {column} {cells[row]!r} is not {kind}")
    return values


def _from_folders(root: Path) -> pd.DataFrame:
    rows = [
        {"clip_id": f"{d.name}/{f.stem}", "path": str(f.resolve()), "label": d.name}
        for d in entries(root) if d.is_dir()
        for f in entries(d)
        if f.suffix.lower() in AUDIO_SUFFIXES
    ]
    if not rows:
        raise LayoutError(f"{root}: no audio files found in per-class folders {root}/<label>/")
    return pd.DataFrame(rows)


def assign_folds(df: pd.DataFrame, n_folds: int, seed: int) -> pd.Series:
    """Stratified folds (1..n_folds) that keep every group within one fold."""
    from sklearn.model_selection import StratifiedGroupKFold  # slow import; planning needs none

    if n_folds < manifest.MIN_FOLDS:
        raise LayoutError(f"n_folds is {n_folds}; cross-validation needs at least "
                          f"{manifest.MIN_FOLDS} folds")
    n_groups = df["group"].nunique()
    if n_groups < n_folds:
        raise LayoutError(f"only {n_groups} groups; cannot make {n_folds} group-disjoint folds")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = pd.Series(0, index=df.index, dtype="Int64")
    for k, (_, test) in enumerate(splitter.split(df, df["label"], df["group"]), start=1):
        folds.iloc[test] = k
    return folds
