"""Dataset adapters against tiny replicas of the published layouts (tests/fixtures/layouts.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import soundfile as sf
import pytest

from audioprobe import manifest
from audioprobe.datasets import ADAPTERS, build_manifest, check_options, librispeech
from audioprobe.errors import LayoutError, LeakageError, OptionError
from tests.fixtures import layouts
from tests.fixtures.layouts import write_audio


def counts(df: pd.DataFrame, column: str) -> dict:
    return df[column].value_counts().to_dict()


def row(df: pd.DataFrame, clip_id: str) -> pd.Series:
    return df.set_index("clip_id").loc[clip_id]


def test_every_adapter_is_registered():
    assert set(ADAPTERS) == {"custom", "esc50", "urbansound8k", "speechcommands", "nsynth",
                             "librispeech", "icbhi"}


def test_esc50(tmp_path):
    want = layouts.make_esc50(tmp_path)
    df = ADAPTERS["esc50"](tmp_path)
    assert len(df) == want["n"]
    assert set(df["label"]) == want["labels"]
    assert counts(df, "fold") == want["per_fold"]
    for clip_id, fold in want["fold_of"].items():
        assert row(df, clip_id)["fold"] == fold
    for clip_id, group in want["group_of"].items():
        assert row(df, clip_id)["group"] == group
    assert (df["split"] == "").all() and df["start"].isna().all() and df["end"].isna().all()
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in df["path"])
    manifest.check_no_leakage(df)


def test_esc10_subset(tmp_path):
    want = layouts.make_esc50(tmp_path)["esc10"]
    df = ADAPTERS["esc50"](tmp_path, subset="esc10")
    assert len(df) == want["n"]
    assert set(df["label"]) == want["labels"]
    assert counts(df, "fold") == want["per_fold"]


def test_urbansound8k_uses_whole_slices(tmp_path):
    want = layouts.make_urbansound8k(tmp_path)
    df = ADAPTERS["urbansound8k"](tmp_path)
    assert len(df) == want["n"]
    assert set(df["label"]) == want["labels"]
    assert counts(df, "fold") == want["per_fold"]
    for clip_id, fold in want["fold_of"].items():
        assert row(df, clip_id)["fold"] == fold
        assert Path(row(df, clip_id)["path"]).parent.name == f"fold{fold}"
    for clip_id, group in want["group_of"].items():
        assert row(df, clip_id)["group"] == group
    # the CSV's start/end are positions in the Freesound recording, not in the slice file
    assert df["start"].isna().all() and df["end"].isna().all()
    # a recording the official folds split is kept there, named in the notes
    assert set(df.attrs["leakage_exceptions"]) == {"106905"}
    assert df.attrs["notes"] == ["recording 106905 (fsID): slices of it in several folds (siren "
                                 "in fold 1, engine_idling in fold 8), as the official metadata "
                                 "has them"]


def test_speechcommands_words(tmp_path):
    want = layouts.make_speechcommands(tmp_path)
    df = ADAPTERS["speechcommands"](tmp_path, version=2, task="words")
    assert len(df) == want["n"]
    assert set(df["label"]) == want["labels"]
    assert counts(df, "split") == want["per_split"]
    for clip_id, split in want["split_of"].items():
        assert row(df, clip_id)["split"] == split
    for clip_id, group in want["group_of"].items():
        assert row(df, clip_id)["group"] == group
    assert df["start"].isna().all()
    manifest.check_no_leakage(df)


def check_silence(df: pd.DataFrame, starts: dict[str, dict[str, tuple[float, float]]]) -> None:
    """Every cropped _silence_ clip is 1 s inside its split's stretch of a noise file."""
    silence = df[(df["label"] == "_silence_") & df["start"].notna()]
    assert set(silence["split"]) == set(starts)
    for clip in silence.itertuples():
        noise = Path(clip.path)
        assert noise.parent.name == "_background_noise_"
        first, last = starts[clip.split][noise.name]
        assert first <= clip.start <= last and clip.end == pytest.approx(clip.start + 1.0)
        assert clip.group == f"{noise.name}:{clip.split}"


