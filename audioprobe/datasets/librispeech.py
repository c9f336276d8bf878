"""LibriSpeech (Panayotov et al. 2015) as a speaker identification task: label = speaker id.

Layout: ``<root>/LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` with
``<speaker>-<chapter>.trans.txt`` beside them (``root`` may also be the folder that holds
``<subset>/`` directly). Option ``subset``, default train-clean-100 (251 speakers).

LibriSpeech has no speaker-identification split, and since the speaker is the label, every
speaker must be in train and in test. Held-out utterances are chosen by rank of the sha256 hex
digest of the utterance id (hashlib: the same on every run and machine, independent of file-system
order); a speaker's held-out share is max(1, round(10%)) of the utterances it is taken from.

Option ``split``:

- ``utterances`` (default): every speaker of the subset is in train, valid and test. Per speaker,
  10% of the utterances go to test, the next 10% to valid, the rest to train (stratified by
  speaker); group = the utterance. Test utterances come from chapters (recording sessions) that
  also sit in train, so the score partly measures session (recording) matching, which the notes
  say. A speaker with fewer than 3 utterances is left out and listed.
- ``chapters``: session-disjoint. Per speaker, chapters are ranked by the sha256 of
  ``"<speaker>-<chapter>"``; rank 0 goes to test (group = ``<speaker>-<chapter>``), the other
  chapters to train, and 10% of their utterances to valid (group = the utterance). A speaker with
  a single chapter cannot be tested on an unseen session and is left out; ``df.attrs["notes"]``
  lists every speaker left out.

The nearest published reference is CPC (van den Oord et al. 2018): linear speaker classification
over the 251 speakers of train-clean-100 on the authors' own list of train and test utterances,
without a validation split; the notes name it and how its split differs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import pandas as pd

from audioprobe import manifest
from audioprobe.datasets.metadata import entries
from audioprobe.errors import LayoutError

SHA256 = {
    "dev-clean": "76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3",
    "dev-other": "12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365",
    "test-clean": "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
    "test-other": "d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29",
    "train-clean-100": "d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2",
    "train-clean-360": "146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf",
    "train-other-500": "ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2",
}
Subset = Literal[
    "dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100", "train-clean-360",
    "train-other-500",
]  # fmt: skip
Split = Literal["utterances", "chapters"]
REFERENCE = ("nearest published reference: CPC (van den Oord et al. 2018), linear speaker "
             "classification over the 251 speakers of train-clean-100 on the authors' own list "
             "of train and test utterances, with no validation split; this adapter holds out "
             "10% per speaker by hash (and, with split: chapters, whole chapters), so the "
             "numbers are near, not equal, tasks")
HELD_OUT_PERCENT = 10

ARCHIVES = [
    {
        "url": f"https://www.openslr.org/resources/12/{subset}.tar.gz",
        "sha256": sha256,
        "options": {"subset": subset},
    }
    for subset, sha256 in SHA256.items()
]


def reference_task(**_) -> str:
    """The task name of this dataset's published numbers (``report/reference_results.csv``)."""
    return "LibriSpeech speaker ID"


def build(root: Path, subset: Subset = "train-clean-100",
          split: Split = "utterances") -> pd.DataFrame:
    """Read one LibriSpeech subset into a speaker-ID manifest, split as the module doc says."""
    folder = _subset_dir(root, subset)
    base = folder.resolve()
    rows, notes = [], []
    for speaker, chapters in _chapters(folder).items():
        by_chapter = {chapter: _utterances(folder, base, speaker, chapter) for chapter in chapters}
        if split == "chapters":
            kept, reason = chapter_split(speaker, by_chapter)
        else:
            kept, reason = utterance_split(sum(by_chapter.values(), []))
        if reason:
            notes.append(f"speaker {speaker} left out: {reason}")
        rows += kept
    if split == "utterances":
        notes.insert(0, f"utterance-level split: per speaker {HELD_OUT_PERCENT}% of the "
                     f"utterances in test and {HELD_OUT_PERCENT}% in valid; test utterances come "
                     "from chapters (recording sessions) also in train, so the score partly "
                     "measures session matching (split: chapters holds whole chapters out)")
    notes.append(REFERENCE)
    df = manifest.make(rows)
    df.attrs["notes"] = notes
    return df


