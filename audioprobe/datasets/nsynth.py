"""NSynth (Engel et al. 2017): four-second musical notes of 1006 instruments, official splits.

Layout: ``nsynth-train/``, ``nsynth-valid/``, ``nsynth-test/``, each with ``examples.json`` (a dict
keyed by note_str, values with note_str, instrument_str, instrument_family_str, pitch, ...) and
``audio/<note_str>.wav``. label = the field named by option ``label`` (default
instrument_family_str, 11 classes; e.g. instrument_source_str, pitch); group = instrument_str.

The official train split shares no instrument with valid or test; the manifest's leakage check
verifies it. Valid and test, however, are both cut from the held-out instruments and can share
instruments, which would put one group on two sides. When they do, the official valid split is set
aside (it cannot be a leak-free validation set for that test) and valid is made of whole train
instruments instead: per instrument family with at least two train instruments, the
max(1, n // 10) instruments with the smallest sha256(instrument_str) hex digest (a fixed,
order-free rule). The official test split is never changed. What was done is recorded in
``df.attrs["notes"]``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from audioprobe import manifest
from audioprobe.errors import LayoutError, OptionError

SPLITS = {"nsynth-train": "train", "nsynth-valid": "valid", "nsynth-test": "test"}
FAMILIES = (
    "bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed", "string",
    "synth_lead", "vocal",
)  # fmt: skip
EXPECTED = {
    "instrument_family_str": FAMILIES,
    "instrument_source_str": ("acoustic", "electronic", "synthetic"),
}
REQUIRED = ("note_str", "instrument_str", "instrument_family_str")

# Magenta publishes no checksums for these archives; these MD5s of the official files are the
# ones the HEAR benchmark's nsynth_pitch task (hearbenchmark/hear-preprocess) checks them against
# (the test archive's also matches its Google Cloud Storage ETag).
MD5 = {
    "nsynth-train": "fde6665a93865503ba598b9fac388660",
    "nsynth-valid": "87e94a00a19b6dbc99cf6d4c0c0cae87",
    "nsynth-test": "5e6f8719bf7e16ad0a00d518b78af77d",
}
ARCHIVES = [
    {"url": f"https://download.magenta.tensorflow.org/datasets/nsynth/{folder}.jsonwav.tar.gz",
     "md5": MD5[folder]}
    for folder in SPLITS
]


def reference_task(label: str = "instrument_family_str", **_) -> str | None:
    """The task name of this dataset's published numbers (``report/reference_results.csv``)."""
    return "NSynth instrument family" if label == "instrument_family_str" else None


def build(root: Path, label: str = "instrument_family_str") -> pd.DataFrame:
    """Read NSynth at ``root`` into a manifest with the official splits, labelled by ``label``."""
    table = pd.DataFrame(
        [
            row
            for folder, split in SPLITS.items()
            for row in _read_split(root / folder, split, label)
        ]
    )
    if table.empty:
        raise LayoutError(f"NSynth: no notes in the examples.json files under {root}")
    table, notes = _disjoint_valid(table)
    df = manifest.make(table)
    df.attrs["notes"] = notes
    return df


def _read_split(folder: Path, split: str, label: str) -> list[dict]:
    meta = folder / "examples.json"
    if not meta.is_file():
        raise LayoutError(f"NSynth: metadata file not found: {meta}")
    examples = json.loads(meta.read_text())
    audio = folder / "audio"
    present = {p.name for p in audio.iterdir()} if audio.is_dir() else set()
    base = audio.resolve()
    return [_row(meta, note, present, base, split, label) for note in examples.values()]


def _row(meta: Path, note: dict, present: set[str], base: Path, split: str, label: str) -> dict:
    missing = [key for key in REQUIRED if key not in note]
    if missing:
        raise LayoutError(f"{meta}: note {note.get('note_str', '?')} lacks field(s) {missing}")
    if label not in note:
        raise OptionError(f"nsynth: label: no field {label!r} in the notes of {meta}; fields: "
                          f"{', '.join(sorted(note))}")
    value = note[label]
    if isinstance(value, (list, dict)):
        raise OptionError(f"nsynth: label: field {label!r} holds a {type(value).__name__} per "
                          "note, not one class (e.g. instrument_family_str or "
                          "instrument_source_str)")
    if label in EXPECTED and value not in EXPECTED[label]:
        raise LayoutError(f"{meta}: note {note['note_str']} has {label} {value!r}; "
                          f"expected one of {EXPECTED[label]}")
    wav = f"{note['note_str']}.wav"
    if wav not in present:
        raise LayoutError(f"NSynth: audio file not found: {base / wav} (listed in {meta})")
    return {
        "clip_id": note["note_str"],
        "path": str(base / wav),
        "label": str(value),
        "split": split,
        "group": note["instrument_str"],
        "family": note["instrument_family_str"],
    }


def _disjoint_valid(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Replace the official valid split by held-out train instruments if it shares any with test."""
    valid, test = (set(table.loc[table["split"] == s, "group"]) for s in ("valid", "test"))
    shared = sorted(valid & test)
    if not shared:
        return table, []
    train = table[table["split"] == "train"]
    held_out = [
        instrument
        for instruments in train.groupby("family")["group"].unique()
        for instrument in _held_out(list(instruments))
    ]
    table = table[table["split"] != "valid"]
    table.loc[table["group"].isin(held_out), "split"] = "valid"
    note = (
        f"official valid split set aside: it shares {len(shared)} instrument(s) with test "
        f"(e.g. {shared[0]}); valid = {len(held_out)} held-out train instrument(s): "
        f"{', '.join(sorted(held_out))}"
    )
    return table, [note]


def _held_out(instruments: list[str]) -> list[str]:
    if len(instruments) < 2:
        return []
    ranked = sorted(instruments, key=lambda name: hashlib.sha256(name.encode()).hexdigest())
    return ranked[: max(1, len(ranked) // 10)]