def test_speechcommands_12_classes_balanced_as_input_data_py(tmp_path):
    want = layouts.make_speechcommands(tmp_path)["task12"]
    df = build_manifest("speechcommands", tmp_path, {"task": "12"})
    assert len(df) == want["n"]
    assert set(df["label"]) == want["labels"]
    assert counts(df, "split") == want["per_split"]
    assert counts(df, "label") == want["per_label"]
    for clip_id, split in want["commands"].items():
        assert row(df, clip_id)["split"] == split
    for split, pool in want["unknown_from"].items():
        drawn = set(df.loc[(df["label"] == "_unknown_") & (df["split"] == split), "clip_id"])
        assert len(drawn) == 1 and drawn <= pool
    check_silence(df, want["silence_starts"])
    assert df.attrs["comparable"] is False
    assert "not comparable" in df.attrs["notes"][0]
    assert df.attrs["notes"][-1].endswith("; dude_miaowing.wav has no 1 s in its stretch for "
                                          "train, valid, test")
    assert any(note.startswith("train: 4 command clips, 1 _unknown_ drawn from 2 clips of "
                               "other words (1 not used), 1 _silence_")
               for note in df.attrs["notes"])
    again = ADAPTERS["speechcommands"](tmp_path, task="12")  # seeded: the same draw every time
    pd.testing.assert_frame_equal(df, again)


def test_speechcommands_12_classes_on_the_official_test_set(tmp_path):
    want = layouts.make_speechcommands(tmp_path, test_set=True)["task12"]["test_set"]
    df = build_manifest("speechcommands", tmp_path, {"task": "12", "official_test": True})
    assert len(df) == want["n"]
    assert counts(df, "split") == want["per_split"]
    test = df[df["split"] == "test"]
    assert test["clip_id"].str.startswith("speech_commands_test_set_v0.02/").all()
    for clip_id, label in want["test_label_of"].items():
        assert row(df, clip_id)["label"] == label
    for clip_id, group in want["test_group_of"].items():
        assert row(df, clip_id)["group"] == group
    check_silence(df, want["silence_starts"])
    assert df.attrs["comparable"] is True
    assert df.attrs["notes"][0].startswith("test set: the official archive "
                                           "speech_commands_test_set_v0.02 (7 clips); the 5 clips")
    assert df.attrs["notes"][1].startswith("comparable with published 12-class results (SUPERB "
                                           "KS, HEAR) in the test set only: training keeps")


def test_speechcommands_official_test_set_missing_or_misplaced(tmp_path):
    layouts.make_speechcommands(tmp_path)
    with pytest.raises(LayoutError, match="speech_commands_test_set_v0.02"):
        ADAPTERS["speechcommands"](tmp_path, task="12", official_test=True)
    with pytest.raises(ValueError, match="task '12' only"):
        ADAPTERS["speechcommands"](tmp_path, official_test=True)
    layouts.write_audio(tmp_path / "speech_commands_test_set_v0.02" / "cat" / "a_nohash_0.wav")
    with pytest.raises(LayoutError, match="'cat' is not a label"):
        ADAPTERS["speechcommands"](tmp_path, task="12", official_test=True)


def test_speechcommands_v1(tmp_path):
    want = layouts.make_speechcommands(tmp_path, version=1)
    df = ADAPTERS["speechcommands"](tmp_path, version=1)
    assert len(df) == want["n"]
    assert set(df["label"]) == want["labels"]
    # read as v0.02 (the default), it is refused: a v0.02 reference would be compared with it
    with pytest.raises(LayoutError, match=r"has none of the v0.02 words \(backward, follow, "
                                          r"forward, learn, visual\): it looks like v0.01"):
        ADAPTERS["speechcommands"](tmp_path, version=2)


def test_speechcommands_word_outside_version_list(tmp_path):
    layouts.make_speechcommands(tmp_path, version=2)
    with pytest.raises(LayoutError, match="visual") as caught:
        ADAPTERS["speechcommands"](tmp_path, version=1)
    assert str(tmp_path / "visual") in str(caught.value)


def test_nsynth_replaces_valid_that_shares_instruments_with_test(tmp_path):
    want = layouts.make_nsynth(tmp_path)
    df = ADAPTERS["nsynth"](tmp_path)
    assert len(df) == want["n"]
    assert set(df["label"]) == want["labels"]
    assert counts(df, "split") == want["per_split"]
    assert set(df.loc[df["split"] == "valid", "group"]) == want["valid_instruments"]
    assert set(df.loc[df["split"] == "test", "label"]) == want["labels_test"]
    for clip_id, group in want["group_of"].items():
        assert row(df, clip_id)["group"] == group
    assert len(df.attrs["notes"]) == 1 and "organ_electronic_007" in df.attrs["notes"][0]
    manifest.check_no_leakage(df)


