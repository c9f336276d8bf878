"""The README's reliability promises: what re-runs (an edited dataset, a changed checkpoint, an
unreadable store; never a config in another key order), what is refused in one line (config and
manifest checks, label's probe file), what is skipped and recorded (unusable clips and files),
and that failures leave no temporary stores and tables keep their dtypes."""

from __future__ import annotations

import errno
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import yaml

from audioprobe import manifest
from audioprobe.datasets import build_manifest
from audioprobe.errors import AudioprobeError
from audioprobe.features import extract as extract_module
from audioprobe.features import store as store_module
from audioprobe.features.extract import extract, resolve_device
from audioprobe.features.families import fetch, load_encoder
from audioprobe.features.families.logmel import LogMelEncoder
from audioprobe.features.store import merge, open_store
from audioprobe.probes.label import label
from audioprobe.report.findings import comparisons_of
from audioprobe.results import read_table
from audioprobe.settings import ExtractionSettings
from tests.conftest import REPO, copy_workflow, snakemake
from tests.test_config import base, config_error, dry_run_with


TINY_HUBERT = {"model_type": "hubert", "hidden_size": 32, "num_hidden_layers": 2,
               "num_attention_heads": 2, "intermediate_size": 64, "conv_dim": [32] * 7,
               "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2}


def finished_copy(demo_run: Path, dest: Path) -> Path:
    """A copy of the finished demo run (results, Snakemake's records and mtimes kept)."""
    shutil.copytree(demo_run, dest, symlinks=True)
    return dest


def reordered(value):
    """``value`` with the keys of every mapping in reverse order."""
    if isinstance(value, dict):
        return {key: reordered(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(item) for item in value]
    return value


def plan(folder: Path, *args: str) -> str:
    result = snakemake(folder, *args, "-n", "--cores", "2", "--resources", "gpu=1")
    return result.stdout + result.stderr


def test_config_in_another_key_order_re_runs_nothing(demo_run, tmp_path):
    folder = finished_copy(demo_run, tmp_path / "reordered")
    config = yaml.safe_load((folder / "config.yaml").read_text())
    for dump in (lambda c: yaml.safe_dump(c),  # keys sorted
                 lambda c: yaml.safe_dump(reordered(c), sort_keys=False)):
        (folder / "config.yaml").write_text(dump(config))
        assert "Nothing to be done" in plan(folder)
    runtime = reordered(config)
    runtime["extraction"] |= {"num_workers": 1, "batch_size": 3, "device": "cpu"}
    (folder / "config.yaml").write_text(yaml.safe_dump(runtime, sort_keys=False))
    assert "Nothing to be done" in plan(folder)
    config["protocol"]["seeds"] = 3  # a value that changes results still re-runs
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    jobs = len(config["models"]) * len(config["probes"]) - 1  # log-mel: no weighted probe
    assert re.search(rf"^probe\s+{jobs}$", plan(folder), re.M)


def logmel_features(folder: Path, store: str) -> dict[str, np.ndarray]:
    with h5py.File(folder / store) as f:
        return dict(zip(f["clip_id"].asstr()[...], f["features"][0]))


def test_an_edited_dataset_re_runs_its_manifest_and_what_follows(tmp_path):
    folder = copy_workflow(tmp_path / "edited")
    store = "results/features/demo/logmel.h5"
    (folder / "shards.yaml").write_text("extraction: {shard_size: 40}\n")
    shards = ("--configfile", "shards.yaml")  # the demo's 160 clips in 4 shards
    snakemake(folder, store, "--cores", "2", *shards)
    demo = folder / "resources/datasets/demo"
    table = pd.read_csv(demo / "demo.csv")
    before = logmel_features(folder, store)
    logs = sorted((folder / "logs/extract_shard/demo/logmel").glob("*.log"))
    written = [log.stat().st_mtime_ns for log in logs]
    # an overwritten audio file (same name, other content) re-runs the manifest and extraction
    # of its shard, though the manifest job writes the same rows again
    shutil.copy(demo / table["path"].iloc[1], demo / table["path"].iloc[0])
    dry = plan(folder, store, *shards)
    assert re.search(r"^manifest\s+1$", dry, re.M), dry
    assert re.search(r"^merge_features\s+1$", dry, re.M), dry  # its shards once planned
    snakemake(folder, store, "--cores", "2", *shards)
    after = logmel_features(folder, store)
    first, second = (Path(p).stem for p in table["path"].iloc[:2])
    assert not np.array_equal(before[first], before[second])
    np.testing.assert_array_equal(after[first], before[second])  # extracted anew
    # every shard again: the shards merged into the store are not kept
    assert all(log.stat().st_mtime_ns != old for log, old in zip(logs, written))
    assert "Nothing to be done" in plan(folder, store, *shards)
    # a deleted one too (and the manifest then names it)
    (demo / table["path"].iloc[2]).unlink()
    assert re.search(r"^manifest\s+1$", plan(folder, store, *shards), re.M)
    shutil.copy(demo / table["path"].iloc[3], demo / table["path"].iloc[2])
    # six rows added to the CSV are read on the next run
    extra = table.iloc[:6].assign(path=[f"audio/extra{i}.wav" for i in range(6)],
                                  group=[f"extra{i}" for i in range(6)])
    for i, row in enumerate(table.iloc[:6].itertuples()):
        shutil.copy(demo / row.path, demo / f"audio/extra{i}.wav")
    pd.concat([table, extra]).to_csv(demo / "demo.csv", index=False)
    assert re.search(r"^manifest\s+1$", plan(folder, store, *shards), re.M)
    snakemake(folder, "results/manifests/demo.csv", "--cores", "1", *shards)
    assert len(pd.read_csv(folder / "results/manifests/demo.csv")) == len(table) + 6


def custom_csv(folder: Path, rows: list[str], header: str = "path,label,fold,group") -> Path:
    """A custom CSV over short tones a.wav ... f.wav in ``folder``."""
    for name in "abcdef":
        sf.write(folder / f"{name}.wav", np.sin(np.arange(1600) / 5).astype(np.float32), 16000)
    csv = folder / "data.csv"
    csv.write_text("\n".join([header, *rows]) + "\n" if header or rows else "")
    return csv




REFUSED = {
    "same file in two groups": ([f"{'abcdef'[i % 6]}.wav,c{i % 6 % 2},{1 + i % 3},g{i},x{i}"
                                 for i in range(9)], "path,label,fold,group,clip_id",
                                "listed more than once in different groups"),
    "labels differing in case": ([f"{'abcdef'[i]}.wav,{lab},{1 + i % 3},g{i}" for i, lab in
                                  enumerate(["class0", "CLASS0", "class1", "class0 ", "class1",
                                             "class1"])], "path,label,fold,group",
                                 "differ only in case or surrounding whitespace"),
    "one class": ([f"{'abcdef'[i]}.wav,dog,{1 + i % 3},g{i}" for i in range(6)],
                  "path,label,fold,group", "only one class ('dog')"),
    "negative start": ([f"{'abcdef'[i]}.wav,c{i % 2},{1 + i % 3},g{i},{-0.05 if i == 2 else 0}"
                        for i in range(6)], "path,label,fold,group,start",
                       "negative start or end"),
    "two folds": ([f"{'abcdef'[i]}.wav,c{i % 2},{1 + i % 2},g{i}" for i in range(6)],
                  "path,label,fold,group", "needs at least 3 folds"),
    "fold 0": ([f"{'abcdef'[i]}.wav,c{i % 2},{i % 3},g{i}" for i in range(6)],
               "path,label,fold,group", "folds are numbered from 1"),
    "one training group": ([f"{'abcdef'[i]}.wav,c{i % 2},{'train' if i < 4 else 'test'},"
                            f"{'g' if i < 4 else i}" for i in range(6)],
                           "path,label,split,group", "the training split has one group"),
    "fractional fold": ([f"{'abcdef'[i]}.wav,c{i % 2},{1.5 if i == 3 else 1 + i % 3},g{i}"
                         for i in range(6)], "path,label,fold,group",
                        "row 5: fold '1.5' is not a whole number"),
    "textual fold": ([f"{'abcdef'[i]}.wav,c{i % 2},{'one' if i == 0 else 1 + i % 3},g{i}"
                      for i in range(6)], "path,label,fold,group",
                     "row 2: fold 'one' is not a whole number"),
    "empty file": ([], "", "empty file"),
    "header only": ([], "path,label", "a header line and no clips"),
    "a row with an extra cell": ([f"{'abcdef'[i]}.wav,c{i % 2}{',x' if i == 4 else ''}"
                                  for i in range(6)], "path,label",
                                 "not a CSV table: Error tokenizing data"),
    "a missing file": ([f"{'abcdeg'[i]}.wav,c{i % 2},{1 + i % 3},g{i}" for i in range(6)],
                       "path,label,fold,group", "audio file not found: "),
    "a folder": ([f"{'abcde.'[i]}{'.wav' if i < 5 else ''},c{i % 2},{1 + i % 3},g{i}"
                  for i in range(6)], "path,label,fold,group", "is a folder, not an audio file"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_manifest_that_cannot_be_probed_is_refused_in_one_line(tmp_path, case):
    rows, header, message = REFUSED[case]
    csv = custom_csv(tmp_path, rows, header)
    with pytest.raises(AudioprobeError, match=re.escape(message)) as error:
        build_manifest("custom", csv)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("n_folds", [0, 1, 2])
def test_fewer_than_three_folds_are_refused(tmp_path, n_folds):
    csv = custom_csv(tmp_path, [f"{'abcdef'[i]}.wav,c{i % 2}" for i in range(6)], "path,label")
    with pytest.raises(AudioprobeError, match="n_folds is .*at least 3 folds"):
        build_manifest("custom", csv, {"n_folds": n_folds})


def test_the_same_file_without_groups_shares_one_group(tmp_path):
    rows = [f"{'abcdef'[i % 6]}.wav,c{i % 6 % 2},x{i}" for i in range(12)]
    df = build_manifest("custom", custom_csv(tmp_path, rows, "path,label,clip_id"),
                        {"n_folds": 3})
    assert df.groupby("path")["group"].nunique().eq(1).all()
    assert df.groupby("path")["fold"].nunique().eq(1).all()


def test_a_test_label_never_trained_is_noted(tmp_path):
    rows = [f"{'abcdef'[i]}.wav,{'c2' if i == 5 else f'c{i % 2}'},"
            f"{'train' if i < 4 else 'test'},g{i}" for i in range(6)]
    df = build_manifest("custom", custom_csv(tmp_path, rows, "path,label,split,group"))
    notes = manifest.audit(df, "d", "custom")["notes"]
    assert notes == ["label(s) c2 in the test split but never in train: no probe can predict "
                     "them, and their 1 test clip(s) count as errors"]


def refusal(workflow: Path, change) -> str:
    """The one ``config:`` line a dry run with the demo config, changed by ``change``, stops on."""
    config = base()
    change(config)
    return config_error(dry_run_with(workflow, config))


CONFIG_REFUSALS = {
    "dropout 1": (lambda c: c["probes"]["mlp"].update(dropout=1.0),
                  "config: probes.mlp.dropout: 1.0 is greater than or equal to the maximum of 1"),
    "no hidden layer": (lambda c: c["probes"]["mlp"].update(hidden=[]),
                        "config: probes.mlp.hidden: [] should be non-empty"),
    "hidden on linear": (lambda c: c["probes"]["linear"].update(hidden=[64]),
                         "config: probes.linear.hidden: only an mlp probe takes hidden"),
    "dropout on weighted": (lambda c: c["probes"].update(w={"kind": "weighted", "dropout": 0.1}),
                            "config: probes.w.dropout: only an mlp probe takes dropout"),
    "batch_norm on linear": (lambda c: c["probes"]["linear"].update(batch_norm=True),
                             "config: probes.linear.batch_norm: only an mlp probe takes"),
    "md5 without url": (lambda c: c["datasets"]["demo"].update(download={"md5": "0" * 32}),
                        "config: datasets.demo.download: 'url' is a dependency of 'md5'"),
    "control of log-mel": (lambda c: c["models"].update(lm={"family": "logmel",
                                                          "random_weights": True}),
                           "config: models.lm: random_weights: true: family logmel cannot "
                           "re-initialise its model, so it has no random-weights control"),
    "sample rate": (lambda c: c["models"]["logmel"].update(options={"sample_rate": 1_000_000_000}),
                    "config: models.logmel.sample_rate: 1000000000 is greater than the maximum "
                    "of 192000"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_REFUSALS))
def test_a_setting_that_would_silently_break_a_run_is_refused(tmp_path, case):
    change, message = CONFIG_REFUSALS[case]
    assert refusal(copy_workflow(tmp_path), change).startswith(message)


def test_a_key_given_twice_is_refused(tmp_path):
    workflow = copy_workflow(tmp_path)
    text = (workflow / "config.yaml").read_text()
    (workflow / "twice.yaml").write_text(text + "\nmodels:\n  logmel: {family: logmel}\n")
    result = snakemake(workflow, "-n", "--cores", "1", "--configfile", "twice.yaml", check=False)
    assert result.returncode != 0
    line = config_error(result.stdout + result.stderr)
    assert line.startswith("config: models: given twice in one mapping (twice.yaml, line ")


def numeric_settings(schema: dict, where: str = "") -> dict[str, dict]:
    """Every numeric setting of the schema (array items and oneOf branches too), by key."""
    found = {}
    if schema.get("type") in ("integer", "number"):
        found[where] = schema
    for key, sub in schema.get("properties", {}).items():
        found |= numeric_settings(sub, f"{where}.{key}".strip("."))
    for sub in [schema.get("additionalProperties"), schema.get("items"),
                *schema.get("oneOf", [])]:
        if isinstance(sub, dict):
            found |= numeric_settings(sub, where)
    return found


def test_every_numeric_setting_has_a_range():
    schema = yaml.safe_load((REPO / "config.schema.yaml").read_text())
    numbers = numeric_settings(schema)
    assert len(numbers) >= 18
    for key, spec in numbers.items():
        assert {"minimum", "exclusiveMinimum"} & set(spec), key
        assert {"maximum", "exclusiveMaximum"} & set(spec), key


def test_device_cuda_without_a_gpu_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(AudioprobeError, match="extraction.device is cuda, but this job sees no "
                                              "GPU"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def extract_to(clips: pd.DataFrame, out: Path) -> pd.DataFrame:
    return extract(clips, LogMelEncoder(), out, attrs={"model": "logmel"},
                   settings=ExtractionSettings.from_config(num_workers=0))


def test_a_shard_of_unusable_clips_records_skips_and_merges(tmp_path):
    (tmp_path / "text.wav").write_text("not audio")
    (tmp_path / "folder.wav").mkdir()
    bad = manifest.make([{"clip_id": name, "path": str(tmp_path / f"{name}.wav"), "label": "x",
                          "fold": 1} for name in ("text", "folder", "missing")])
    rejected = extract_to(bad, tmp_path / "0.h5")
    reasons = dict(zip(rejected["clip_id"], rejected["reason"]))
    assert reasons["text"].startswith("unreadable audio")
    assert reasons["folder"] == f"a folder, not a file: {tmp_path / 'folder.wav'}"
    assert reasons["missing"] == f"no such file: {tmp_path / 'missing.wav'}"
    empty = open_store(tmp_path / "0.h5")
    assert len(empty.meta) == 0 and empty.n_layers == 1
    sf.write(tmp_path / "good.wav", np.sin(np.arange(8000) / 3).astype(np.float32), 16000)
    good = manifest.make([{"clip_id": "good", "path": str(tmp_path / "good.wav"), "label": "x",
                           "fold": 1}])
    extract_to(good, tmp_path / "1.h5")
    merge([tmp_path / "0.h5", tmp_path / "1.h5"], tmp_path / "all.h5")
    merged = open_store(tmp_path / "all.h5")
    assert list(merged.meta["clip_id"]) == ["good"]
    np.testing.assert_array_equal(merged.layer(0), open_store(tmp_path / "1.h5").layer(0))
    merge([tmp_path / "0.h5"], tmp_path / "none.h5")  # a dataset of unusable clips only
    assert len(open_store(tmp_path / "none.h5").meta) == 0


def test_a_failed_write_leaves_no_temporary_store(tmp_path, monkeypatch):
    sf.write(tmp_path / "a.wav", np.sin(np.arange(8000) / 3).astype(np.float32), 16000)
    clips = manifest.make([{"clip_id": "a", "path": str(tmp_path / "a.wav"), "label": "x",
                            "fold": 1}])

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module, "_write_meta", full)  # while the store is finalised
    with pytest.raises(OSError, match="No space left"):
        extract_to(clips, tmp_path / "s.h5")
    monkeypatch.undo()
    monkeypatch.setattr(extract_module.ChunkWriter, "flush", full)  # while clips are written
    with pytest.raises(OSError, match="No space left"):
        extract_to(clips, tmp_path / "s.h5")
    monkeypatch.undo()
    extract_to(clips, tmp_path / "s.h5")
    monkeypatch.setattr(store_module, "_write_meta", full)
    with pytest.raises(OSError, match="No space left"):
        merge([tmp_path / "s.h5"], tmp_path / "m.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "s.h5"]


def probe_file(demo_run: Path) -> Path:
    return demo_run / "results/probes/demo/logmel/linear.pt"


def test_label_records_a_skip_for_every_unusable_file(demo_run, tmp_path):
    (tmp_path / "notes.txt").write_text("not audio")
    paths = [str(tmp_path), str(tmp_path / "notes.txt"), str(tmp_path / "gone.wav")]
    table = label(paths, probe_file(demo_run))
    assert list(table["file"]) == paths and (table["rank"] == 0).all()
    assert list(table["skipped"]) == [f"a folder, not a file: {tmp_path}",
                                      table["skipped"][1], f"no such file: {tmp_path / 'gone.wav'}"]
    assert table["skipped"][1].startswith("unreadable audio")


def test_label_refuses_what_is_not_a_probe_in_one_line(demo_run, tmp_path):
    wav = demo_run / "resources/datasets/demo/audio/chirp_up-f1-s0-t0.wav"
    weights = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(2)}, weights)
    for probe, message in [(demo_run / "results/tables/summary.csv", "not a probe file"),
                           (demo_run / "results/probes", "a folder, not a probe file"),
                           (weights, "not a probe file of audioprobe")]:
        result = subprocess.run([sys.executable, "-m", "audioprobe.cli", "label", str(probe),
                                 str(wav)], capture_output=True, text=True)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"audioprobe: {probe}: {message}"), result.stderr
        assert result.stderr.count("\n") == 1


def test_a_changed_local_checkpoint_is_fetched_again_and_refused_by_its_old_card(tmp_path):
    built = fetch("built", {"family": "transformers", "architecture": TINY_HUBERT,
                            "random_weights": True}, tmp_path / "models")
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(built["path"], checkpoint)
    card = fetch("local", {"family": "transformers", "checkpoint": str(checkpoint)},
                 tmp_path / "models")
    load_encoder(card)
    # the checkpoint folder replaced by another checkpoint of the same shapes
    other = fetch("other", {"family": "transformers", "architecture": TINY_HUBERT | {
        "hidden_act": "relu"}, "random_weights": True}, tmp_path / "models")
    shutil.rmtree(checkpoint)
    shutil.copytree(other["path"], checkpoint)
    with pytest.raises(AudioprobeError, match=r"model local: the weights at .* are sha256:\w+, "
                                              r"not sha256:\w+ as when its card was written"):
        load_encoder(card)
    assert fetch("local", {"family": "transformers", "checkpoint": str(checkpoint)},
                 tmp_path / "models")["revision"] != card["revision"]
    # the workflow fetches it again (and so re-extracts) when the folder changes
    workflow = copy_workflow(tmp_path / "workflow")
    config = base()
    config["models"] = {"local": {"family": "transformers", "checkpoint": str(checkpoint)}}
    (workflow / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(workflow, "resources/models/local.json", "--cores", "1")
    assert "Nothing to be done" in plan(workflow, "resources/models/local.json")
    (checkpoint / "model.safetensors").write_bytes((checkpoint / "model.safetensors")
                                                   .read_bytes())  # rewritten in place
    assert re.search(r"^fetch_model\s+1$", plan(workflow, "resources/models/local.json"), re.M)


def test_a_truncated_store_is_built_again(demo_run, tmp_path):
    folder = finished_copy(demo_run, tmp_path / "truncated")
    store = folder / "results/features/demo/logmel.h5"
    with open(store, "r+b") as f:
        f.truncate(store.stat().st_size // 2)
    damaged = store.read_bytes()
    dry = plan(folder)
    assert "results/features/demo/logmel.h5 is unreadable (" in dry
    assert (folder / "results/features/demo/logmel.h5.unreadable").read_bytes() == damaged
    # its store's two probes (log-mel has no weighted probe), its linear probe on fractions,
    # the dataset's similarity
    for rule, jobs in (("merge_features", 1), ("probe", 2), ("label_efficiency_probe", 1),
                       ("layer_similarity", 1), ("summary", 1)):
        assert re.search(rf"^{rule}\s+{jobs}$", dry, re.M), dry
    snakemake(folder, "results/features/demo/logmel.h5", "--cores", "2")
    with h5py.File(store) as rebuilt, h5py.File(demo_run / "results/features/demo/logmel.h5") as f:
        np.testing.assert_array_equal(rebuilt["features"][...], f["features"][...])


def test_a_deleted_probe_file_is_made_again(demo_run, tmp_path):
    folder = finished_copy(demo_run, tmp_path / "deleted")
    for output in ("probes/demo/logmel/linear.pt", "predictions/demo/crepe_tiny/mlp.csv",
                   "probes/demo/crepe_tiny/weighted.layer_weights.csv"):
        (folder / "results" / output).unlink()
    assert re.search(r"^probe\s+3$", plan(folder), re.M)


def test_result_tables_are_read_with_their_dtypes_whatever_the_values(tmp_path):
    path = tmp_path / "comparisons.csv"
    path.write_text("dataset,probe,metric,model_a,model_b,relation,mean_a,mean_b,difference,"
                    "ci_low,ci_high,p_value,p_holm,test,n\n"
                    "NA,linear,accuracy,logmel,hubert,vs log-mel baseline,1,1,0,-0.0833333,0,1,"
                    "1,paired,1\n")
    table = read_table(path)
    assert table["dataset"].item() == "NA"
    assert all(table[c].dtype == np.float64 for c in ("mean_a", "difference", "ci_high"))
    assert table["n"].dtype == np.int64
    turned = comparisons_of(SimpleNamespace(comparisons=table), "NA", "linear", "hubert")
    assert turned[["ci_low", "ci_high"]].values.tolist() == [[0.0, 0.0833333]]
    runs = tmp_path / "runs.csv"
    runs.write_text("dataset,model,probe,layer,fold,seed,lr,val_accuracy,accuracy,chosen\n"
                    "d,m,p,0,1,0,1,1,1,True\n")
    row = read_table(runs).iloc[0]
    assert isinstance(row["accuracy"], float) and row["chosen"] is np.True_
