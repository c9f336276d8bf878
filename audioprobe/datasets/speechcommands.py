"""Speech Commands v0.01 / v0.02 (Warden 2018): one-second spoken words with official split lists.

Layout: one folder per word holding ``<speaker>_nohash_<n>.wav``; ``validation_list.txt`` and
``testing_list.txt`` (paths relative to the root, e.g. ``yes/0a7c2a8d_nohash_0.wav``);
``_background_noise_/*.wav``. split = valid / test as the official lists say, train for every
other clip. The lists were made by hashing the speaker id, so a speaker never crosses splits;
group = speaker (the part of the name before ``_nohash_``), and the manifest's leakage check
holds the lists to it. Option ``version``: 1 or 2 (default), for v0.01 or v0.02.

Tasks (option ``task``, default ``words``)
------------------------------------------
``words``: label = the word folder (30 words in v0.01, 35 in v0.02).

``12``: the 10 commands yes, no, up, down, left, right, on, off, stop, go, plus ``_unknown_`` and
``_silence_``, built as Warden's reference implementation does (``input_data.py`` of the
TensorFlow ``speech_commands`` example, ``prepare_data_index``): in each split, ``_silence_`` and
``_unknown_`` each get ceil(10%) as many clips as the split has command clips; the ``_unknown_``
clips are drawn at random (seeded) from the split's other words, and the rest of them are not
used (their number is in the notes). ``_silence_`` clips are random 1 s crops (seeded; start and
end in seconds) of all the ``_background_noise_/*.wav`` files: training crops come from the
first 80% of each file, validation crops from the next 10%, test crops from the last 10% (first
90% and last 10% when the official test set is given), so no stretch of noise is on two sides;
group = ``<noise file>:<split>``.

Test set. SUPERB (KS, v0.01) and HEAR (v0.02) test on the separately published test archives
``speech_commands_test_set_v0.0<version>`` (about 3k / 4.9k clips, one folder per label
including ``_silence_`` and ``_unknown_``). With option ``official_test=True`` that archive,
unpacked into ``<root>/speech_commands_test_set_v0.0<version>/`` (the download does this), is the
test set, and the clips of ``testing_list.txt`` are not used. Without it the test split is
``testing_list.txt`` balanced as above, and the manifest is marked not comparable with published
12-class results. Comparable covers the test set only: training keeps ceil(10%) ``_unknown_``
clips, as Warden's reference does, whereas s3prl (SUPERB KS) and HEAR train on every clip of the
other words as ``_unknown_``; the notes say so.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd
import soundfile as sf

from audioprobe import manifest
from audioprobe.datasets.metadata import entries
from audioprobe.errors import LayoutError

WORDS_V1 = (
    "bed", "bird", "cat", "dog", "down", "eight", "five", "four", "go", "happy", "house", "left",
    "marvin", "nine", "no", "off", "on", "one", "right", "seven", "sheila", "six", "stop",
    "three", "tree", "two", "up", "wow", "yes", "zero",
)  # fmt: skip
WORDS = {1: WORDS_V1, 2: WORDS_V1 + ("backward", "follow", "forward", "learn", "visual")}
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN, SILENCE = "_unknown_", "_silence_"
TRAINING_DIFFERS = ("comparable with published 12-class results (SUPERB KS, HEAR) in the test set "
                    "only: training keeps ceil(10%) _unknown_ clips (Warden's input_data.py), "
                    "whereas s3prl and HEAR train on every clip of the other words as _unknown_")
Task = Literal["words", "12"]
TASKS = get_args(Task)
NOISE = "_background_noise_"
HASH_DIVIDER = "_nohash_"
LISTS = {"validation_list.txt": "valid", "testing_list.txt": "test"}
SEED = 59185  # input_data.py's RANDOM_SEED
SILENCE_PERCENT = UNKNOWN_PERCENT = 10  # input_data.py's defaults
# Stretches of each noise file (fractions of its length) that each split crops _silence_ from.
NOISE_REGIONS = {"train": (0.0, 0.8), "valid": (0.8, 0.9), "test": (0.9, 1.0)}
NOISE_REGIONS_WITH_TEST_SET = {"train": (0.0, 0.9), "valid": (0.9, 1.0)}
TEST_SET = "speech_commands_test_set_v0.0{version}"

ARCHIVES = [
    {
        "url": "https://storage.googleapis.com/download.tensorflow.org/data/"
        "speech_commands_v0.01.tar.gz",
        "md5": "3cd23799cb2bbdec517f1cc028f8d43c",
        "options": {"version": 1},
    },
    {
        "url": "https://storage.googleapis.com/download.tensorflow.org/data/"
        "speech_commands_v0.02.tar.gz",
        "md5": "6b74f3901214cb2c2934e98196829835",
        "sha256": "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
        "options": {"version": 2},
    },
] + [
    {  # The official 12-class test sets; no published checksums.
        "url": f"https://storage.googleapis.com/download.tensorflow.org/data/"
        f"{TEST_SET.format(version=version)}.tar.gz",
        "options": {"version": version, "task": "12", "official_test": True},
        "into": TEST_SET.format(version=version),
    }
    for version in (1, 2)
]


def reference_task(version: int = 2, task: str = "words", **_) -> str | None:
    """The task name of this dataset's published numbers (``report/reference_results.csv``)."""
    return {(1, "words"): "Speech Commands v1 (30)", (2, "words"): "Speech Commands v2 (35)",
            (1, "12"): "Speech Commands v1 (12)", (2, "12"): "Speech Commands v2 (12)",
            }.get((int(version), str(task)))


