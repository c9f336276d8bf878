"""End to end on every dataset adapter: the workflow reads each fixture layout, extracts, probes
and summarises it; downloads a dataset whose root is absent; and config/study.yaml is valid."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import h5py
import pandas as pd
import pytest
import yaml

from audioprobe.datasets.download import archives
from tests.conftest import REPO, copy_workflow, snakemake
from tests.fixtures import layouts

LOGMEL = {"logmel": {"family": "logmel", "pooling": "mean+std"}}
LINEAR = {"linear": {"kind": "linear"}}
PROTOCOL = {"seeds": 1, "max_epochs": 5, "patience": 2, "learning_rates": [0.01],
            "weight_decays": [0.0]}
EXTRACTION = {"num_workers": 0, "device": "cpu"}


def fixture_config(datasets: dict) -> dict:
    return {"datasets": datasets, "models": LOGMEL, "probes": LINEAR, "protocol": PROTOCOL,
            "extraction": EXTRACTION}


def run_with(workflow: Path, config: dict, *targets: str, check: bool = True):
    """Run the workflow on ``config`` alone (not merged into the demo config.yaml)."""
    path = workflow / "test-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return snakemake(workflow, "--cores", "2", "--configfile", path.name,
                     "--replace-workflow-config", *targets, check=check)


# --- every adapter, one workflow run ---------------------------------------------------------

def fixtures(data: Path) -> dict[str, tuple[dict, dict]]:
    """name: (dataset spec, expectations) for every adapter and task."""
    esc50 = layouts.make_esc50(data / "esc50")
    us8k = layouts.make_urbansound8k(data / "urbansound8k")
    sc1 = layouts.make_speechcommands(data / "speechcommands_v1", version=1)
    sc2 = layouts.make_speechcommands(data / "speechcommands_v2", version=2)
    nsynth = layouts.make_nsynth(data / "nsynth")
    libri = layouts.make_librispeech(data / "librispeech")
    # ICBHI has no validation split: the probe stage carves one from train, which needs more
    # training clips than the default fixture has (see layouts.icbhi_extra_train).
    icbhi = layouts.make_icbhi(data / "icbhi", extra_train=7)
    custom_csv = layouts.make_custom_csv(data / "custom_csv")
    custom_folders = layouts.make_custom_folders(data / "custom_folders")

    def spec(adapter: str, want: dict, **options) -> dict:
        entry = {"adapter": adapter, "root": str(want["root"])}
        return entry | ({"options": options} if options else {})

    return {
        "esc50": (spec("esc50", esc50), esc50 | {"folds": 5}),
        "urbansound8k": (spec("urbansound8k", us8k), us8k | {"folds": len(us8k["per_fold"])}),
        "sc_v1_words": (spec("speechcommands", sc1, version=1, task="words"), sc1),
        "sc_v2_12": (spec("speechcommands", sc2, version=2, task="12"), sc2["task12"]),
        "nsynth": (spec("nsynth", nsynth), nsynth),
        "librispeech": (spec("librispeech", libri), libri),
        "icbhi_cycles": (spec("icbhi", icbhi, task="cycles"), icbhi["cycles"]),
        "icbhi_recordings": (spec("icbhi", icbhi, task="recordings"), icbhi["recordings"]),
        "custom_csv": (spec("custom", custom_csv), custom_csv),
        "custom_folders": (spec("custom", custom_folders), custom_folders | {"folds": 5}),
    }


@pytest.fixture(scope="module")
def every_dataset(tmp_path_factory):
    """The workflow run once (to the summary table) on the fixtures of every adapter."""
    tmp = tmp_path_factory.mktemp("every_dataset")
    cases = fixtures(tmp / "data")
    workflow = copy_workflow(tmp / "workflow")
    config = fixture_config({name: spec for name, (spec, _) in cases.items()})
    # The fixtures are tiny: run two single-threaded extract/probe jobs at a time.
    run_with(workflow, config, "results/tables/summary.csv",
             "--set-threads", "extract=1", "probe=1")
    return workflow, {name: want for name, (_, want) in cases.items()}


DATASETS = ["esc50", "urbansound8k", "sc_v1_words", "sc_v2_12", "nsynth", "librispeech",
            "icbhi_cycles", "icbhi_recordings", "custom_csv", "custom_folders"]
# name: (comparable, number of notes, groups on two sides by a recorded exception)
# (comparable, number of notes, leakage exceptions); a label only in the test split is noted
NOTES = {"urbansound8k": (True, 1, {"106905"}),
         "sc_v2_12": (False, 5, set()), "sc_v1_words": (True, 1, set()),
         "nsynth": (True, 2, set()), "librispeech": (True, 2, set()),
         "icbhi_cycles": (True, 2, {"156", "218"}),
         "icbhi_recordings": (True, 3, {"156", "218"})}


@pytest.mark.slow
@pytest.mark.parametrize("name", DATASETS)
def test_fixture_runs_end_to_end(every_dataset, name):
    workflow, expected = every_dataset
    want = expected[name]
    table = pd.read_csv(workflow / f"results/manifests/{name}.csv", dtype={"label": str})
    assert len(table) == want["n"]
    if "labels" in want:
        assert set(table["label"]) == want["labels"]
    if "per_fold" in want:
        assert table["fold"].value_counts().to_dict() == want["per_fold"]
    if "per_split" in want:
        assert table["split"].value_counts().to_dict() == want["per_split"]

    # the adapter's notes and the class counts beside the manifest, and in the job's log
    notes = json.loads((workflow / f"results/manifests/{name}.notes.json").read_text())
    comparable, n_notes, exceptions = NOTES.get(name, (True, 0, set()))
    assert (notes["dataset"], notes["comparable"]) == (name, comparable)
    assert len(notes["notes"]) == n_notes and set(notes["leakage_exceptions"]) == exceptions
    assert notes["class_counts"]["all"] == table["label"].value_counts().to_dict()
    log = (workflow / f"logs/manifest/{name}.log").read_text()
    assert all(f"note: {note}" in log for note in notes["notes"])

    # every clip is stored or rejected
    with h5py.File(workflow / f"results/features/{name}/logmel.h5") as f:
        assert f.attrs["complete"]
        assert not f.attrs["waveform_normalized"]  # log-mel has no such step
        assert (f.attrs["max_seconds"], f.attrs["max_clip_seconds"]) == (30, 600)
        stored = f["clip_id"].asstr()[...]
        assert f["features"].shape == (1, len(stored), 128)
    rejected = pd.read_csv(workflow / f"results/features/{name}/logmel.rejected.csv")
    assert len(stored) + len(rejected) == len(table)
    assert set(stored) | set(rejected.get("clip_id", [])) == set(table["clip_id"])

    # one round per fold (HEAR), or one round on the official splits
    summary = pd.read_csv(workflow / "results/tables/summary.csv")
    rows = summary[summary["dataset"] == name]
    assert len(rows) == 1  # log-mel has one layer; one probe
    assert rows["n_rounds"].item() == want.get("folds", 1)
    assert rows["n_seeds"].item() == 1
    runs = pd.read_csv(workflow / "results/tables/runs.csv")
    runs = runs[runs["dataset"] == name]
    assert (runs["n_train"] > 0).all() and (runs["n_valid"] > 0).all()
    assert (runs["n_test"] > 0).all()
    if "folds" in want:
        assert runs["n_test"].sum() == len(stored)  # every clip tested once
    else:
        assert runs["n_test"].item() == (table["split"] == "test").sum()
        assert runs["n_train"].item() + runs["n_valid"].item() == (table["split"] != "test").sum()


# --- download from a loopback server -----------------------------------------------------------



def esc50_zip(tmp_path: Path, served: Path) -> tuple[Path, str]:
    """ESC-50's fixture zipped as GitHub serves it (one top folder, ESC-50-master/); its md5."""
    layouts.make_esc50(tmp_path / "src" / "ESC-50-master")
    archive = Path(shutil.make_archive(str(served / "esc50"), "zip", tmp_path / "src"))
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


