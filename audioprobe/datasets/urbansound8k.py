"""UrbanSound8K (Salamon et al. 2014): 8732 urban sound slices (<= 4 s), 10 classes, 10 folds.

Layout: ``metadata/UrbanSound8K.csv`` (slice_file_name,fsID,start,end,salience,fold,classID,class)
and ``audio/fold<k>/<slice_file_name>``. label = class; fold = the official fold; group = fsID,
the Freesound recording the slice was cut from. The slices of one recording and class share a
fold, but the published metadata puts five recordings' slices of different classes in two folds
each: those recordings are named in the notes and in ``df.attrs["leakage_exceptions"]``, and
the official folds are kept.
Each slice file is a whole clip: the CSV's start/end are positions in the original Freesound
recording, not in the slice, so they are not used as segment bounds.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from audioprobe import manifest
from audioprobe.datasets.metadata import read_table, require_files

COLUMNS = ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"]
CLASSES = (
    "air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling",
    "engine_idling", "gun_shot", "jackhammer", "siren", "street_music",
)  # fmt: skip
FOLDS = range(1, 11)

ARCHIVES = [
    {
        "url": "https://zenodo.org/record/1203745/files/UrbanSound8K.tar.gz",
        "md5": "9aa69802bbf37fb986f71ec1483a196e",  # published on the Zenodo record
        "strip": "UrbanSound8K",
    },
]


def reference_task(**_) -> str:
    """The task name of this dataset's published numbers (``report/reference_results.csv``)."""
    return "UrbanSound8K"


def build(root: Path) -> pd.DataFrame:
    """Read UrbanSound8K at ``root`` into a manifest with the 10 official folds."""
    table = read_table(root / "metadata" / "UrbanSound8K.csv", "UrbanSound8K", COLUMNS,
                       "slice_file_name", {"slice_file_name": str, "fsID": str, "class": str},
                       {"class": (CLASSES, "one of the 10 UrbanSound8K classes"),
                        "fold": (FOLDS, "1 to 10")})
    paths = [
        root / "audio" / f"fold{fold}" / name
        for fold, name in zip(table["fold"], table["slice_file_name"])
    ]
    require_files(paths, "UrbanSound8K", "metadata/UrbanSound8K.csv")
    df = manifest.make(
        {
            "clip_id": [p.stem for p in paths],
            "path": [str(p.resolve()) for p in paths],
            "label": table["class"].to_list(),
            "fold": table["fold"].to_list(),
            "group": table["fsID"].to_list(),
        }
    )
    crossing = df.groupby("group").filter(lambda slices: slices["fold"].nunique() > 1)
    where = {  # recording: its classes in each fold
        group: ", ".join(f"{'; '.join(sorted(set(part['label'])))} in fold {fold}"
                         for fold, part in slices.groupby("fold"))
        for group, slices in crossing.groupby("group")
    }
    df.attrs["notes"] = [f"recording {group} (fsID): slices of it in several folds ({text}), as "
                         "the official metadata has them" for group, text in where.items()]
    df.attrs["leakage_exceptions"] = {
        group: "the official folds put slices of this Freesound recording in several folds"
        for group in where}
    return df