def build(root: Path, version: Literal[1, 2] = 2, task: Task = "words",
          official_test: bool = False) -> pd.DataFrame:
    """Read Speech Commands v0.0<version> at ``root`` into a manifest with the official splits."""
    version = int(version)
    if version not in WORDS:
        raise ValueError(f"speechcommands: unknown version {version!r}; expected 1 or 2")
    if task not in TASKS:
        raise ValueError(f"speechcommands: unknown task {task!r}; expected one of {TASKS}")
    if official_test and task != "12":
        raise ValueError("speechcommands: official_test applies to task '12' only")
    rows = _word_rows(root.resolve(), _word_folders(root, version), task)
    split_of = _read_lists(root, {row["clip_id"] + ".wav" for row in rows})
    for row in rows:
        row["split"] = split_of.get(row["clip_id"] + ".wav", "train")
    if task == "words":
        return manifest.make(rows)
    notes, tested = [], []
    if official_test:
        test_set = root / TEST_SET.format(version=version)
        unused = sum(row["split"] == "test" for row in rows)
        rows = [row for row in rows if row["split"] != "test"]
        tested = _test_set_rows(test_set)
        notes.append(f"test set: the official archive {test_set.name} ({len(tested)} clips); "
                     f"the {unused} clips of testing_list.txt are not used")
        notes.append(TRAINING_DIFFERS)
    else:
        notes.append(f"test set: testing_list.txt balanced like training, not the official "
                     f"archive {TEST_SET.format(version=version)}: not comparable with "
                     "published 12-class results (SUPERB KS, HEAR)")
    regions = NOISE_REGIONS_WITH_TEST_SET if official_test else NOISE_REGIONS
    rows, balance_notes = _balance(rows, root / NOISE, regions)
    df = manifest.make(rows + tested)
    df.attrs["notes"] = notes + balance_notes
    df.attrs["comparable"] = official_test
    return df


def _word_folders(root: Path, version: int) -> list[Path]:
    if not root.is_dir():
        raise LayoutError(f"Speech Commands: folder not found: {root}")
    skip = TEST_SET.format(version="")  # unpacked test archives
    folders = [p for p in entries(root) if p.is_dir() and p.name != NOISE
               and not p.name.startswith(skip)]
    for folder in folders:
        if folder.name not in WORDS[version]:
            raise LayoutError(
                f"{folder}: {folder.name!r} is not a word of Speech Commands v0.0{version}"
            )
    if not folders:
        raise LayoutError(f"Speech Commands: no word folders in {root}")
    newer = set(WORDS[2]) - set(WORDS[1])
    if version == 2 and not newer & {f.name for f in folders}:
        raise LayoutError(f"Speech Commands: {root} has none of the v0.02 words "
                          f"({', '.join(sorted(newer))}): it looks like v0.01; set "
                          "options: {version: 1}")
    return folders


def _word_rows(base: Path, folders: list[Path], task: str) -> list[dict]:
    rows = []
    for folder in folders:
        word = folder.name
        label = word if task == "words" or word in COMMANDS else UNKNOWN
        for name in (p.name for p in entries(folder, "*.wav")):
            speaker, divider, _ = name.partition(HASH_DIVIDER)
            if not divider:
                raise LayoutError(f"{folder / name}: expected a name <speaker>_nohash_<n>.wav")
            rows.append(
                {
                    "clip_id": f"{word}/{name[: -len('.wav')]}",
                    "path": str(base / word / name),
                    "label": label,
                    "group": speaker,
                }
            )
    return rows


def _read_lists(root: Path, clips: set[str]) -> dict[str, str]:
    """Map ``word/file.wav`` to its split for every clip named in the official lists."""
    split_of = {}
    for name, split in LISTS.items():
        listing = root / name
        if not listing.is_file():
            raise LayoutError(f"Speech Commands: split list not found: {listing}")
        for entry in listing.read_text().split():
            if entry not in clips:
                raise LayoutError(
                    f"{listing}: lists {entry}, but the audio file {root / entry} does not exist"
                )
            split_of[entry] = split
    return split_of


