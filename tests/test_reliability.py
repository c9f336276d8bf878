"""What re-runs after a finished run, and what a careless edit does: the same config in another
key order re-runs nothing, nor does a runtime setting changed in it; an edited dataset re-runs
its manifest and everything after it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import yaml

from tests.conftest import copy_workflow, snakemake


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
