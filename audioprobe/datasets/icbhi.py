"""ICBHI 2017 respiratory sound database (Rocha et al. 2019): 920 recordings of 126 patients.

Layout: recordings named
``<patient>_<recording index>_<chest location>_<acquisition mode>_<equipment>.wav``
(e.g. ``101_1b1_Al_sc_Meditron.wav``), each with a ``.txt`` of the same stem holding one
respiratory cycle per line (start seconds, end seconds, crackles 0/1, wheezes 0/1, tab-separated);
the official split ``ICBHI_challenge_train_test.txt`` (lines ``<stem>\\t<train|test>``); optionally
``ICBHI_Challenge_diagnosis.txt`` (lines ``<patient>\\t<diagnosis>``). The recordings may sit in
``root`` or in ``root/ICBHI_final_database/`` (as the published zip unpacks); the two text files
in either. group = patient id; split = the official list.

Tasks (option ``task``): ``cycles`` (default), the official 4-class task, one clip per annotated
cycle (start/end seconds), label normal / crackle / wheeze / both from the two flags, clip_id
``<stem>_<cycle line index from 0>``; ``recordings``, one clip per recording, labelled by option
``label``: ``annotations`` (default) abnormal when any of its cycles has a crackle or a wheeze,
else normal (normal/abnormal respiratory sound; a recording without annotated cycles is left out
and listed in the notes); ``diagnosis`` normal only when the patient's diagnosis is Healthy (needs
the diagnosis file; about 35 of the 920 recordings, and confounded with recording site and
device).

Patient handling: the official split is by recording, and in the published
``ICBHI_challenge_train_test.txt`` two patients (156: 9 train and 8 test recordings; 218: 4 and
4) have recordings on both sides, so a patient (the group) sits in train and in test. By default
(``patient_disjoint=False``) the official list is kept exactly, as the published results use it;
those patients are listed in ``df.attrs["notes"]`` and in ``df.attrs["leakage_exceptions"]``, the
recorded exception through which alone the manifest's leakage check accepts them. Any other
patient on both sides means the file is not the published one, and is refused. With ``patient_disjoint=True`` (the strict
variant) all recordings of such a patient go to the side that holds most of them (a tie goes to
test, so the test set loses no patient), each move is listed in the notes, and the manifest is
marked not comparable with results on the official split.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Literal, get_args

import pandas as pd

from audioprobe import manifest
from audioprobe.datasets.metadata import entries
from audioprobe.errors import LayoutError, LeakageError

SPLIT_FILE = "ICBHI_challenge_train_test.txt"
DIAGNOSIS_FILE = "ICBHI_Challenge_diagnosis.txt"
SUBFOLDER = "ICBHI_final_database"
DIAGNOSES = (
    "Asthma", "Bronchiectasis", "Bronchiolitis", "COPD", "Healthy", "LRTI", "Pneumonia", "URTI",
)  # fmt: skip
CYCLE_LABELS = {(0, 0): "normal", (1, 0): "crackle", (0, 1): "wheeze", (1, 1): "both"}
Task = Literal["cycles", "recordings"]
RecordingLabel = Literal["annotations", "diagnosis"]
TASKS = get_args(Task)
OFFICIAL_CROSSING = ("156", "218")  # patients the published split file puts on both sides

# The challenge site publishes no checksums for these files, and no public loader records one:
# they are fetched unchecked, and the download logs each file's sha256 (as do the manifest's
# notes) so that a copy can be pinned.
ARCHIVES = [
    {"url": f"https://bhichallenge.med.auth.gr/sites/default/files/ICBHI_final_database/{name}"}
    for name in ("ICBHI_final_database.zip", SPLIT_FILE, DIAGNOSIS_FILE)
]


def reference_task(task: str = "cycles", **_) -> str | None:
    """The task name of this dataset's published numbers (``report/reference_results.csv``)."""
    return "ICBHI 2017 cycles (4 classes)" if task == "cycles" else None


