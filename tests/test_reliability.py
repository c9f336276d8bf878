"""What re-runs after a finished run, and what a careless edit does: the same config in another
key order re-runs nothing, nor does a runtime setting changed in it; an edited dataset re-runs
its manifest and everything after it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import yaml

from audioprobe import manifest
from audioprobe.datasets import build_manifest
from audioprobe.errors import AudioprobeError
from audioprobe.features.extract import resolve_device
from tests.conftest import REPO, copy_workflow, snakemake
from tests.test_config import base, config_error, dry_run_with


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
    assert re.search(r"^probe\s+4$", plan(folder), re.M)


def test_an_edited_dataset_re_runs_its_manifest_and_what_follows(tmp_path):
    folder = copy_workflow(tmp_path / "edited")
    store = "results/features/demo/logmel.h5"
    snakemake(folder, store, "--cores", "2")
    demo = folder / "resources/datasets/demo"
    table = pd.read_csv(demo / "demo.csv")
    # an overwritten audio file (same name, other content) re-runs the manifest and extraction
    shutil.copy(demo / table["path"].iloc[1], demo / table["path"].iloc[0])
    dry = plan(folder, store)
    assert re.search(r"^manifest\s+1$", dry, re.M), dry
    assert re.search(r"^merge_features\s+1$", dry, re.M), dry  # its shards once planned
    snakemake(folder, "results/manifests/demo.csv", "--cores", "1")
    assert "Nothing to be done" in plan(folder, "results/manifests/demo.csv")
    # a deleted one too (and the manifest then names it)
    (demo / table["path"].iloc[2]).unlink()
    assert re.search(r"^manifest\s+1$", plan(folder, store), re.M)
    shutil.copy(demo / table["path"].iloc[3], demo / table["path"].iloc[2])
    # six rows added to the CSV are read on the next run
    extra = table.iloc[:6].assign(path=[f"audio/extra{i}.wav" for i in range(6)],
                                  group=[f"extra{i}" for i in range(6)])
    for i, row in enumerate(table.iloc[:6].itertuples()):
        shutil.copy(demo / row.path, demo / f"audio/extra{i}.wav")
    pd.concat([table, extra]).to_csv(demo / "demo.csv", index=False)
    assert re.search(r"^manifest\s+1$", plan(folder, store), re.M)
    snakemake(folder, "results/manifests/demo.csv", "--cores", "1")
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
    "sample rate": (lambda c: c["models"]["logmel"].update(sample_rate=1_000_000_000),
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