ESC_ROOT = "resources/datasets/ESC-50-master"


def test_absent_root_is_downloaded_then_read(tmp_path, server):
    served, base = server
    archive, md5 = esc50_zip(tmp_path, served)
    workflow = copy_workflow(tmp_path / "workflow")
    download = {"url": f"{base}/{archive.name}", "md5": md5}
    config = fixture_config({"esc": {"adapter": "esc50", "root": ESC_ROOT, "download": download}})
    assert not (workflow / ESC_ROOT).exists()
    run_with(workflow, config, "results/manifests/esc.csv")

    root = workflow / ESC_ROOT
    assert sorted(p.name for p in root.iterdir()) == ["audio", "meta"]  # archive removed
    assert not list(root.parent.glob(".*.part"))
    flag = json.loads((workflow / "resources/datasets/esc.downloaded").read_text())
    assert flag["fetched"] and flag["url"] == download["url"]
    table = pd.read_csv(workflow / "results/manifests/esc.csv")
    assert len(table) == len(layouts.ESC50_ROWS)
    assert all(Path(p).is_relative_to(root.resolve()) for p in table["path"])
    # the root now exists: the manifest is up to date, nothing reruns
    again = snakemake(workflow, "-n", "--cores", "1", "--configfile", "test-config.yaml",
                      "--replace-workflow-config", "results/manifests/esc.csv")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_failed_download_leaves_no_root_and_no_flag(tmp_path, server):
    served, base = server
    archive, _ = esc50_zip(tmp_path, served)
    workflow = copy_workflow(tmp_path / "workflow")
    download = {"url": f"{base}/{archive.name}", "md5": "0" * 32}
    config = fixture_config({"esc": {"adapter": "esc50", "root": ESC_ROOT, "download": download}})
    result = run_with(workflow, config, "results/manifests/esc.csv", check=False)
    assert result.returncode != 0
    assert "download_dataset" in result.stdout + result.stderr
    assert not (workflow / ESC_ROOT).exists()
    assert not (workflow / "resources/datasets/esc.downloaded").exists()
    assert not list((workflow / "resources/datasets").glob(".*.part"))
    assert not (workflow / "results/manifests/esc.csv").exists()
    log = (workflow / "logs/download_dataset/esc.log").read_text()
    assert "checksum mismatch" in log and f"expected md5 {'0' * 32}" in log