def build(root: Path, task: Task = "cycles", patient_disjoint: bool = False,
          label: RecordingLabel = "annotations") -> pd.DataFrame:
    """Read ICBHI 2017 at ``root`` into a manifest of cycles or of recordings."""
    if task not in TASKS:
        raise ValueError(f"icbhi: unknown task {task!r}; expected one of {TASKS}")
    if label not in get_args(RecordingLabel):
        raise ValueError(f"icbhi: unknown label {label!r}; expected one of "
                         f"{get_args(RecordingLabel)}")
    if task == "cycles" and label != "annotations":
        raise ValueError("icbhi: label 'diagnosis' applies to task 'recordings' only")
    recordings = root / SUBFOLDER if (root / SUBFOLDER).is_dir() else root
    split_file = _find(root, recordings, SPLIT_FILE)
    split = _read_pairs(split_file, ("train", "test"), "'<recording>\\t<train|test>'")
    _require_recordings(recordings, split, split_file)
    crossing = _crossing_patients(split)
    exceptions: dict[str, str] = {}
    unexpected = [patient for patient in crossing if patient not in OFFICIAL_CROSSING]
    if unexpected and not patient_disjoint:
        sides = crossing[unexpected[0]]
        raise LeakageError(
            f"{split_file}: patient {unexpected[0]} has recordings in train ({sides['train']}) "
            f"and in test ({sides['test']}); the published split has only patients "
            f"{' and '.join(OFFICIAL_CROSSING)} on both sides, so this is not the official file: "
            "give the icbhi option patient_disjoint: true to keep each patient on one side")
    if patient_disjoint:
        split, notes = _patient_disjoint(split)
    else:
        notes = [f"patient {patient}: recordings in train ({counts['train']}) and in test "
                 f"({counts['test']}), as the official split {SPLIT_FILE} has them"
                 for patient, counts in crossing.items()]
        exceptions = {patient: f"the official split {SPLIT_FILE} puts this patient in train "
                      "and test" for patient in crossing}
    if task == "cycles":
        rows = [row for stem, side in split.items() for row in _cycles(recordings, stem, side)]
    elif label == "annotations":
        rows, skipped = _recordings_by_annotations(recordings, split)
        notes += [f"recording {stem} left out: no annotated cycle to label it by"
                  for stem in skipped]
    else:
        rows = _recordings(recordings, split, _find(root, recordings, DIAGNOSIS_FILE))
    df = manifest.make(rows)
    df.attrs["notes"] = notes
    df.attrs["leakage_exceptions"] = exceptions
    if patient_disjoint and crossing:
        df.attrs["comparable"] = False
        notes.append("patient-disjoint variant: the test set differs from the official split's, "
                     "so results are not comparable with published ones")
    return df


def patient_of(stem: str) -> str:
    """The patient id of a recording stem, e.g. ``101`` for ``101_1b1_Al_sc_Meditron``."""
    return stem.split("_", 1)[0]


def _find(root: Path, recordings: Path, name: str) -> Path:
    for folder in (root, recordings):
        if (folder / name).is_file():
            return folder / name
    raise LayoutError(f"ICBHI: metadata file not found: {root / name}")


def _read_pairs(path: Path, values: tuple[str, ...], expected: str) -> dict[str, str]:
    """A two-column whitespace-separated file as {first: second}, the second one of ``values``;
    LayoutError naming the line otherwise (``expected`` describes a good line)."""
    pairs = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in values:
            raise LayoutError(f"{path}, line {number}: expected {expected}, got {line!r}")
        pairs[fields[0]] = fields[1]
    return pairs


def _require_recordings(folder: Path, split: dict[str, str], split_file: Path) -> None:
    on_disk = {p.stem for p in entries(folder, "*.wav")}
    missing = sorted(set(split) - on_disk)
    if missing:
        raise LayoutError(f"ICBHI: audio file not found: {folder / f'{missing[0]}.wav'} "
                          f"(listed in {split_file})")
    unlisted = sorted(on_disk - set(split))
    if unlisted:
        raise LayoutError(f"{split_file}: recording {folder / f'{unlisted[0]}.wav'} "
                          "is not in the official split list")
    for stem in split:
        parts = stem.split("_")
        if len(parts) != 5 or not parts[0].isdigit():
            raise LayoutError(f"{folder / f'{stem}.wav'}: expected a name "
                              "<patient>_<index>_<location>_<mode>_<equipment>.wav")


