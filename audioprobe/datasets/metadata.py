"""Checks shared by adapters that read a published metadata table and the files it lists."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import pandas as pd

from audioprobe.errors import LayoutError


def read_table(csv: Path, dataset: str, columns: list[str], key: str, dtype: dict,
               allowed: dict[str, tuple[Collection, str]]) -> pd.DataFrame:
    """Read ``csv``; refuse a missing file, other columns, or a value outside ``allowed``
    ({column: (values, what was expected)}), naming the file and the first offending row."""
    if not csv.is_file():
        raise LayoutError(f"{dataset}: metadata file not found: {csv}")
    table = pd.read_csv(csv, dtype=dtype)
    if list(table.columns) != columns:
        raise LayoutError(f"{csv}: columns {list(table.columns)}; expected {columns}")
    for column, (values, expected) in allowed.items():
        bad = table[~table[column].isin(values)]
        if len(bad):
            row = bad.iloc[0]
            raise LayoutError(f"{csv}: {row[key]} has {column} {row[column]!r}; expected "
                              f"{expected}")
    return table


# Names a dataset folder can hold that are no part of it: hidden files and folders, macOS's
# ``._`` companions and .DS_Store, .ipynb_checkpoints, a Synology NAS's @eaDir.
HIDDEN = (".", "@")


def entries(folder: Path, pattern: str = "*") -> list[Path]:
    """The entries of ``folder`` matching ``pattern``, sorted, without hidden ones
    (:data:`HIDDEN`)."""
    return sorted(p for p in folder.glob(pattern) if not p.name.startswith(HIDDEN))


def require_files(paths: list[Path], dataset: str, listed_in: str) -> None:
    """Refuse a table that lists files absent from disk, naming the first one."""
    listings = {folder: {p.name for p in folder.iterdir()} if folder.is_dir() else set()
                for folder in {p.parent for p in paths}}
    missing = [p for p in paths if p.name not in listings[p.parent]]
    if missing:
        raise LayoutError(f"{dataset}: audio file not found: {missing[0]} "
                          f"({len(missing)} listed in {listed_in} are missing)")