def test_download_without_checksum_is_noted_with_its_sha256(tmp_path, server):
    """A url given without a checksum is fetched, with a warning in the job's log and a note in
    the manifest's notes giving the sha256 found, so that the user can pin it."""
    served, base = server
    archive, _ = esc50_zip(tmp_path, served)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    workflow = copy_workflow(tmp_path / "workflow")
    url = f"{base}/{archive.name}"
    config = fixture_config({"esc": {"adapter": "esc50", "root": ESC_ROOT,
                                     "download": {"url": url}}})
    run_with(workflow, config, "results/manifests/esc.csv")
    log = (workflow / "logs/download_dataset/esc.log").read_text()
    assert re.search(rf"WARNING .*{re.escape(url)} has no checksum.*sha256 {digest}", log)
    flag = json.loads((workflow / "resources/datasets/esc.downloaded").read_text())
    assert flag["files"] == [{"url": url, "sha256": digest, "checked": []}]
    notes = json.loads((workflow / "results/manifests/esc.notes.json").read_text())["notes"]
    assert [n for n in notes if digest in n and url in n and "without a checksum" in n]


def test_cve_2025_4517_archive_stops_the_download_in_one_line(tmp_path, server):
    """The published CVE-2025-4517 archive, configured as a dataset's download url: the job
    stops with one line naming the member, nothing is written outside (or inside) the root."""
    from tests.test_download import cve_2025_4517_tar

    served, base = server
    workflow = copy_workflow(tmp_path / "workflow")
    outside = workflow / "resources" / "outside"
    outside.mkdir(parents=True)
    (outside / "victim").write_text("original\n")
    partial = (workflow / "resources/datasets/.ESC-50-master.esc.part").resolve()
    (served / "poc.tar").write_bytes(cve_2025_4517_tar(partial, "../outside"))
    download = {"url": f"{base}/poc.tar"}
    config = fixture_config({"esc": {"adapter": "esc50", "root": ESC_ROOT, "download": download}})
    result = run_with(workflow, config, "results/manifests/esc.csv", check=False)
    assert result.returncode != 0
    (line,) = [x for x in (result.stdout + result.stderr).splitlines()
               if x.startswith("audioprobe: ")]
    assert "refusing to unpack poc.tar: member 'a' is a symbolic link" in line
    assert (outside / "victim").read_text() == "original\n"
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert not (workflow / ESC_ROOT).exists() and not partial.exists()
    assert not (workflow / "resources/datasets/esc.downloaded").exists()
    # nothing from the archive; only the planning's stamp of the dataset's source remains
    assert [p.name for p in (workflow / "resources").glob("datasets/*")] == ["esc.source"]