def _crossing_patients(split: dict[str, str]) -> dict[str, Counter]:
    """Patients with recordings on both sides: {patient: Counter of their recordings' sides}."""
    sides: dict[str, Counter] = {}
    for stem, side in split.items():
        sides.setdefault(patient_of(stem), Counter())[side] += 1
    return {patient: c for patient, c in sorted(sides.items()) if len(c) > 1}


def _patient_disjoint(split: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Move each patient's recordings to the side holding most of them (a tie goes to test)."""
    counts = Counter((patient_of(stem), side) for stem, side in split.items())
    keep = {
        patient: "train" if counts[patient, "train"] > counts[patient, "test"] else "test"
        for patient, _ in counts
    }
    notes = [
        f"patient {patient_of(stem)}: recording {stem} moved from {side} to "
        f"{keep[patient_of(stem)]} (the official split puts this patient on both sides)"
        for stem, side in sorted(split.items())
        if side != keep[patient_of(stem)]
    ]
    return {stem: keep[patient_of(stem)] for stem in split}, notes


def _cycles(folder: Path, stem: str, side: str) -> list[dict]:
    txt = folder / f"{stem}.txt"
    if not txt.is_file():
        raise LayoutError(f"ICBHI: annotation file not found: {txt}")
    wav = str((folder / f"{stem}.wav").resolve())
    return [
        {
            "clip_id": f"{stem}_{index}",
            "path": wav,
            "start": start,
            "end": end,
            "label": label,
            "split": side,
            "group": patient_of(stem),
        }
        for index, (start, end, label) in enumerate(_read_cycles(txt))
    ]


def _read_cycles(txt: Path) -> list[tuple[float, float, str]]:
    cycles = []
    for number, line in enumerate(txt.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{txt}, line {number}"
        try:
            start, end = map(float, fields[:2])
            crackles, wheezes = map(int, fields[2:])
        except ValueError as exc:
            raise LayoutError(
                f"{where}: expected 'start end crackles wheezes', got {line!r}"
            ) from exc
        if (crackles, wheezes) not in CYCLE_LABELS:
            raise LayoutError(f"{where}: crackles/wheezes flags {crackles}/{wheezes}; "
                              "each must be 0 or 1")
        if end <= start:
            raise LayoutError(f"{where}: cycle ends ({end}) before it starts ({start})")
        cycles.append((start, end, CYCLE_LABELS[crackles, wheezes]))
    return cycles


def _recordings_by_annotations(folder: Path, split: dict[str, str]
                               ) -> tuple[list[dict], list[str]]:
    """One row per recording, abnormal when any cycle has a crackle or a wheeze; and the
    recordings without annotated cycles, which are left out."""
    rows, skipped = [], []
    for stem, side in split.items():
        cycles = _cycles(folder, stem, side)
        if not cycles:
            skipped.append(stem)
            continue
        abnormal = any(cycle["label"] != "normal" for cycle in cycles)
        rows.append({"clip_id": stem, "path": cycles[0]["path"], "split": side,
                     "label": "abnormal" if abnormal else "normal", "group": patient_of(stem)})
    return rows, skipped


def _recordings(folder: Path, split: dict[str, str], diagnosis_file: Path) -> list[dict]:
    diagnosis = _read_pairs(diagnosis_file, DIAGNOSES,
                           f"'<patient>\\t<diagnosis>' with a diagnosis in {DIAGNOSES}")
    rows = []
    for stem, side in split.items():
        patient = patient_of(stem)
        if patient not in diagnosis:
            raise LayoutError(f"{diagnosis_file}: no diagnosis for patient {patient} "
                              f"(recording {stem})")
        rows.append(
            {
                "clip_id": stem,
                "path": str((folder / f"{stem}.wav").resolve()),
                "label": "normal" if diagnosis[patient] == "Healthy" else "abnormal",
                "split": side,
                "group": patient,
            }
        )
    return rows
