"""ESC-50 (Piczak 2015): 2000 five-second environmental clips, 50 classes, 5 official folds.

Layout: ``meta/esc50.csv`` (filename,fold,target,category,esc10,src_file,take) and
``audio/<filename>``. label = category; fold = the official fold; group = src_file, the Freesound
recording the clip was cut from (its takes A, B, ... share one fold by construction).
Option ``subset="esc10"`` keeps the 400 clips of the 10-class ESC-10 subset (esc10 == True).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

import pandas as pd

from audioprobe import manifest
from audioprobe.datasets.metadata import read_table, require_files

COLUMNS = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
CATEGORIES = (
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow",
    "rain", "sea_waves", "crackling_fire", "crickets", "chirping_birds", "water_drops", "wind",
    "pouring_water", "toilet_flush", "thunderstorm",
    "crying_baby", "sneezing", "clapping", "breathing", "coughing", "footsteps", "laughing",
    "brushing_teeth", "snoring", "drinking_sipping",
    "door_wood_knock", "mouse_click", "keyboard_typing", "door_wood_creaks", "can_opening",
    "washing_machine", "vacuum_cleaner", "clock_alarm", "clock_tick", "glass_breaking",
    "helicopter", "chainsaw", "siren", "car_horn", "engine", "train", "church_bells", "airplane",
    "fireworks", "hand_saw",
)  # fmt: skip
FOLDS = range(1, 6)
Subset = Literal["esc50", "esc10"]
SUBSETS = get_args(Subset)

# The author publishes no checksum. GitHub builds this archive of the master branch on request;
# this MD5 of it is the one both the HEAR benchmark (hear-preprocess's esc50 task) and soundata's
# ESC-50 loader check it against. Should the branch move or GitHub build the archive differently,
# the download stops with a checksum mismatch: check and pin the new file with the dataset's
# download: {url: ..., sha256: ...}.
ARCHIVES = [
    {"url": "https://github.com/karolpiczak/ESC-50/archive/master.zip",
     "md5": "7771e4b9d86d0945acce719c7a59305a", "strip": "ESC-50-master"},
]


def reference_task(subset: str = "esc50", **_) -> str | None:
    """The task name of this dataset's published numbers (``report/reference_results.csv``)."""
    return {"esc50": "ESC-50", "esc10": "ESC-10"}.get(subset)


def build(root: Path, subset: Subset = "esc50") -> pd.DataFrame:
    """Read ESC-50 (or its ESC-10 subset) at ``root`` into a manifest with the 5 official folds."""
    if subset not in SUBSETS:
        raise ValueError(f"esc50: unknown subset {subset!r}; expected one of {SUBSETS}")
    table = read_table(root / "meta" / "esc50.csv", "ESC-50", COLUMNS, "filename",
                       {"filename": str, "category": str, "src_file": str},
                       {"category": (CATEGORIES, "one of the 50 ESC-50 classes"),
                        "fold": (FOLDS, "1 to 5")})
    if subset == "esc10":
        table = table[table["esc10"].astype(str).str.lower() == "true"]
    audio = root / "audio"
    paths = [audio / name for name in table["filename"]]
    require_files(paths, "ESC-50", "meta/esc50.csv")
    return manifest.make(
        {
            "clip_id": [p.stem for p in paths],
            "path": [str(p.resolve()) for p in paths],
            "label": table["category"].to_list(),
            "fold": table["fold"].to_list(),
            "group": table["src_file"].to_list(),
        }
    )