def held_out(n: int) -> int:
    """Utterances a speaker with ``n`` of them gives to a held-out side: max(1, round(10%))."""
    return max(1, (n * HELD_OUT_PERCENT + 50) // 100)


def utterance_split(rows: list[dict]) -> tuple[list[dict], str]:
    """One speaker's utterances split into test, valid and train by rank; the rows (or none)
    and, when the speaker is left out, why."""
    if len(rows) < 3:
        return [], f"{len(rows)} utterance(s), fewer than one each for train, valid and test"
    n = held_out(len(rows))
    return _assign(_ranked(rows), [("test", n), ("valid", n)]), ""


def chapter_split(speaker: str, by_chapter: dict[str, list[dict]]) -> tuple[list[dict], str]:
    """One speaker's chapters: rank 0 to test, the rest to train with 10% of their utterances
    in valid; the rows (or none) and, when the speaker is left out, why."""
    if len(by_chapter) < 2:
        return [], "a single chapter, so no unseen chapter (session) to test on"
    test, *train = sorted(by_chapter,
                          key=lambda c: hashlib.sha256(f"{speaker}-{c}".encode()).hexdigest())
    pool = [row for chapter in train for row in by_chapter[chapter]]
    if len(pool) < 2:
        return [], "a single utterance outside the test chapter, too few for train and valid"
    tested = [row | {"split": "test", "group": f"{speaker}-{test}"} for row in by_chapter[test]]
    return tested + _assign(_ranked(pool), [("valid", held_out(len(pool)))]), ""


def _ranked(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda row: hashlib.sha256(row["clip_id"].encode()).hexdigest())


def _assign(ranked: list[dict], held: list[tuple[str, int]]) -> list[dict]:
    """The first ranked rows to each held-out side in turn, the rest to train; group = the
    utterance."""
    sides = [side for side, n in held for _ in range(n)]
    sides += ["train"] * (len(ranked) - len(sides))
    return [row | {"split": side, "group": row["clip_id"]} for row, side in zip(ranked, sides)]


def _subset_dir(root: Path, subset: str) -> Path:
    candidates = (root / "LibriSpeech" / subset, root / subset)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise LayoutError(
        f"LibriSpeech: subset folder not found: {candidates[0]} (nor {candidates[1]})"
    )


def _chapters(folder: Path) -> dict[str, list[str]]:
    """Chapter ids of each speaker, speakers and chapters in numeric order."""
    chapters = {d.name: [c.name for c in _numbered_dirs(d)] for d in _numbered_dirs(folder)}
    if not chapters:
        raise LayoutError(f"LibriSpeech: no speaker folders in {folder}")
    return chapters


def _numbered_dirs(folder: Path) -> list[Path]:
    dirs = [p for p in entries(folder) if p.is_dir()]
    for d in dirs:
        if not d.name.isdigit():
            raise LayoutError(f"{d}: expected a numeric speaker or chapter folder")
    return sorted(dirs, key=lambda d: int(d.name))


def _utterances(folder: Path, base: Path, speaker: str, chapter: str) -> list[dict]:
    chapter_dir = folder / speaker / chapter
    trans = chapter_dir / f"{speaker}-{chapter}.trans.txt"
    if not trans.is_file():
        raise LayoutError(f"LibriSpeech: transcript not found: {trans}")
    present = {p.name for p in chapter_dir.iterdir()}
    rows = []
    for line in trans.read_text().splitlines():
        if not line.strip():
            continue
        utterance = line.split(maxsplit=1)[0]
        if not utterance.startswith(f"{speaker}-{chapter}-"):
            raise LayoutError(f"{trans}: utterance {utterance} is not of speaker {speaker}, "
                              f"chapter {chapter}")
        if f"{utterance}.flac" not in present:
            raise LayoutError(f"LibriSpeech: audio file not found: "
                              f"{chapter_dir / f'{utterance}.flac'} (listed in {trans})")
        rows.append(
            {
                "clip_id": utterance,
                "path": str(base / speaker / chapter / f"{utterance}.flac"),
                "label": speaker,
            }
        )
    return rows
