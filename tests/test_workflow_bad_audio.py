"""Bad audio through the whole workflow: clips that cannot be used are listed in the rejected
table with their reason and in the report's data audit, every manifest row is either stored or
rejected, and ``bad_audio: fail`` stops on the first such clip with one line naming it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

from audioprobe.datasets import synthetic
from audioprobe.features.store import open_store
from tests.conftest import copy_workflow, snakemake

SHARD_SIZE = 22
# clip id: (what the file holds, the start of the reason it is rejected with)
BAD = {
    "garbled-header": ("text, not audio", "unreadable audio"),
    "all-nan": ("one second of NaN samples", "non-finite samples"),
    "zero-length": ("a WAV header and no samples", "empty clip"),
    "NA": ("text, not audio; an id that CSV readers take for a missing value",
           "unreadable audio"),
}


def write_bad(audio: Path) -> None:
    for name in ("garbled-header", "NA"):
        (audio / f"{name}.wav").write_text("this is not audio")
    sf.write(audio / "all-nan.wav", np.full((16000, 1), np.nan, dtype=np.float32), 16000,
             subtype="FLOAT")
    sf.write(audio / "zero-length.wav", np.zeros((0, 1)), 16000)


def config(csv: Path, bad_audio: str) -> dict:
    return {
        "datasets": {"odd": {"adapter": "custom", "root": str(csv)}},
        "models": {"logmel": {"family": "logmel", "pooling": "mean+std"}},
        "probes": {"linear": {"kind": "linear"}},
        "protocol": {"seeds": 1, "max_epochs": 5, "patience": 2, "learning_rates": [0.01],
                     "weight_decays": [0.0]},
        "extraction": {"num_workers": 1, "device": "cpu", "shard_size": SHARD_SIZE,
                       "bad_audio": bad_audio},
    }


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory) -> Path:
    """The workflow, to its report, on 40 good clips (8 classes x 5 folds) and the bad ones:
    the NaN clip in the first shard, the others in the second."""
    tmp = tmp_path_factory.mktemp("bad_audio")
    csv = tmp / "data/clips.csv"
    csv.parent.mkdir()
    good = synthetic.generate(csv, n_folds=5, sources_per_fold=1, clips_per_source=1)
    write_bad(csv.parent / "audio")
    bad = [{"path": f"audio/{name}.wav", "label": "tone_low", "fold": 1 + i % 5, "group": name}
           for i, name in enumerate(BAD)]
    rows = good.to_dict("records")
    rows = rows[:10] + bad[1:2] + rows[10:30] + bad[:1] + bad[2:] + rows[30:]
    pd.DataFrame(rows).to_csv(csv, index=False)
    workflow = copy_workflow(tmp / "workflow")
    for bad_audio in ("skip", "fail"):
        (workflow / f"{bad_audio}.yaml").write_text(yaml.safe_dump(config(csv, bad_audio)))
    snakemake(workflow, "--cores", "2", "--configfile", "skip.yaml", "--replace-workflow-config")
    return workflow


def test_bad_clips_sit_in_both_shards(odd_run):
    manifest = pd.read_csv(odd_run / "results/manifests/odd.csv", dtype=str,
                           keep_default_na=False)
    shard = {clip: i // SHARD_SIZE for i, clip in enumerate(manifest["clip_id"])}
    assert len(manifest) == 44 and set(BAD) <= set(shard)
    assert shard["all-nan"] == 0
    assert {shard[clip] for clip in BAD if clip != "all-nan"} == {1}


def test_rejected_table_lists_each_bad_clip_with_its_reason(odd_run):
    rejected = pd.read_csv(odd_run / "results/features/odd/logmel.rejected.csv", dtype=str,
                           keep_default_na=False)
    assert sorted(rejected["clip_id"]) == sorted(BAD)
    for row in rejected.itertuples():
        assert row.reason.startswith(BAD[row.clip_id][1]), row
        assert Path(row.path).name == f"{row.clip_id}.wav"


def test_every_manifest_row_is_stored_or_rejected(odd_run):
    manifest = pd.read_csv(odd_run / "results/manifests/odd.csv", dtype=str,
                           keep_default_na=False)
    rejected = pd.read_csv(odd_run / "results/features/odd/logmel.rejected.csv", dtype=str,
                           keep_default_na=False)
    store = open_store(odd_run / "results/features/odd/logmel.h5")
    stored = list(store.meta["clip_id"])
    assert (len(stored), len(rejected), len(manifest)) == (40, 4, 44)
    assert set(stored).isdisjoint(rejected["clip_id"])
    # stored rows keep the manifest's order
    assert stored == [c for c in manifest["clip_id"] if c not in BAD]
    assert np.isfinite(store.layer(0)).all()


def test_report_audit_lists_the_rejected_clips(odd_run):
    html = (odd_run / "results/report/report.html").read_text()
    for clip in ("garbled-header", "all-nan", "zero-length"):
        assert clip in html, clip


def test_bad_audio_fail_stops_on_the_nan_clip_naming_it(odd_run):
    """The first shard holds one bad clip, which only decoding finds (its header is fine)."""
    shard = "results/features/odd/logmel.shards/0.h5"
    result = snakemake(odd_run, "--cores", "1", "--configfile", "fail.yaml",
                       "--replace-workflow-config", shard, check=False)
    console = result.stdout + result.stderr
    assert result.returncode != 0
    lines = [line for line in console.splitlines() if "all-nan" in line]
    assert len(lines) == 1, console
    assert lines[0].startswith("audioprobe: clip all-nan (")
    assert lines[0].endswith("all-nan.wav): non-finite samples (NaN or infinity)")
    assert "Traceback" not in console
    assert not (odd_run / shard).exists()