def test_nsynth_keeps_an_instrument_disjoint_official_valid(tmp_path):
    want = layouts.make_nsynth(tmp_path, shared_valid_test=False)
    df = ADAPTERS["nsynth"](tmp_path)
    assert counts(df, "split") == want["per_split"]
    assert set(df.loc[df["split"] == "valid", "group"]) == want["valid_instruments"]
    assert set(df["label"]) == want["labels"]
    assert df.attrs["notes"] == []


def test_nsynth_label_option(tmp_path):
    want = layouts.make_nsynth(tmp_path)
    sources = ADAPTERS["nsynth"](tmp_path, label="instrument_source_str")
    assert set(sources["label"]) == want["sources"]
    pitches = ADAPTERS["nsynth"](tmp_path, label="pitch")
    for clip_id, pitch in want["pitch_of"].items():
        assert row(pitches, clip_id)["label"] == pitch
    with pytest.raises(OptionError, match=r"^nsynth: label: field 'qualities_str' holds a list"):
        ADAPTERS["nsynth"](tmp_path, label="qualities_str")
    with pytest.raises(OptionError, match=r"^nsynth: label: no field 'instrument_famly_str' in "
                                          r"the notes of .*; fields: .*instrument_family_str"):
        ADAPTERS["nsynth"](tmp_path, label="instrument_famly_str")


def test_librispeech_every_speaker_in_every_split(tmp_path):
    want = layouts.make_librispeech(tmp_path)
    df = ADAPTERS["librispeech"](tmp_path)
    assert len(df) == want["n"]
    assert counts(df, "split") == want["per_split"]
    for split in ("train", "valid", "test"):  # speakers of 1, 2, 3 and 4 chapters alike
        assert set(df.loc[df["split"] == split, "label"]) == want["labels"]
    held = df[df["split"] != "train"].set_index("clip_id")["split"].to_dict()
    assert held == want["split_of"]
    assert (df["group"] == df["clip_id"]).all()
    assert len(df.attrs["notes"]) == 2 and "utterance-level split" in df.attrs["notes"][0]
    assert "session matching" in df.attrs["notes"][0]
    assert df.attrs["notes"][1].startswith("nearest published reference: CPC (van den Oord")
    manifest.check_no_leakage(df)


def test_librispeech_chapter_disjoint_option(tmp_path):
    want = layouts.make_librispeech(tmp_path)["chapters"]
    df = ADAPTERS["librispeech"](tmp_path, split="chapters")
    assert len(df) == want["n"]
    assert counts(df, "split") == want["per_split"]
    for split in ("train", "valid", "test"):
        assert set(df.loc[df["split"] == split, "label"]) == want["labels"]
    test = df[df["split"] == "test"]
    assert set(test["group"]) == want["test_chapters"]
    assert set(test["clip_id"].str.rsplit("-", n=1).str[0]) == want["test_chapters"]
    rest = df[df["split"] != "test"]
    assert not set(rest["clip_id"].str.rsplit("-", n=1).str[0]) & want["test_chapters"]
    assert set(df.loc[df["split"] == "valid", "clip_id"]) == want["valid"]
    assert [note.split()[1] for note in df.attrs["notes"][:-1]] == want["left_out"]
    assert "251 speakers of train-clean-100" in df.attrs["notes"][-1]
    assert "single chapter" in df.attrs["notes"][0]
    manifest.check_no_leakage(df)


def test_librispeech_split_rule_is_deterministic(tmp_path):
    layouts.make_librispeech(tmp_path)
    for split in ("utterances", "chapters"):
        first = ADAPTERS["librispeech"](tmp_path, split=split)
        again = ADAPTERS["librispeech"](tmp_path / "LibriSpeech", split=split)  # <subset>/ there
        pd.testing.assert_frame_equal(first, again)
    rows = {c: [{"clip_id": f"39-{c}-0000"}, {"clip_id": f"39-{c}-0001"}]
            for c in ["121914", "121915", "121916", "128"]}
    assert librispeech.chapter_split("39", rows) == librispeech.chapter_split(
        "39", dict(reversed(rows.items())))


