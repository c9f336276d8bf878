"""Kill and resume: an extraction job killed while it writes, and Snakemake itself killed with
its jobs, leave nothing at a store's final name that is not complete; the README's resume steps
(run the same command again, after `snakemake --unlock` when Snakemake itself was killed) redo
only the missing shards, and the merged store equals the single-job store of the demo run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from audioprobe.features.store import open_store
from tests.conftest import SNAKEMAKE_TIMEOUT, copy_workflow, snakemake, tail

SHARD_SIZE = 40  # the demo's 160 clips in 4 shards
SHARDS = "results/features/demo/logmel.shards"
STORE = "results/features/demo/logmel.h5"
RUN = (STORE, "--cores", "1", "--configfile", "shards.yaml")


def final_shards(folder: Path) -> list[Path]:
    """Files at a shard store's final name (``<shard>.h5``)."""
    return [p for p in (folder / SHARDS).glob("*.h5") if re.fullmatch(r"\d+\.h5", p.name)]


def shard_files(folder: Path) -> dict[Path, tuple[int, int]]:
    """Every file next to the shard stores (final or temporary), with its inode and
    modification time."""
    found = {}
    for path in (folder / SHARDS).glob("*"):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        found[path] = (stat.st_ino, stat.st_mtime_ns)
    return found


def shard_of(path: Path) -> int:
    return int(re.match(r"\d+", path.name).group())


def kill_while_writing(folder: Path, whole_run: bool) -> tuple[int, str]:
    """Start the workflow; once it has finished one more shard, and as soon as the next shard
    job has created or changed a file (under whatever name it writes), stop Snakemake and its
    jobs (SIGSTOP), then SIGKILL that job (Snakemake goes on, and fails) or all of them.
    Return the shard that was being written and Snakemake's output."""
    wanted = len(final_shards(folder)) + 1
    armed: tuple[set[int], dict] | None = None  # shards complete then, and the files then
    log = folder / f"killed-{'run' if whole_run else 'job'}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "snakemake", *RUN], cwd=folder,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + SNAKEMAKE_TIMEOUT
    try:
        while True:
            if armed is None and len(final_shards(folder)) >= wanted:
                armed = {shard_of(p) for p in final_shards(folder)}, shard_files(folder)
            fresh = [] if armed is None else [
                p for p, stat in shard_files(folder).items()
                if armed[1].get(p) != stat and shard_of(p) not in armed[0]]
            if fresh:
                os.killpg(proc.pid, signal.SIGSTOP)
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no shard was caught writing:\n{tail(log.read_text())}")
            time.sleep(0.002)
        shard = shard_of(fresh[0])
        jobs = [p for p in psutil.Process(proc.pid).children(recursive=True)
                if any("extract.py" in arg for arg in p.cmdline())]
        assert jobs, "the extraction job's process was not found"
        if whole_run:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            for job in jobs:
                job.send_signal(signal.SIGKILL)
            os.killpg(proc.pid, signal.SIGCONT)
        psutil.wait_procs(jobs, timeout=60)  # gone, with their open files
        proc.wait(timeout=SNAKEMAKE_TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0, tail(log.read_text())
    return shard, log.read_text()


def started_shards(output: str) -> list[int]:
    """The extraction shards a Snakemake run started, from its job headers."""
    return [int(s) for s in re.findall(r"wildcards: dataset=demo, model=logmel, shard=(\d+)",
                                       output)]


def complete_shards(folder: Path, manifest: pd.DataFrame) -> dict[int, int]:
    """Shard -> inode of every file at a shard store's final name; each must open as a
    complete store holding exactly its shard's clips."""
    found = {}
    for path in final_shards(folder):
        shard = int(path.stem)
        try:
            store = open_store(path)  # refuses a store not marked complete
        except (OSError, ValueError) as exc:
            pytest.fail(f"{path.name} is at a final name but is not a complete store: {exc}")
        expected = manifest["clip_id"].iloc[shard * SHARD_SIZE:(shard + 1) * SHARD_SIZE]
        assert list(store.meta["clip_id"]) == list(expected), path
        assert store.layer(0).shape[0] == len(expected)
        found[shard] = path.stat().st_ino
    return found


def test_killed_extraction_resumes_with_only_the_missing_shards(demo_run, tmp_path):
    folder = copy_workflow(tmp_path / "wf", extra=("profiles",))
    (folder / "shards.yaml").write_text(
        "models:\n  logmel: {family: logmel, pooling: mean+std}\n"
        f"extraction: {{shard_size: {SHARD_SIZE}, num_workers: 0}}\n")
    # The manifest (a checkpoint) first, so that every run plans all four shards.
    snakemake(folder, "results/manifests/demo.csv", "--cores", "1")
    manifest = pd.read_csv(folder / "results/manifests/demo.csv")

    # 1. After one shard, the next extraction job is killed while it writes: Snakemake stops
    # with an error.
    killed, output = kill_while_writing(folder, whole_run=False)
    assert "Error in rule extract_shard" in output
    done = complete_shards(folder, manifest)
    assert len(done) == 1 and killed not in done and not (folder / STORE).exists()

    # 2. The same command again; Snakemake itself is killed, with its jobs, while a shard writes.
    killed, output = kill_while_writing(folder, whole_run=True)
    assert set(started_shards(output)).isdisjoint(done), output
    assert killed not in done
    before = complete_shards(folder, manifest)
    assert len(before) == 2 and killed not in before and not (folder / STORE).exists()
    assert all(before[shard] == inode for shard, inode in done.items())

    # 3. Resume as the README says: unlock, then the same command.
    snakemake(folder, *RUN, "--unlock")
    result = snakemake(folder, *RUN)
    assert sorted(started_shards(result.stdout + result.stderr)) == sorted(
        set(range(4)) - set(before))
    merged, single = open_store(folder / STORE), open_store(demo_run / STORE)
    np.testing.assert_array_equal(merged.layer(0), single.layer(0))
    pd.testing.assert_frame_equal(merged.meta, single.meta)
    assert merged.attrs == single.attrs