def test_root_in_place_is_read_without_downloading(tmp_path):
    """download: only fills an absent root; a root already there is read as it is."""
    workflow = copy_workflow(tmp_path / "workflow")
    layouts.make_esc50(workflow / ESC_ROOT)
    download = {"url": "http://127.0.0.1:9/unreachable.zip", "md5": "0" * 32}
    config = fixture_config({"esc": {"adapter": "esc50", "root": ESC_ROOT, "download": download}})
    run_with(workflow, config, "results/manifests/esc.csv")
    flag = json.loads((workflow / "resources/datasets/esc.downloaded").read_text())
    assert flag["fetched"] is False
    assert len(pd.read_csv(workflow / "results/manifests/esc.csv")) == len(layouts.ESC50_ROWS)


# --- config/study.yaml -----------------------------------------------------------------------

STUDY = REPO / "config" / "study.yaml"


def test_study_config_passes_schema_validation():
    from snakemake.utils import validate

    config = yaml.safe_load(STUDY.read_text())
    validate(config, schema=str(REPO / "config.schema.yaml"))
    datasets = config["datasets"]
    assert {spec["adapter"] for spec in datasets.values()} == {
        "esc50", "urbansound8k", "speechcommands", "nsynth", "librispeech", "icbhi"}
    assert datasets["speechcommands"]["options"] == {"version": 2, "task": "words"}
    assert datasets["speechcommands_v1_12"]["options"] == {"version": 1, "task": "12",
                                                           "official_test": True}
    assert datasets["nsynth"]["options"] == {"label": "instrument_family_str"}
    assert datasets["librispeech"]["options"] == {"subset": "train-clean-100"}
    assert {datasets[n]["options"]["task"] for n in ("icbhi_cycles", "icbhi_recordings")} == {
        "cycles", "recordings"}
    assert all(spec["root"].startswith("resources/datasets/") for spec in datasets.values())
    models = config["models"]
    assert models["hubert_base"]["checkpoint"] == "facebook/hubert-base-ls960"
    assert models["hubert_base_random"]["random_weights"] is True
    assert models["hubert_base_random"]["checkpoint"] == "facebook/hubert-base-ls960"
    assert models["logmel"]["family"] == "logmel"
    mlp = config["probes"]["mlp"]
    assert (mlp["kind"], mlp["hidden"]) == ("mlp", [256, 256])
    assert config["probes"]["linear"]["kind"] == "linear"
    assert config["protocol"]["seeds"] == 3


def test_study_downloads_are_the_official_archives():
    for name, spec in yaml.safe_load(STUDY.read_text())["datasets"].items():
        if spec.get("download") in (None, {}):  # put in place by hand, or every official file
            assert len(archives(spec["adapter"], spec.get("options"))) > 1, name
            continue
        (official,) = archives(spec["adapter"], spec.get("options"))
        assert spec["download"]["url"] == official["url"], name
        for digest in ("md5", "sha256"):
            assert spec["download"].get(digest) == official.get(digest), (name, digest)


def test_study_config_dry_runs(tmp_path):
    workflow = copy_workflow(tmp_path)
    config = yaml.safe_load(STUDY.read_text())
    for spec in config["datasets"].values():
        if "download" not in spec:  # the rest are fetched by the download rule
            (workflow / spec["root"]).mkdir(parents=True, exist_ok=True)
    result = snakemake(workflow, "-n", "--cores", "1", "--configfile", str(STUDY),
                       "--replace-workflow-config")
    output = result.stdout + result.stderr
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", output, re.MULTILINE))
    downloads = [name for name, spec in config["datasets"].items() if "download" in spec]
    assert int(jobs["download_dataset"]) == len(downloads)
    assert int(jobs["manifest"]) == len(config["datasets"])
    assert int(jobs["fetch_model"]) == len(config["models"])
    assert int(jobs["probe"]) == len(config["datasets"]) * len(config["models"]) * 2
    assert "demo" not in output  # the demo config is replaced, not merged