def _test_set_rows(folder: Path) -> list[dict]:
    """The official test archive: one folder per label (the 10 commands, _unknown_, _silence_)."""
    if not folder.is_dir():
        raise LayoutError(f"Speech Commands: official test set folder not found: {folder} "
                          "(unpack the test archive there, or leave out official_test)")
    labels = (*COMMANDS, UNKNOWN, SILENCE)
    rows = []
    for sub in (p for p in entries(folder) if p.is_dir()):
        if sub.name not in labels:
            raise LayoutError(f"{sub}: {sub.name!r} is not a label of the 12-class test set "
                              f"({', '.join(labels)})")
        for wav in entries(sub, "*.wav"):
            speaker, divider, _ = wav.stem.partition(HASH_DIVIDER)
            clip_id = f"{folder.name}/{sub.name}/{wav.stem}"
            rows.append({"clip_id": clip_id, "path": str(wav.resolve()), "label": sub.name,
                         "split": "test",
                         "group": speaker.rsplit("_", 1)[-1] if divider else clip_id})
    if not rows:
        raise LayoutError(f"Speech Commands: no clips in the official test set folder {folder}")
    return rows


def _balance(rows: list[dict], noise: Path, regions: dict[str, tuple[float, float]]
             ) -> tuple[list[dict], list[str]]:
    """Per split, ceil(10%) of the command clips as _unknown_ (drawn at random from the other
    words) and as _silence_ (1 s noise crops), as input_data.py does; the rows and notes."""
    lengths = _noise_lengths(noise)
    kept, notes = [], []
    for index, split in enumerate(regions):
        rng = np.random.default_rng([SEED, index])
        known = [row for row in rows if row["split"] == split and row["label"] != UNKNOWN]
        unknown = [row for row in rows if row["split"] == split and row["label"] == UNKNOWN]
        n_unknown = min(len(unknown), math.ceil(len(known) * UNKNOWN_PERCENT / 100))
        drawn = sorted(rng.choice(len(unknown), n_unknown, replace=False)) if unknown else []
        n_silence = math.ceil(len(known) * SILENCE_PERCENT / 100)
        kept += known + [unknown[i] for i in drawn]
        kept += _silence_rows(noise, lengths, split, regions[split], n_silence, rng)
        notes.append(f"{split}: {len(known)} command clips, {n_unknown} _unknown_ drawn from "
                     f"{len(unknown)} clips of other words ({len(unknown) - n_unknown} not "
                     f"used), {n_silence} _silence_ crops")
    too_short = {name: [split for split, region in regions.items()
                         if _crop_starts(seconds, region) is None]
                 for name, seconds in lengths.items()}
    notes.append("_silence_: random 1 s crops of " + ", ".join(
        f"{name} ({seconds:g} s)" for name, seconds in lengths.items()) + "; per split from "
        + ", ".join(f"{split} {lo:.0%}-{hi:.0%}" for split, (lo, hi) in regions.items())
        + " of each file" + "".join(f"; {name} has no 1 s in its stretch for {', '.join(splits)}"
                                    for name, splits in too_short.items() if splits))
    return kept, notes


def _noise_lengths(folder: Path) -> dict[str, float]:
    files = entries(folder, "*.wav") if folder.is_dir() else []
    if not files:
        raise LayoutError(f"Speech Commands: no background noise files in {folder} "
                          "(task '12' cuts its _silence_ clips from them)")
    lengths = {}
    for wav in files:
        try:
            info = sf.info(str(wav))
        except RuntimeError as exc:
            raise LayoutError(f"{wav}: unreadable background noise file ({exc})") from exc
        lengths[wav.name] = info.frames / info.samplerate
    return lengths


def _crop_starts(seconds: float, region: tuple[float, float]) -> tuple[int, int] | None:
    """First and last start (milliseconds) of a 1 s crop inside ``region`` (fractions) of a file
    of ``seconds``; None when no crop fits."""
    first = math.ceil(region[0] * seconds * 1000)
    last = math.floor((region[1] * seconds - 1) * 1000)
    return (first, last) if last >= first else None


def _silence_rows(folder: Path, lengths: dict[str, float], split: str,
                  region: tuple[float, float], n: int, rng: np.random.Generator) -> list[dict]:
    """``n`` random 1 s crops (file uniform, start uniform, to the millisecond) of the noise
    files' ``region`` (fractions of their length) for ``split``."""
    spans = {name: _crop_starts(seconds, region) for name, seconds in lengths.items()}
    usable = sorted(name for name, span in spans.items() if span is not None)
    if n and not usable:
        raise LayoutError(f"Speech Commands: no background noise file in {folder} has 1 s in "
                          f"its {region[0]:.0%}-{region[1]:.0%} stretch for {split} _silence_")
    rows = []
    for k in range(n):
        name = usable[rng.integers(len(usable))]
        start = int(rng.integers(spans[name][0], spans[name][1] + 1)) / 1000
        rows.append({"clip_id": f"{SILENCE}/{split}_{k}", "path": str((folder / name).resolve()),
                     "start": start, "end": start + 1.0, "label": SILENCE, "split": split,
                     "group": f"{name}:{split}"})
    return rows