def test_icbhi_cycles_on_the_official_split(tmp_path):
    want = layouts.make_icbhi(tmp_path)
    df = build_manifest("icbhi", tmp_path)
    cycles = want["cycles"]
    assert len(df) == cycles["n"]
    assert counts(df, "split") == cycles["per_split"]
    assert counts(df, "label") == cycles["per_label"]
    for clip_id, (start, end, label, split) in cycles["cycle"].items():
        assert tuple(row(df, clip_id)[["start", "end", "label", "split"]]) == (
            start, end, label, split)
    for clip_id, group in want["group_of"].items():
        assert df.loc[df["clip_id"].str.startswith(clip_id), "group"].eq(group).all()
    assert not df["clip_id"].str.startswith("102_").any()  # no annotated cycle
    assert set(df.attrs["leakage_exceptions"]) == set(want["crossing"])
    assert len(df.attrs["notes"]) == len(want["crossing"])
    for patient, (train, test) in want["crossing"].items():
        assert any(note.startswith(f"patient {patient}: recordings in train ({train}) and in "
                                   f"test ({test})") for note in df.attrs["notes"])
    assert df.attrs.get("comparable", True)


def test_icbhi_leakage_check_accepts_only_the_recorded_exception(tmp_path):
    layouts.make_icbhi(tmp_path)
    df = ADAPTERS["icbhi"](tmp_path)
    manifest.validate(df)  # patients 156 and 218 cross, through the recorded exception
    with pytest.raises(LeakageError, match="group"):
        manifest.check_no_leakage(df)  # without the exception
    df.attrs["leakage_exceptions"] = {"156": "official split"}
    with pytest.raises(LeakageError, match="'218'"):
        manifest.validate(df)
    df.attrs["leakage_exceptions"] = {"156": "official", "218": "official"}
    df.loc[df["clip_id"] == "103_2b2_Ar_mc_LittC2SE_0", "split"] = "test"  # a planted leak
    with pytest.raises(LeakageError, match="'103'"):
        manifest.validate(df)


def test_icbhi_refuses_a_split_file_with_other_patients_on_both_sides(tmp_path):
    layouts.make_icbhi(tmp_path)
    split_file = _replace(tmp_path / "ICBHI_challenge_train_test.txt",
                          "101_1b1_Pr_sc_Meditron\ttest", "101_1b1_Pr_sc_Meditron\ttrain")
    with pytest.raises(LeakageError) as caught:
        ADAPTERS["icbhi"](tmp_path)
    assert str(caught.value).startswith(f"{split_file}: patient 101 has recordings in train (1) "
                                        "and in test (1); the published split has only patients "
                                        "156 and 218 on both sides")
    df = ADAPTERS["icbhi"](tmp_path, patient_disjoint=True)  # the strict variant still reads it
    assert df.loc[df["clip_id"].str.startswith("101_"), "split"].eq("test").all()


def test_icbhi_patient_disjoint_variant(tmp_path):
    want = layouts.make_icbhi(tmp_path)
    df = build_manifest("icbhi", tmp_path, {"patient_disjoint": True})
    assert counts(df, "split") == want["cycles"]["per_split"]
    for stem, (before, after) in want["moved"].items():
        assert any(stem in note and f"from {before} to {after}" in note
                   for note in df.attrs["notes"])
        assert (df.loc[df["clip_id"].str.startswith(stem), "split"] == after).all()
    assert df.attrs["comparable"] is False and df.attrs["leakage_exceptions"] == {}
    assert "not comparable" in df.attrs["notes"][-1]
    manifest.check_no_leakage(df)


def test_icbhi_flat_layout(tmp_path):
    want = layouts.make_icbhi(tmp_path, nested=False)
    assert len(ADAPTERS["icbhi"](tmp_path)) == want["cycles"]["n"]


def test_icbhi_recordings_labelled_by_their_cycles(tmp_path):
    want = layouts.make_icbhi(tmp_path)
    df = build_manifest("icbhi", tmp_path, {"task": "recordings"})
    recordings = want["recordings"]
    assert len(df) == recordings["n"]
    assert counts(df, "split") == recordings["per_split"]
    assert counts(df, "label") == recordings["per_label"]
    for clip_id, label in recordings["label_of"].items():
        assert row(df, clip_id)["label"] == label
    for stem in recordings["left_out"]:
        assert stem not in set(df["clip_id"])
        assert any(stem in note and "no annotated cycle" in note for note in df.attrs["notes"])
    assert df["start"].isna().all()


def test_icbhi_recordings_labelled_by_diagnosis(tmp_path):
    want = layouts.make_icbhi(tmp_path)["diagnosis"]
    df = build_manifest("icbhi", tmp_path, {"task": "recordings", "label": "diagnosis"})
    assert len(df) == want["n"]
    assert counts(df, "split") == want["per_split"]
    for clip_id, label in want["label_of"].items():
        assert row(df, clip_id)["label"] == label
    with pytest.raises(ValueError, match="applies to task 'recordings'"):
        ADAPTERS["icbhi"](tmp_path, label="diagnosis")


def test_custom_folders_and_csv(tmp_path):
    folders = layouts.make_custom_folders(tmp_path / "folders")
    df = build_manifest("custom", folders["root"])
    assert len(df) == folders["n"] and set(df["label"]) == folders["labels"]
    assert folders["clip_ids"] <= set(df["clip_id"])
    table = layouts.make_custom_csv(tmp_path / "csv")
    df = build_manifest("custom", table["root"])
    assert counts(df, "split") == table["per_split"]
    for clip_id, group in table["group_of"].items():
        assert row(df, clip_id)["group"] == group


# --- every adapter: validation and the errors that must name the file ----------------------

CASES = {
    # adapter: (fixture maker, options)
    "esc50": (layouts.make_esc50, {}),
    "urbansound8k": (layouts.make_urbansound8k, {}),
    "speechcommands": (layouts.make_speechcommands, {"task": "12"}),
    "nsynth": (layouts.make_nsynth, {}),
    "librispeech": (layouts.make_librispeech, {}),
    "icbhi": (layouts.make_icbhi, {}),
}


@pytest.mark.parametrize("adapter", sorted(CASES))
def test_build_manifest_validates(tmp_path, adapter):
    maker, options = CASES[adapter]
    maker(tmp_path)
    df = build_manifest(adapter, tmp_path, options)
    manifest.validate(df)
    assert df["clip_id"].is_unique


def add_hidden_entries(root: Path) -> None:
    """What copying a dataset through macOS, Jupyter or a NAS leaves in every folder: ``._``
    companions of its audio, .DS_Store, .ipynb_checkpoints and @eaDir folders with audio."""
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        for wav in sorted(folder.glob("*.wav"))[:1]:
            (folder / f"._{wav.name}").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
        (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        for hidden in (".ipynb_checkpoints", "@eaDir"):
            (folder / hidden).mkdir(exist_ok=True)
            (folder / hidden / "copy.wav").write_bytes(b"RIFF")


@pytest.mark.parametrize("adapter", sorted(CASES))
def test_hidden_files_and_folders_are_not_read(tmp_path, adapter):
    maker, options = CASES[adapter]
    maker(tmp_path)
    clean = build_manifest(adapter, tmp_path, options)
    add_hidden_entries(tmp_path)
    pd.testing.assert_frame_equal(build_manifest(adapter, tmp_path, options), clean)


def test_hidden_files_and_folders_are_not_read_in_class_folders(tmp_path):
    for label in ("cat", "dog", "owl"):
        (tmp_path / label).mkdir()
        for i in range(6):
            write_audio(tmp_path / label / f"{label}{i}.wav", 0.1, 16000)
    clean = build_manifest("custom", tmp_path, {"n_folds": 3})
    add_hidden_entries(tmp_path)
    pd.testing.assert_frame_equal(build_manifest("custom", tmp_path, {"n_folds": 3}), clean)


# adapter: (comparable, the notes' first words in order, a side and its class counts)
AUDITS = {
    "esc50": (True, [], "1", {"chirping_birds": 1, "dog": 1, "fireworks": 3}),
    "urbansound8k": (True, ["recording 106905 (fsID): slices of it in several folds"], "10",
                     {"car_horn": 2}),
    "speechcommands": (False, ["test set: testing_list.txt balanced", "train: 4 command",
                               "valid: 2 command", "test: 2 command", "_silence_: random 1 s"],
                       "valid", {"_silence_": 1, "up": 1, "yes": 1}),
    "nsynth": (True, ["official valid split set aside", "label(s) organ, string, vocal in the test"],
               "valid", {"bass": 1, "keyboard": 2}),
    "librispeech": (True, ["utterance-level split", "nearest published reference: CPC"], "test",
                    {"19": 1, "26": 1, "32": 1, "39": 2}),
    "icbhi": (True, ["patient 156: recordings in train (2)",
                     "patient 218: recordings in train (1)",
                     "label(s) wheeze in the test split but never in train"],
              "train", {"both": 1, "crackle": 1, "normal": 3}),
}


@pytest.mark.parametrize("adapter", sorted(CASES))
def test_notes_carry_what_each_adapter_did(tmp_path, adapter):
    maker, options = CASES[adapter]
    maker(tmp_path)
    df = build_manifest(adapter, tmp_path, options)
    path = tmp_path / "notes.json"
    manifest.write_audit(manifest.audit(df, "name", adapter, options), path)
    record = json.loads(path.read_text())
    comparable, starts, side, side_counts = AUDITS[adapter]
    assert (record["dataset"], record["adapter"], record["options"]) == ("name", adapter, options)
    assert record["comparable"] is comparable
    assert len(record["notes"]) == len(starts)
    assert all(note.startswith(start) for note, start in zip(record["notes"], starts))
    assert record["class_counts"][side] == side_counts
    assert record["class_counts"]["all"] == counts(df, "label")
    assert sum(sum(c.values()) for k, c in record["class_counts"].items() if k != "all") == len(df)
    if adapter == "icbhi":
        assert set(record["leakage_exceptions"]) == {"156", "218"}


def test_options_are_checked_against_the_adapter_signature(tmp_path):
    with pytest.raises(OptionError) as caught:
        build_manifest("esc50", tmp_path, {"subsett": "esc10"})
    assert str(caught.value) == "unknown key 'subsett' for adapter esc50; allowed keys: subset"
    with pytest.raises(OptionError) as caught:
        check_options("speechcommands", {"task": "twelve"})
    assert str(caught.value) == ("task: 'twelve' is not allowed for adapter speechcommands; "
                                 "allowed: 'words', '12'")
    with pytest.raises(OptionError, match="version: '2' is not allowed .* allowed: 1, 2"):
        check_options("speechcommands", {"version": "2"})
    with pytest.raises(OptionError, match="patient_disjoint: 'yes' .* allowed: any bool"):
        check_options("icbhi", {"patient_disjoint": "yes"})
    with pytest.raises(OptionError, match="n_folds: 2.5 .* allowed: any int"):
        check_options("custom", {"n_folds": 2.5})
    check_options("librispeech", {"subset": "dev-clean", "split": "chapters"})
    check_options("icbhi", {"task": "recordings", "label": "diagnosis", "patient_disjoint": True})


def _unlink(path: Path) -> Path:
    path.unlink()
    return path


def _replace(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return path


def _retag_nsynth(path: Path) -> Path:
    examples = json.loads(path.read_text())
    examples["vocal_synthetic_003-050-127"]["instrument_family_str"] = "kazoo"
    path.write_text(json.dumps(examples))
    return path


def _no_noise(root: Path) -> Path:
    for wav in (root / "_background_noise_").glob("*.wav"):
        wav.unlink()
    return root / "_background_noise_"


def _extra_word(root: Path) -> Path:
    layouts.write_audio(root / "dragon" / "0a7c2a8d_nohash_0.wav")
    return root / "dragon"


ICBHI_DB = Path("ICBHI_final_database")
LIBRI = Path("LibriSpeech/train-clean-100")
BREAKS: dict[str, tuple[str, dict, Callable[[Path], Path]]] = {
    # case: (adapter, options, break the fixture at root and return the file to be named)
    "esc50-meta": ("esc50", {}, lambda r: _unlink(r / "meta/esc50.csv")),
    "esc50-audio": ("esc50", {}, lambda r: _unlink(r / "audio/4-181286-B-10.wav")),
    "esc50-label": ("esc50", {}, lambda r: _replace(r / "meta/esc50.csv", "pig", "dragon")),
    "us8k-meta": ("urbansound8k", {}, lambda r: _unlink(r / "metadata/UrbanSound8K.csv")),
    "us8k-audio": ("urbansound8k", {}, lambda r: _unlink(r / "audio/fold10/100648-1-1-0.wav")),
    "us8k-label": ("urbansound8k", {},
                   lambda r: _replace(r / "metadata/UrbanSound8K.csv", "gun_shot", "fireworks")),
    "sc-list": ("speechcommands", {}, lambda r: _unlink(r / "testing_list.txt")),
    "sc-audio": ("speechcommands", {}, lambda r: _unlink(r / "visual/1b4c9b89_nohash_0.wav")),
    "sc-label": ("speechcommands", {}, _extra_word),
    "sc-noise": ("speechcommands", {"task": "12"}, _no_noise),
    "nsynth-meta": ("nsynth", {}, lambda r: _unlink(r / "nsynth-valid/examples.json")),
    "nsynth-audio": ("nsynth", {},
                     lambda r: _unlink(r / "nsynth-test/audio/vocal_synthetic_003-050-127.wav")),
    "nsynth-label": ("nsynth", {}, lambda r: _retag_nsynth(r / "nsynth-test/examples.json")),
    "libri-meta": ("librispeech", {}, lambda r: _unlink(r / LIBRI / "26/495/26-495.trans.txt")),
    "libri-audio": ("librispeech", {}, lambda r: _unlink(r / LIBRI / "19/250/19-250-0001.flac")),
    "libri-label": ("librispeech", {}, lambda r: _replace(
        r / LIBRI / "26/495/26-495.trans.txt", "26-495-0001", "27-495-0001")),
    "icbhi-split": ("icbhi", {}, lambda r: _unlink(r / "ICBHI_challenge_train_test.txt")),
    "icbhi-diagnosis": ("icbhi", {"task": "recordings", "label": "diagnosis"},
                        lambda r: _unlink(r / "ICBHI_Challenge_diagnosis.txt")),
    "icbhi-annotation": ("icbhi", {},
                         lambda r: _unlink(r / ICBHI_DB / "101_1b1_Al_sc_Meditron.txt")),
    "icbhi-audio": ("icbhi", {},
                    lambda r: _unlink(r / ICBHI_DB / "103_2b2_Ar_mc_LittC2SE.wav")),
    "icbhi-flags": ("icbhi", {}, lambda r: _replace(
        r / ICBHI_DB / "103_2b2_Ar_mc_LittC2SE.txt", "0.6\t0.99\t0\t0", "0.6\t0.99\t2\t0")),
    "icbhi-diagnosis-label": ("icbhi", {"task": "recordings", "label": "diagnosis"},
                              lambda r: _replace(
        r / "ICBHI_Challenge_diagnosis.txt", "URTI", "Flu")),
}


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_layout_error_names_the_file(tmp_path, case):
    adapter, options, breaker = BREAKS[case]
    CASES[adapter][0](tmp_path)
    named = breaker(tmp_path)
    with pytest.raises(LayoutError) as caught:
        ADAPTERS[adapter](tmp_path, **options)
    assert str(named) in str(caught.value)


# --- the leakage check refuses planted leaks --------------------------------------------------

def test_leak_across_folds_is_refused(tmp_path):
    layouts.make_esc50(tmp_path)
    df = ADAPTERS["esc50"](tmp_path)
    df.loc[df["clip_id"] == "1-115545-B-48", "fold"] = 2  # one take of a source in another fold
    with pytest.raises(LeakageError, match="115545"):
        manifest.check_no_leakage(df)


def test_leak_across_train_and_test_is_refused(tmp_path):
    layouts.make_speechcommands(tmp_path)
    df = ADAPTERS["speechcommands"](tmp_path)
    df.loc[df["clip_id"] == "yes/0a7c2a8d_nohash_1", "split"] = "test"  # a speaker on both sides
    with pytest.raises(LeakageError, match="0a7c2a8d"):
        manifest.check_no_leakage(df)


def test_custom_csv_keeps_labels_and_groups_pandas_would_read_as_missing(tmp_path):
    for name in ["a.wav", "b.wav", "c.wav", "d.wav"]:
        sf.write(tmp_path / name, np.zeros(1600), 16000)
    (tmp_path / "clips.csv").write_text(
        "path,label,group,split,start\n"
        "a.wav,None,NA,train,\n"
        "b.wav,NA,null,train,0.5\n"
        "c.wav,nan,None,valid,\n"
        "d.wav,None,n/a,test,\n")
    df = build_manifest("custom", tmp_path / "clips.csv")
    assert df["label"].tolist() == ["None", "NA", "nan", "None"]
    assert df["group"].tolist() == ["NA", "null", "None", "n/a"]
    assert df["start"].isna().tolist() == [True, False, True, True]
