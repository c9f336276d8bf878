"""The HTML report: findings, matrix, figures, references and run details against the tables
they come from (a synthetic study whose tables the workflow's own ``audioprobe.tables`` makes,
and the demo run); offline, in a real browser at a wide and a narrow window, and printed."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import types
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import h5py
import nbformat
import pandas as pd
import pytest
import yaml

from audioprobe import datasets, results
from audioprobe.joblog import RUN_DETAILS, read_run_details, run_details
from audioprobe.probes import ALL_LAYERS
from audioprobe.rendering import INPUTS_VARIABLE, front_matter_to_title, render, table_of_contents
from audioprobe.report import colours, cost, errors, findings, formatting, layers, references
from audioprobe.report.matrix import with_headline
from audioprobe.tables import read_table
from tests.conftest import REPO, snakemake
from tests.fixtures.synthetic_study import report_files, write_study

SECTIONS = ["Key findings", "Results matrix", "Setup", "Per-dataset results", "Across tasks",
            "Comparison with published results", "Error analysis", "Data audit", "Cost",
            "Appendix A: Run details", "Appendix B: Published references"]
STUDY_DATASETS = ["esc10", "speechcommands", "icbhi"]
# Per dataset: layers, confusion matrix, feature map, data audit, layer weights, training
# curves, label efficiency, layer similarity; across tasks; cost.
STUDY_FIGURES = 8 * len(STUDY_DATASETS) + 1 + 1
ARTIFACTS = REPO / "tests" / "artifacts"


class Page(HTMLParser):
    """Headings (with ids), tables (by id), figures and the resource/link attributes of a page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.headings: dict[str, list[str]] = {}
        self.ids: set[str] = set()
        self.tables: dict[str, list[list[str]]] = {}
        self.cells_bold: dict[str, list[list[bool]]] = {}
        self.resources: list[str] = []
        self.anchors: list[str] = []
        self.captions: list[str] = []
        self.images = 0
        self._heading: str | None = None
        self._table: str | None = None
        self._fallback: str | None = None
        self._aside = 0  # inside a cell's <sup> (itables' static-preview marker)
        self._cell: list[str] | None = None
        self._bold = False
        self._caption: list[str] | None = None
        self._text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.anchors.append(attrs["href"])
        elif attrs.get("src") or (tag == "link" and attrs.get("href")):
            self.resources.append(attrs.get("src") or attrs["href"])
        self.images += tag == "img"
        if tag in ("h1", "h2", "h3", "h4"):
            self._heading, self._text = tag, []
        elif tag == "figcaption":
            self._caption = []
        elif tag == "div" and attrs.get("id", "").endswith("_fallback"):
            self._fallback = attrs["id"].removesuffix("_fallback")
        elif tag == "table":
            # an itables table's rows are in its static preview, the table after it
            self._table = (attrs.get("id") or self._fallback or f"table-{len(self.tables)}")
            self._fallback = None
            self.tables[self._table], self.cells_bold[self._table] = [], []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
            self.cells_bold[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell, self._bold = [], False
        elif tag == "sup" and self._cell is not None:
            self._aside += 1
        elif tag == "b" and self._cell is not None:
            self._bold = True
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag):
        if tag == self._heading:
            text = "".join(self._text).replace("¶", "").strip()
            self.headings.setdefault(tag, []).append(text)
            self._heading = None
        elif tag == "figcaption" and self._caption is not None:
            self.captions.append("".join(self._caption).strip())
            self._caption = None
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self.cells_bold[self._table][-1].append(self._bold)
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "sup" and self._aside:
            self._aside -= 1

    def handle_data(self, data):
        if self._heading:
            self._text.append(data)
        if self._cell is not None and not self._aside:
            self._cell.append(data)
        if self._caption is not None:
            self._caption.append(data)


def records(rows: list[list[str]]) -> list[dict[str, str]]:
    return [dict(zip(rows[0], row)) for row in rows[1:]]


def render_study(folder: Path, **selection) -> tuple[Path, dict]:
    """Write a synthetic study and render its report; return the page and the study's files."""
    files, config = write_study(folder, **selection)
    files = report_files(folder, files)
    output = folder / "results/report/report.html"
    output.parent.mkdir(parents=True, exist_ok=True)
    (output.parent / "config.yaml").write_text(yaml.safe_dump(config))
    render(REPO / "report/page.py", output, files, config)
    return output, files


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, dict]:
    return render_study(tmp_path_factory.mktemp("study"), datasets=STUDY_DATASETS, clips=160)


@pytest.fixture(scope="module")
def study_page(study) -> Page:
    return Page(study[0].read_text())


@pytest.fixture(scope="module")
def study_tables(study) -> dict[str, pd.DataFrame]:
    """The tables as the report shows them: without the weighted probe's rows of the
    single-layer log-mel baseline (a mix of one layer is its linear probe)."""
    tables = {name: read_table(study[1][name]) for name in ("summary", "layers", "comparisons",
                                                             "runs")}
    summary, pairs = tables["summary"], tables["comparisons"]
    tables["summary"] = summary[~((summary["model"] == "logmel")
                                  & (summary["probe"] == "weighted"))]
    tables["comparisons"] = pairs[~((pairs["probe"] == "weighted")
                                    & ((pairs["model_a"] == "logmel")
                                       | (pairs["model_b"] == "logmel")))]
    return tables


# Synthetic study: every section against the tables -------------------------------------------

def test_sections_in_order_with_a_table_of_contents(study, study_page):
    assert study_page.headings["h1"] == ["audioprobe report"]
    assert [h for h in study_page.headings["h2"] if h in SECTIONS] == SECTIONS
    html = study[0].read_text()
    nav = re.search(r'<nav id="TOC".*?</nav>', html, re.S)[0]
    targets = re.findall(r'href="#([^"]+)"', nav)
    assert len(targets) >= len(SECTIONS) + 3 * len(STUDY_DATASETS)
    assert set(targets) <= study_page.ids
    assert {f"{d}: results" for d in STUDY_DATASETS} <= set(study_page.headings["h3"])


def test_matrix_matches_the_summary(study_page, study_tables):
    summary, comparisons = study_tables["summary"], study_tables["comparisons"]
    rows = records(study_page.tables["matrix"])
    bold = study_page.cells_bold["matrix"][1:]
    assert len(rows) == summary.groupby(["model", "probe"]).ngroups == 4 * 3 - 1
    header = study_page.tables["matrix"][0]
    assert header == ["model", "probe", *STUDY_DATASETS, "mean rank",
                      *(f"{d} sort key" for d in STUDY_DATASETS)]  # the keys hidden
    scored = with_headline(summary)
    scored["rank"] = scored.groupby("dataset")["score"].rank(ascending=False, method="min")
    for row, bolds in zip(rows, bold):
        model = row["model"].split()[0]
        assert row["model"].endswith({"hubert_random": "control", "logmel": "baseline"}.get(
            model, model))
        mine = scored[(scored["model"] == model) & (scored["probe"] == row["probe"])]
        for dataset in STUDY_DATASETS:
            want = mine[mine["dataset"] == dataset].iloc[0]
            score, interval = row[dataset].split(" ", 1)
            assert score == f"{100 * want['score']:.1f}"
            assert interval == f"[{100 * want['score_low']:.1f}, {100 * want['score_high']:.1f}]"
            # bold: no other model of the probe beats it (Holm over every pair), never the
            # highest test score as such
            pairs = comparisons[(comparisons["dataset"] == dataset)
                                & (comparisons["probe"] == row["probe"])
                                & (comparisons["p_holm"] < 0.05)]
            beaten = (((pairs["model_b"] == model) & (pairs["ci_low"] > 0))
                      | ((pairs["model_a"] == model) & (pairs["ci_high"] < 0))).any()
            assert bolds[header.index(dataset)] == (not beaten)
        assert float(row["mean rank"]) == pytest.approx(mine["rank"].mean(), abs=0.005)
    ranks = [float(r["mean rank"]) for r in rows]
    assert ranks == sorted(ranks)
    # icbhi's headline is the ICBHI score (its classes hold "normal"), not accuracy
    icbhi = scored[scored["dataset"] == "icbhi"].iloc[0]
    assert icbhi["score"] == icbhi["icbhi_score_mean"] != icbhi["accuracy_mean"]


def test_key_findings_name_the_best_and_its_comparisons(study, study_tables):
    html = study[0].read_text()
    part = html[html.index('id="Key-findings"'):html.index('id="Results-matrix"')]
    text = re.sub(r"<[^>]+>", "", part)
    summary, comparisons = study_tables["summary"], study_tables["comparisons"]
    for dataset in STUDY_DATASETS:
        paragraph = re.search(rf"{dataset}: best on validation .*?(?=\n)", text)[0]
        scored = with_headline(summary[summary["dataset"] == dataset])
        best = scored.loc[scored["val_score_mean"].idxmax()]  # chosen on validation, not test
        metric = best["headline_metric"]
        assert paragraph.startswith(f"{dataset}: best on validation "
                                    f"({formatting.metric_name(metric)} "
                                    f"{100 * best['val_score_mean']:.1f}%) is {best['model']} "
                                    f"with the {best['probe']} probe")
        assert f"{100 * best[f'{metric}_mean']:.1f}%" in paragraph
        assert f"95% CI {100 * best[f'{metric}_ci_low']:.1f}–" in paragraph
        # every comparison of the best, each pair listed once in either order
        mine = comparisons[(comparisons["dataset"] == dataset)
                           & (comparisons["probe"] == best["probe"])
                           & ((comparisons["model_a"] == best["model"])
                              | (comparisons["model_b"] == best["model"]))]
        others = scored[(scored["probe"] == best["probe"]) & (scored["model"] != best["model"])]
        assert len(mine) == len(others)
        runner_up = others.loc[others["val_score_mean"].idxmax()]
        [pair] = mine[(mine["model_a"] == runner_up["model"])
                      | (mine["model_b"] == runner_up["model"])].to_dict("records")
        sign = 1 if pair["model_a"] == best["model"] else -1
        assert "Against the runner-up on validation, it " in paragraph
        assert f"{runner_up['model']} ({100 * sign * pair['difference']:+.1f} points" in paragraph
        assert f"Holm-adjusted p = {formatting.sig(pair['p_holm'], 2)}" in paragraph
        logmel = mine[mine["model_b"] == "logmel"].to_dict("records")
        if runner_up["model"] != "logmel" and logmel:
            assert (f"Against the log-mel baseline, it {findings.verdict(pd.Series(logmel[0]))}"
                    in paragraph)
    assert "Where the best layers sit" in text
    assert "hubert, linear probe (13 layers, 0 = input embedding, 12 = block 12)" in text
    assert re.search(r"is \S+ with the \S+ probe at (layer \d+ \((input embedding|block "
                     r"\d+)\) of 0–12|all layers|its only layer)", text)
    assert "icbhi: 1 group(s) on both sides of the published split, kept as the split has " \
        "them: patient 101 (recordings in train and in test)" in text


def test_comparisons_are_turned_towards_the_model_asked_about():
    comparisons = pd.DataFrame([{"dataset": "d", "probe": "p", "model_a": "x", "model_b": "y",
                                 "relation": "between models", "mean_a": 0.8, "mean_b": 0.7,
                                 "difference": 0.1, "ci_low": 0.05, "ci_high": 0.15,
                                 "p_holm": 0.01}])
    run = results.Run(summary=pd.DataFrame(), config={}, comparisons=comparisons)
    [turned] = findings.comparisons_of(run, "d", "p", "y").to_dict("records")
    assert (turned["model_a"], turned["model_b"], turned["mean_a"]) == ("y", "x", 0.7)
    assert turned["difference"] == -0.1
    assert (turned["ci_low"], turned["ci_high"]) == (-0.15, -0.05)
    assert findings.verdict(pd.Series(turned)).startswith("is beaten by x (-10.0 points")


def test_verdict_reads_the_interval_and_holm_p():
    row = {"model_b": "b", "difference": 0.031, "ci_low": 0.01, "ci_high": 0.05,
           "p_holm": 0.004}
    verdict = findings.verdict
    assert verdict(pd.Series(row)).startswith("beats b (+3.1 points, 95% CI [1.0, 5.0]")
    assert verdict(pd.Series(row | {"ci_low": -0.01, "p_holm": 0.2})).startswith(
        "is not distinguishable from b")
    # an interval that excludes 0 without Holm's adjustment: the verdict says why it holds back
    assert verdict(pd.Series(row | {"p_holm": 0.3})) == (
        "is not distinguishable, after Holm's adjustment for the dataset's comparisons, from b "
        "(+3.1 points, 95% CI [1.0, 5.0], Holm-adjusted p = 0.30; the interval is not adjusted)")
    assert verdict(pd.Series(row | {"difference": -0.03, "ci_low": -0.05,
                                    "ci_high": -0.01})).startswith("is beaten by b")


def test_figures_are_numbered_with_captions(study, study_page):
    assert study_page.images == STUDY_FIGURES
    assert [c.split(".")[0] for c in study_page.captions] == [
        f"Figure {i}" for i in range(1, STUDY_FIGURES + 1)]
    assert all(len(c) > 60 for c in study_page.captions)
    files = sorted((study[0].parent / "figures").glob("*.png"))
    assert len(files) == STUDY_FIGURES
    assert any("layers-across-tasks" in f.name for f in files)


def test_references_in_the_text_are_matched_rows_with_their_differences(study_page):
    rows = records(study_page.tables["reference-matches"])
    # Speech Commands v1 (12 classes) has SUPERB numbers for HuBERT Base, wav2vec 2.0 Base
    # and FBANK; the random-weights control is never matched with a pretrained checkpoint.
    assert {(r["model"], r["reference model"]) for r in rows} == {
        ("hubert", "HuBERT Base"), ("wav2vec2", "wav2vec 2.0 Base"), ("logmel", "FBANK")}
    assert {r["dataset"] for r in rows} == {"speechcommands"}
    for row in rows:
        assert row["protocol"] == "SUPERB downstream task"
        assert row["probe type"] == ("same" if row["probe"] == "weighted" else "differs")
        assert row["comparable"] == "yes"
    [differences] = records(study_page.tables["protocol-differences"])
    assert differences["split and test set"].startswith("ours: splits: train")
    assert "Theirs: official split; KS = Speech Commands v0.01" in differences[
        "split and test set"]
    assert differences["class balance"].startswith("ours: headline accuracy")
    assert "Theirs: learned weighted sum of all layers" in differences["probe and layer"]
    references = results.read_references(REPO / "report/reference_results.csv")
    appendix = records(study_page.tables["references"])
    assert len(appendix) == len(references)
    assert {"year", "link", "source"} <= set(appendix[0])
    # itables' own links (its help while it loads, its static preview) are not references
    links = {a for a in study_page.anchors
             if a.startswith("http") and not a.startswith("https://itables.org/")}
    assert links == set(references["link"]) - {""}


def test_run_details_come_from_the_jobs_logs(study_page, study_tables):
    jobs = records(study_page.tables["job-environments"])
    extraction = [r for r in jobs if r["rule"] == "extract_shard"]
    assert {r["GPU"] for r in extraction} == {"NVIDIA H100 80GB HBM3 (synthetic)", "none"}
    assert sum(int(r["jobs"]) for r in extraction) == len(STUDY_DATASETS) * 4
    probes = [r for r in jobs if r["rule"] == "probe"]
    assert [r["host"] for r in probes] == ["gpu-node-01 (synthetic)"]
    host = {r["item"]: r["value"] for r in records(study_page.tables["rendering-host"])}
    assert host["host"] == run_details()["host"]
    chosen = records(study_page.tables["chosen-hyperparameters"])
    runs = study_tables["runs"]
    assert len(chosen) == runs[["dataset", "model", "probe", "fold"]].drop_duplicates().shape[0]


def test_audit_lists_the_rejected_clips(study_page):
    rows = records(study_page.tables["esc10-rejected"])
    assert [(r["model"], r["reason"], r["clips"], r["clip ids"]) for r in rows][0] == (
        "hubert", "unreadable audio", "2", "esc10-0000, esc10-0001")
    assert len(rows) == 4


def test_cost_is_per_rule_and_per_model_with_elapsed_beside_summed_time(study, study_page):
    """Extraction throughput per model (not pooled across models); the run's elapsed time
    (first start to last end) and the summed job time, each named."""
    rows = records(study_page.tables["cost"])
    jobs = study[1]["jobs"]
    seconds = {j["benchmark"]: float(pd.read_csv(j["benchmark"], sep="\t")["s"].sum())
               for j in jobs}
    probe = [r for r in rows if r["rule"] == "probe"]
    assert float(probe[0]["total wall time (s)"].replace(",", "")) == pytest.approx(
        sum(seconds[j["benchmark"]] for j in jobs if j["rule"] == "probe"), rel=5e-3)
    extraction = {r["model"]: r for r in rows if r["rule"] == "extract_shard"}
    assert set(extraction) == {"hubert", "wav2vec2", "hubert_random", "logmel"}
    for model, row in extraction.items():
        mine = [j for j in jobs
                if j["rule"] == "extract_shard" and j["wildcards"]["model"] == model]
        spent = sum(seconds[j["benchmark"]] for j in mine)
        audio = sum(h5py.File(s["path"])["duration"][:].sum() for s in study[1]["stores"]
                    if s["model"] == model)
        assert int(row["jobs"]) == len(mine)
        assert float(row["audio s / s"]) == pytest.approx(audio / spent, rel=5e-3)
    ends = [Path(j["benchmark"]).stat().st_mtime for j in jobs]
    starts = [end - seconds[j["benchmark"]] for end, j in zip(ends, jobs)]
    text = html_text(study[0])
    elapsed, summed = max(ends) - min(starts), sum(seconds.values())
    assert f"Elapsed (first job's start to last job's end): {formatting.duration(elapsed)}" in text
    assert f"Summed job wall time: {formatting.duration(summed)}" in text
    assert elapsed < summed


def test_rounds_that_kept_their_last_epoch_are_counted():
    from audioprobe.report import training_curves

    rounds = {1: (10, 10, False), 2: (10, 5, False), 3: (100, 100, True)}  # run, chosen, at max
    curves = pd.DataFrame([
        {"dataset": "d", "model": "m", "probe": "linear", "fold": fold, "epoch": epoch,
         "chosen_epoch": chosen, "stopped_at_max_epochs": str(at_max),
         "best_at_first_epoch": "False"}
        for fold, (run, chosen, at_max) in rounds.items() for epoch in range(1, run + 1)])
    row = training_curves.flag_table(curves).iloc[0]
    counts = row[["rounds", "stopped at max_epochs", "kept the last epoch run"]].tolist()
    assert counts == [3, 1, 1]


def test_elapsed_time_leaves_out_the_pause_between_runs_of_snakemake():
    # a run of two jobs (overlapping), then one job redone an hour later
    jobs = pd.DataFrame({"finished": [100.0, 130.0, 3730.0], "wall time (s)": [100.0, 50.0, 30.0]})
    spent = cost.times(types.SimpleNamespace(jobs=jobs))
    assert spent == {"elapsed": 130.0 + 30.0, "sittings": 2, "summed": 180.0}
    spent = cost.times(types.SimpleNamespace(jobs=jobs.iloc[:2]))
    assert spent == {"elapsed": 130.0, "sittings": 1, "summed": 150.0}


def html_text(page: Path) -> str:
    """The page's text without tags, scripts, styles and the table of contents, whitespace
    collapsed."""
    html = re.sub(r"<(script|style|nav)\b.*?</\1>", " ", page.read_text(), flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


# Every sentence true ---------------------------------------------------------------------------

def test_captions_say_what_each_figure_draws(study, study_page):
    """A single split's layer figure says it has no band; k-fold's names its rounds; the
    feature map names the layer it shows (modal, with its rounds) or the concatenated layers
    of the weighted probe, never a learned mix."""
    captions = {c.split(":")[0].split(". ", 1)[1]: c for c in study_page.captions
                if "by relative depth" in c}
    assert "mean over 5 rounds" in captions["esc10"] and "Nadeau-Bengio" in captions["esc10"]
    for dataset in ("speechcommands", "icbhi"):
        assert "one split" in captions[dataset] and "without bands" in captions[dataset]
        assert "mean over" not in captions[dataset] and "Nadeau" not in captions[dataset]
    maps = [c for c in study_page.captions if "t-SNE of" in c]
    assert len(maps) == len(STUDY_DATASETS)
    for caption in maps:
        assert re.search(r"features of (layer \d+, chosen in \d of \d rounds|all 13 layers side "
                         r"by side \(the weighted probe's learned mix of them is not saved\))",
                         caption), caption
    text = html_text(study[0])
    assert "the layer chosen in each clip's round" not in text


def test_hyperparameter_table_says_what_its_rows_count(study, study_tables):
    runs = study_tables["runs"]
    rows = runs[["dataset", "model", "probe", "fold"]].drop_duplicates()
    rounds = runs[["dataset", "fold"]].drop_duplicates()
    text = html_text(study[0])
    assert (f"Hyperparameters chosen on validation ({len(rows)} rows, one per dataset, model, "
            f"probe and round: {len(rounds)} evaluation rounds over {len(STUDY_DATASETS)} "
            "datasets)") in text
    assert f"({len(rows)} rounds)" not in text


def test_per_class_support_and_confused_pairs_count_clips_not_seed_predictions():
    """20 test clips, two seeds: support 20; a clip wrong in one seed of two counts once in
    "any seed", not in "every seed", and half in the share."""
    clips = [f"c{i}" for i in range(20)]
    labels = ["a"] * 10 + ["b"] * 10
    rows = []
    for seed in (0, 1):
        for i, (clip, label) in enumerate(zip(clips, labels)):
            wrong = (i < 2) or (seed == 1 and i == 2)  # a0, a1 always wrong; a2 once
            rows.append({"clip_id": clip, "layer": 3, "fold": 1, "seed": seed, "label": label,
                         "prediction": "b" if wrong else label, "loss": 1.0})
    predictions = pd.DataFrame(rows)
    report = errors.class_report(predictions)
    assert report["support (clips)"].tolist() == [10, 10]
    assert report.loc["a", "recall"] == pytest.approx(7.5 / 10)
    assert report.loc["a", "seeds agree"] == pytest.approx(9 / 10)
    [pair] = errors.confused_pairs(predictions).to_dict("records")
    assert (pair["true class"], pair["predicted as"]) == ("a", "b")
    assert (pair["clips (any seed)"], pair["clips (every seed)"]) == (3, 2)
    assert pair["share of true class"] == "0.250"
    classes, counts = errors.confusion(predictions)
    assert counts.sum() == pytest.approx(20) and counts[0, 1] == pytest.approx(2.5)


def test_per_class_support_in_the_page_sums_to_the_test_clips(study, study_page):
    run = load_study(study)
    for dataset in STUDY_DATASETS:
        best = findings.best_row(run, dataset)
        clips = run.predictions_of(dataset, best["model"], best["probe"])["clip_id"].nunique()
        support = [int(r["support (clips)"]) for r in
                   records(study_page.tables[f"{dataset}-per-class"])]
        assert sum(support) == clips


def load_study(study) -> results.Run:
    return results.load({INPUTS_VARIABLE: json.dumps({"files": study[1], "config": yaml.safe_load(
        (study[0].parent / "config.yaml").read_text())})})


def test_where_the_best_layers_sit_per_probe_with_spread_and_flat_curves_named(study):
    """The random-weights control's curve is flat by construction: its k-fold dataset gets
    "no clear best layer", never a relative depth; layers are given per probe, with the
    spread of the rounds' choices."""
    text = html_text(study[0])
    section = text[text.index("Where the best layers sit"):text.index("Caveats")]
    lines = re.findall(r"(\w+) ?, (\w+) probe (\(13 layers.*?)(?=\w+ ?, \w+ probe \(13 layers|$)",
                       section)
    found = {(m, p): line for m, p, line in lines}
    assert set(found) == {(m, p) for m in ("hubert", "wav2vec2", "hubert_random")
                          for p in ("linear", "mlp")}
    for probe in ("linear", "mlp"):
        flat = found["hubert_random", probe]
        assert re.search(r"esc10: no clear best layer: the validation scores of all layers lie "
                         r"within [\d.]+ points, inside the best layer's 95% interval", flat)
        assert not re.search(r"esc10: layer \d+ \(relative depth", flat)
        clear = found["hubert", probe]
        assert re.search(r"esc10: layer \d+ \(relative depth [\d.]+; (layer \d+ chosen in \d of "
                         r"5 rounds|layers [\d, ]+ tie)", clear)
    assert "median chosen layer" not in section


def test_ties_between_chosen_layers_are_named():
    choice = layers.Choice([3, 7, 3, 7, 5], 3, 2, [3, 7], 13, False, 10.0, 2.0)
    assert choice.rounds_text() == ("layers 3, 7 tie, each chosen in 2 of 5 rounds (the lowest, "
                                    "3, is named); rounds chose 3–7")


def test_single_layer_models_have_no_weighted_probe_row(study_page, study):
    rows = records(study_page.tables["matrix"])
    assert ("logmel baseline", "weighted") not in {(r["model"], r["probe"]) for r in rows}
    assert ("hubert", "weighted") in {(r["model"], r["probe"]) for r in rows}
    compared = records(study_page.tables["esc10-comparisons"])
    assert not [r for r in compared if r["probe"] == "weighted"
                and "logmel" in (r["model a"], r["model b"])]


def test_a_dataset_marked_not_comparable_has_its_references_flagged(study):
    run = load_study(study)
    run.notes["speechcommands"] = run.notes["speechcommands"] | {"comparable": False}
    matched = references.reference_matches(run)
    mine = matched[matched["dataset"] == "speechcommands"]
    assert len(mine) and (mine["comparable"] == "no: the dataset's notes say not").all()
    said = findings.caveats(run)
    assert "**speechcommands** is not comparable with published numbers for its task." in said
    assert (f"{len(mine)} of {len(matched)} matched published numbers are of a dataset marked "
            "not comparable: speechcommands.") in said


def test_caveats_do_not_contradict_each_other(study):
    """A dataset on its published split may list groups on both sides; one split by group
    instead would not: never both for one dataset."""
    html = study[0].read_text()
    part = html[html.index('id="Caveats"'):html.index('id="Results-matrix"')]
    items = [unescape(re.sub(r"<[^>]+>", "", li)) for li in re.findall(r"<li>(.*?)</li>", part,
                                                                         re.S)]
    assert items
    for dataset in STUDY_DATASETS:
        own = " ".join(i for i in items if i.startswith(f"{dataset}:"))
        assert not ("both sides of the published split" in own
                    and "instead of the official" in own), dataset


def test_the_audit_reads_window_and_pooling_from_each_store(study_page, study):
    """hubert's store was extracted with 10.24 s windows (a family's cap), the config says 30."""
    rows = {r["model"]: r for r in records(study_page.tables["esc10-audit"])}
    store = next(s["path"] for s in study[1]["stores"]
                 if (s["dataset"], s["model"]) == ("esc10", "hubert"))
    durations = h5py.File(store)["duration"][:]
    assert rows["hubert"]["window (s)"] == "10.2"
    assert int(rows["hubert"]["windowed (longer than the window)"]) == (durations > 10.24).sum() > 0
    assert rows["wav2vec2"]["window (s)"] == "30.0"
    assert {r["pooling"] for r in rows.values()} == {"mean"}


def test_csv_links_are_relative_to_the_report_and_the_page_says_where_they_were(study):
    text = html_text(study[0])
    tables = Path(study[1]["summary"]).parent.resolve()
    assert f"When rendered they were in {tables}" in text
    assert "linked from the report's folder as ../tables/" in text
    # every table is linked, label efficiency's too (test_no_resource_leaves_the_page)


def test_no_resource_leaves_the_page(study, study_page):
    html = study[0].read_text()
    assert [r for r in study_page.resources if not r.startswith("data:")] == []
    assert not re.search(r"""(url\(|@import|import\()\s*["']?(https?:)?//""", html, re.I)
    assert all(a.startswith(("#", "http", "../tables/")) for a in study_page.anchors)
    assert {a for a in study_page.anchors if a.startswith("../")} == {
        f"../tables/{n}.csv" for n in ("summary", "layers", "comparisons", "runs",
                                       "label_efficiency")}


def test_size_stays_small(study):
    assert study[0].stat().st_size < 10e6 * len(STUDY_DATASETS) / 6


def test_one_dataset_has_no_across_task_heatmap_and_single_layer_models_are_lines(tmp_path):
    page, _ = render_study(tmp_path, datasets=["esc10"], models=["hubert", "logmel"],
                           probes=["linear"], clips=80)
    html = page.read_text()
    parsed = Page(html)
    assert "One dataset only: a comparison across tasks needs two or more." in html
    # layers, confusion, feature map, audit; cost; training curves, label efficiency, similarity
    assert parsed.images == 4 + 1 + 3
    assert not any("layers-across-tasks" in f.name
                   for f in (page.parent / "figures").glob("*.png"))
    assert "weighted" not in " ".join(parsed.captions)
    figure = page.parent / "figures" / "01-esc10-layers.png"
    assert figure.stat().st_size > 10_000


# Units ---------------------------------------------------------------------------------------

def test_inputs_are_keyed_not_parsed_from_paths(tmp_path):
    files, config = write_study(tmp_path, datasets=["esc10"], models=["logmel"],
                                probes=["linear"], clips=40)
    moved = tmp_path / "elsewhere.csv"
    shutil.copy(files["predictions"][0]["path"], moved)
    files["predictions"][0]["path"] = str(moved)
    files = report_files(tmp_path, files)
    files["notes"] = [{"dataset": "esc10", "path": str(tmp_path / "missing.json")}]
    run = results.load({INPUTS_VARIABLE: json.dumps({"files": files, "config": config})})
    assert run.predictions == {("esc10", "logmel", "linear"): moved}
    assert run.notes == {"esc10": {}}
    assert list(run.jobs["rule"]) == ["fetch_model", "manifest", "extract_shard", "probe",
                                      "summary"]
    assert run.jobs["details"].map(lambda d: d["python"]).nunique() == 1


def test_manifest_notes_are_read_defensively(tmp_path):
    path = tmp_path / "notes.json"
    for text, want in (("{not json", {}), ("[1, 2]", {}),
                       ('{"notes": "one", "comparable": false}',
                        {"notes": ["one"], "comparable": False, "leakage_exceptions": {}}),
                       ('{"notes": [], "leakage_exceptions": {"p1": "in both"}}',
                        {"notes": [], "comparable": None,
                         "leakage_exceptions": {"p1": "in both"}})):
        path.write_text(text)
        assert results.read_notes(path) == want


def test_jobs_log_their_run_details(tmp_path):
    log = tmp_path / "job.log"
    code = ("import torch, logging; from audioprobe.joblog import to_file; "
            f"to_file({str(log)!r}); logging.getLogger('x').info('done')")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    details = read_run_details(log)
    assert details["packages"]["torch"] == run_details()["packages"]["torch"]
    assert details["host"] and details["cpu"] and details["gpu"]
    assert RUN_DETAILS in log.read_text().splitlines()[0]
    (tmp_path / "empty.log").write_text("nothing\n")
    assert read_run_details(tmp_path / "empty.log") is None
    assert read_run_details(tmp_path / "absent.log") is None
    logging.getLogger().handlers.clear()


def test_table_of_contents_nests_subsections():
    page = ('<h2 id="A">A<a href="#A">¶</a></h2><h3 id="a-1">a 1</h3><h3 id="a-2">a &amp; 2</h3>'
            '<h2 id="B">B</h2>')
    nav = table_of_contents(page)
    assert re.findall(r'href="#([^"]+)"', nav) == ["A", "a-1", "a-2", "B"]
    assert nav.count("<ul>") == 2 and "a &amp; 2" in nav and "¶" not in nav


def test_reference_mapping_matches_task_model_and_protocol():
    references = results.read_references(REPO / "report" / "reference_results.csv")
    assert list(references.columns) == ["source", "protocol", "model", "task", "metric",
                                        "value", "std", "year", "link", "note"]
    protocols = results.read_references(REPO / "report" / "reference_protocols.csv")
    assert set(references["protocol"]) <= set(protocols["protocol"])
    names = results.read_references(REPO / "report" / "reference_models.csv")
    assert set(names["reference_model"]) <= set(references["model"])
    assert datasets.reference_task("esc50", {"subset": "esc10"}) == "ESC-10"
    assert datasets.reference_task("speechcommands", {"version": 1, "task": "12"}) == \
        "Speech Commands v1 (12)"
    assert datasets.reference_task("custom", None) is None
    assert datasets.reference_task("icbhi", {"task": "recordings"}) is None


def test_number_formats():
    f = formatting
    assert [f.sig(v) for v in (0.91234, 0.9, 0.012345, 12.345, 99.96, 1234.5)] == [
        "0.912", "0.900", "0.0123", "12.3", "100", "1,234"]
    assert f.sig(float("nan")) == "–"
    assert f.percent(0.78549) == "78.5" and f.percent_interval(0.7, 0.8123) == "[70.0, 81.2]"
    assert [f.layer_name(k) for k in (0, 7, ALL_LAYERS)] == ["0", "7", "all"]
    assert f.relative_depth(6, 13) == 0.5 and f.relative_depth(0, 1) == 0.0


def test_front_matter_becomes_the_title():
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("---\ntitle: \"A report\"\nformat: html\n---"),
        nbformat.v4.new_code_cell("1")])
    assert front_matter_to_title(notebook) == "A report"
    assert notebook.cells[0].source == "# A report"


@pytest.mark.skipif(shutil.which("quarto") is not None, reason="Quarto renders instead")
def test_the_page_kernel_talks_over_unix_sockets_not_tcp(tmp_path):
    source = tmp_path / "page.py"
    source.write_text('# %% [markdown]\n# ---\n# title: "T"\n# ---\n\n# %%\n'
                      "from ipykernel.kernelapp import IPKernelApp\n"
                      'print("transport", IPKernelApp.instance().transport)\n')
    render(source, tmp_path / "out" / "page.html", {}, {})
    assert "transport ipc" in (tmp_path / "out" / "page.html").read_text()


# The demo run --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_report(demo_run) -> Path:
    return demo_run / "results" / "report" / "report.html"


def test_demo_report_matches_its_tables(demo_report, demo_run):
    page = Page(demo_report.read_text())
    assert [h for h in page.headings["h2"] if h in SECTIONS] == SECTIONS
    summary = with_headline(read_table(demo_run / "results/tables/summary.csv"))
    # a weighted mix of log-mel's one layer is its linear probe: the page leaves it out
    summary = summary[~((summary["model"] == "logmel") & (summary["probe"] == "weighted"))]
    rows = records(page.tables["matrix"])
    assert len(rows) == len(summary)
    for row in rows:
        want = summary[(summary["model"] == row["model"].split()[0])
                       & (summary["probe"] == row["probe"])].iloc[0]
        assert row["demo"].split()[0] == f"{100 * want['score']:.1f}"
    # one dataset: no across-task heatmap
    assert "One dataset only" in demo_report.read_text()
    jobs = records(page.tables["job-environments"])
    assert {"extract_shard", "probe", "manifest"} <= {r["rule"] for r in jobs}
    assert "not logged" not in {r["host"] for r in jobs}


def test_snakemake_report_holds_the_html_report_and_its_figures(demo_run, demo_report,
                                                                tmp_path):
    out = tmp_path / "snakemake-report.html"
    snakemake(demo_run, "--report", str(out))
    text = out.read_text()
    assert "report.html" in text
    for figure in (demo_report.parent / "figures").glob("*.png"):
        assert figure.name in text


# Headless Chromium over the DevTools protocol ----------------------------------------------

WIDTHS = (1400, 800)
PRINTED = 718  # px: an A4 page's width at 96 dpi less Chromium's default margins
SMALLEST_SCALE = 0.7  # at 800 px a figure is drawn at least this fraction of its size


def chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)


async def load_in_browser(binary: str, url: str, shots: Path, column: str) -> dict:
    """Open ``url`` in headless Chromium; return console errors, exceptions, network requests
    and per window width what the page holds, and save a screenshot of each width's top."""
    import websockets

    with tempfile.TemporaryDirectory() as profile:
        process = await asyncio.create_subprocess_exec(
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank",
            stderr=subprocess.PIPE)
        try:
            while True:
                line = (await asyncio.wait_for(process.stderr.readline(), 60)).decode()
                if not line:
                    raise RuntimeError("chromium exited before DevTools was listening")
                if match := re.search(r"DevTools listening on (ws://\S+)", line):
                    break
            async with websockets.connect(match[1], max_size=None) as socket:
                return await _drive(socket, url, shots, column)
        finally:
            process.terminate()
            await process.wait()


PROBE = """JSON.stringify({
    images: document.images.length,
    decoded: [...document.images].filter(i => i.complete && i.naturalWidth > 0).length,
    tables: document.querySelectorAll('table').length,
    sections: [...document.querySelectorAll('main h2')].map(
        h => h.textContent.replace('¶', '').trim()),
    overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    wide: [...document.querySelectorAll('main *')].filter(
        e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1
             && !e.closest('.table-wrap')).map(e => e.tagName + '.' + e.className).slice(0, 5),
    toc: (() => { const r = document.getElementById('TOC').getBoundingClientRect();
                  return [r.left, r.width]; })(),
    height: document.documentElement.scrollHeight,
    scale: Math.min(...[...document.images].map(i => i.clientWidth / i.naturalWidth)),
    matrixHidden: (() => { const w = document.getElementById('matrix-wrap');
                           return w.scrollWidth > w.clientWidth + 1; })(),
    hint: document.getElementById('matrix-hint').offsetParent !== null})"""

READY = "JSON.stringify(!!document.querySelector('#matrix.dataTable'))"

# Drive the itables (DataTables) matrix as a reader does: click a column header twice, type
# into its search box. DataTables sorts after a timeout (its "processing" indicator).
SORT = """(async () => {
    const settle = () => new Promise(done => setTimeout(done, 200));
    const table = document.getElementById('matrix');
    const header = () => [...table.tHead.rows[0].cells];
    const column = header().findIndex(c => c.textContent.trim() === '%s');
    const values = () => [...table.tBodies[0].rows].map(r => {
        const v = parseFloat(r.cells[column].textContent);
        return isNaN(v) ? -1 : v;
    });
    header()[column].click();
    await settle();
    const up = values();
    header()[column].click();
    await settle();
    const down = values();
    const search = table.closest('.dt-container').querySelector('.dt-search input');
    const type = text => {
        search.value = text;
        search.dispatchEvent(new Event('input', {bubbles: true}));
        return settle();
    };
    await type('baseline');
    const shown = table.tBodies[0].rows.length;
    await type('');
    return JSON.stringify({up, down, shown, rows: table.tBodies[0].rows.length});
})()"""


async def _drive(socket, url: str, shots: Path, column: str) -> dict:
    counter, events = 0, []

    async def call(method: str, session: str | None = None, **params) -> dict:
        nonlocal counter
        counter += 1
        message = {"id": counter, "method": method, "params": params}
        await socket.send(json.dumps(message | ({"sessionId": session} if session else {})))
        while True:
            reply = json.loads(await asyncio.wait_for(socket.recv(), 60))
            if reply.get("id") == counter:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            events.append(reply)

    async def evaluate(session: str, expression: str) -> dict:
        result = await call("Runtime.evaluate", session, expression=expression,
                            returnByValue=True, awaitPromise=True)
        return json.loads(result["result"]["value"])

    target = (await call("Target.createTarget", url="about:blank"))["targetId"]
    session = (await call("Target.attachToTarget", targetId=target, flatten=True))["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        await call(f"{domain}.enable", session)
    await call("Emulation.setDeviceMetricsOverride", session, width=WIDTHS[0], height=900,
               deviceScaleFactor=1, mobile=False)
    await call("Page.navigate", session, url=url)
    while not any(e.get("method") == "Page.loadEventFired" for e in events):
        events.append(json.loads(await asyncio.wait_for(socket.recv(), 60)))
    await asyncio.sleep(1)  # late script errors
    for _ in range(100):  # the table library loads as a module, after the page
        if await evaluate(session, READY):
            break
        await asyncio.sleep(0.1)
    seen = {}
    for width in WIDTHS:
        await call("Emulation.setDeviceMetricsOverride", session, width=width, height=900,
                   deviceScaleFactor=1, mobile=False)
        await asyncio.sleep(0.5)
        seen[width] = await evaluate(session, PROBE)
        shot = await call("Page.captureScreenshot", session, format="png",
                          captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": width,
                                "height": min(seen[width]["height"], 5000), "scale": 1})
        (shots / f"report-{width}.png").write_bytes(base64.b64decode(shot["data"]))
    seen["sort"] = await evaluate(session, SORT % column)
    await call("Emulation.setEmulatedMedia", session, media="print")
    await call("Emulation.setDeviceMetricsOverride", session, width=PRINTED, height=1000,
               deviceScaleFactor=1, mobile=False)
    await asyncio.sleep(0.5)
    seen["print"] = await evaluate(session, """JSON.stringify({
        toc: getComputedStyle(document.getElementById('TOC')).display,
        margin: getComputedStyle(document.querySelector('main')).marginLeft,
        hint: document.getElementById('matrix-hint').offsetParent !== null,
        matrixRight: document.getElementById('matrix').getBoundingClientRect().right,
        matrixHidden: (() => { const w = document.getElementById('matrix-wrap');
                               return w.scrollWidth > w.clientWidth + 1; })()})""")
    params = [(e["method"], e.get("params", {})) for e in events]
    return seen | {
        "console errors": [p["args"] for m, p in params if m == "Runtime.consoleAPICalled"
                           and p["type"] in ("error", "assert")],
        "exceptions": [p["exceptionDetails"] for m, p in params if m == "Runtime.exceptionThrown"],
        "log errors": [p["entry"] for m, p in params
                       if m == "Log.entryAdded" and p["entry"]["level"] == "error"],
        "requests": [p["request"]["url"] for m, p in params if m == "Network.requestWillBeSent"],
    }


def browse(page: Path, name: str, column: str) -> dict:
    """Load ``page`` in Chromium; sort the matrix by ``column``."""
    binary = chromium()
    if binary is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); "
                    "the browser check of the report did not run")
    pytest.importorskip("websockets", reason="websockets is not installed (pip install "
                                             "'.[test]'); the browser check did not run")
    shots = ARTIFACTS / name
    shots.mkdir(parents=True, exist_ok=True)
    return asyncio.run(load_in_browser(binary, page.as_uri(), shots, column))


def check_in_browser(seen: dict, figures: int, baseline_rows: int) -> None:
    assert seen["console errors"] == [] and seen["exceptions"] == []
    assert seen["log errors"] == []
    # blob: is the table library's script, unpacked from the page itself
    assert [u for u in seen["requests"] if not u.startswith(("file:", "data:", "blob:"))] == []
    for width in WIDTHS:
        at = seen[width]
        assert at["images"] == at["decoded"] == figures, width
        assert at["overflow"] <= 0 and at["wide"] == [], (width, at["wide"])
        assert [s for s in at["sections"] if s in SECTIONS] == SECTIONS
    assert seen[1400]["toc"][1] <= 260  # a side bar beside the text
    assert seen[800]["toc"][1] > 700  # above the text on a narrow window
    up, down = seen["sort"]["up"], seen["sort"]["down"]
    assert up == sorted(up) and down == sorted(down, reverse=True)
    assert seen["sort"]["shown"] == baseline_rows
    assert seen["sort"]["rows"] == len(up)  # an empty search shows every row again
    for width in WIDTHS:  # figures legible; columns out of view announced
        assert seen[width]["scale"] >= SMALLEST_SCALE, (width, seen[width]["scale"])
        assert seen[width]["hint"] == seen[width]["matrixHidden"], width
    printed = seen["print"]  # the print stylesheet: no contents bar, the matrix whole
    assert (printed["toc"], printed["margin"], printed["hint"]) == ("none", "0px", False)
    assert printed["matrixRight"] <= PRINTED and not printed["matrixHidden"], printed


def test_study_report_in_headless_chromium(study):
    check_in_browser(browse(study[0], "study", "esc10"), STUDY_FIGURES, baseline_rows=2)


def test_demo_report_in_headless_chromium(demo_report):
    baseline = records(Page(demo_report.read_text()).tables["matrix"])
    # the figures, and the spectrograms of the error analysis you can hear
    check_in_browser(browse(demo_report, "demo", "demo"), len(list(
        (demo_report.parent / "figures").glob("*.png")))
        + demo_report.read_text().count('<img alt="spectrogram"'),
        baseline_rows=sum(r["model"].endswith("baseline") for r in baseline))


def test_every_figure_is_also_pdf_and_svg(study):
    figures = Path(study[1]["figures"])
    pngs = sorted(figures.glob("*.png"))
    assert pngs
    for png in pngs:
        pdf, svg = png.with_suffix(".pdf").read_bytes(), png.with_suffix(".svg").read_text()
        assert pdf.startswith(b"%PDF")
        assert b"/FontFile2" in pdf and b"/Type3" not in pdf  # TrueType, as journals ask
        assert "<text" in svg and "<svg" in svg[:2000]  # text kept as text
        # the three files share one crop: PNG pixels at 90 dpi, SVG points at 72 per inch
        width, height = struct.unpack(">II", png.read_bytes()[16:24])
        svg_size = re.search(r'<svg[^>]* width="([\d.]+)pt" height="([\d.]+)pt"', svg)
        assert svg_size, png.name
        assert float(svg_size[1]) / 72 == pytest.approx(width / 90, abs=0.02), png.name
        assert float(svg_size[2]) / 72 == pytest.approx(height / 90, abs=0.02), png.name


def test_layer_figures_have_one_legend_entry_per_model_with_each_probes_layers(study):
    """One legend under the figure (a legend per probe row drew their texts on top of each
    other): each model once, with every layered probe's chosen layers, round by round."""
    for svg in sorted(Path(study[1]["figures"]).glob("*-layers.svg")):
        texts = [unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg.read_text())]
        chosen = [t for t in texts if ": chosen layers, " in t]
        models = [t.split(":")[0] for t in chosen]
        assert len(models) == len(set(models)) and models, svg.name
        for text in chosen:
            assert re.fullmatch(r"[\w-]+: chosen layers, linear [\d, ]+; mlp [\d, ]+", text), text
        assert sum("single layer, reference line" in t for t in texts) == 1, svg.name


def test_a_figure_whose_vector_files_fail_fails_the_page(tmp_path):
    """PDF and SVG are written by forked children; one that fails is reported by ``close``,
    with the figure named, and the others are complete."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from audioprobe.report import vector

    writer = vector.Writer()
    for stem in (tmp_path / "01-fine", tmp_path / "missing-folder" / "02-broken"):
        fig, ax = plt.subplots()
        ax.set_title("a title kept as text")
        writer.save(fig, stem, vector.tight_box(fig))
        plt.close(fig)
    with pytest.raises(RuntimeError, match="02-broken"):
        writer.close()
    assert "a title kept as text" in (tmp_path / "01-fine.svg").read_text()
    assert (tmp_path / "01-fine.pdf").read_bytes().rstrip().endswith(b"%%EOF")
    # where the page writes them itself (not Linux), the same files, and a failure at once
    writer = vector.Writer()
    writer.forks = False
    fig, ax = plt.subplots()
    ax.set_title("written in the page")
    writer.save(fig, tmp_path / "03-here", vector.tight_box(fig))
    with pytest.raises(FileNotFoundError):
        writer.save(fig, tmp_path / "missing-folder" / "04-broken", vector.tight_box(fig))
    plt.close(fig)
    writer.close()
    assert "written in the page" in (tmp_path / "03-here.svg").read_text()


def test_study_report_prints_the_whole_matrix(study, study_page):
    """Headless Chromium's --print-to-pdf: the PDF's text holds every matrix column (header and
    each row's interval in the last dataset's column)."""
    binary = chromium()
    if binary is None or shutil.which("pdftotext") is None:
        pytest.skip("chromium or pdftotext (Debian: poppler-utils) is not installed; the print "
                    "check did not run")
    shots = ARTIFACTS / "study"
    shots.mkdir(parents=True, exist_ok=True)
    pdf = shots / "report.pdf"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        f"--user-data-dir={profile}", "--virtual-time-budget=15000",
                        "--no-pdf-header-footer", f"--print-to-pdf={pdf}", study[0].as_uri()],
                       check=True, capture_output=True, timeout=180)
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    matrix = text[text.index("Results matrix", text.index("Key findings")):
                  text.index("Headline metric per dataset")]
    words = " ".join(matrix.split())
    for column in ["model", "probe", *STUDY_DATASETS, "mean rank"]:
        assert column in words, column
    for row in records(study_page.tables["matrix"]):
        assert row[STUDY_DATASETS[-1]].split(" ", 1)[1] in words, row


# Readable at real sizes ------------------------------------------------------------------------

# Machado, Oliveira & Fernandes (2009), severity 1: linear RGB as seen with each dichromacy.
DICHROMACY = {
    "protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                   [-0.003882, -0.048116, 1.051998]],
    "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                     [-0.011820, 0.042940, 0.968881]],
    "tritanopia": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                   [0.004733, 0.691367, 0.303900]],
}
DISTINCT = 15.0  # CIELAB distance (Delta E 1976) below which two colours look near-identical


def closest_pair(colours_hex: list[str]) -> float:
    """The smallest CIELAB distance between two of the colours, with normal vision and as
    each dichromacy sees them."""
    import itertools

    import numpy as np

    rgb = np.array([[int(h[i:i + 2], 16) / 255 for i in (1, 3, 5)] for h in colours_hex])
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    to_xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                       [0.0193, 0.1192, 0.9505]])
    closest = np.inf
    for seen in [np.eye(3), *map(np.array, DICHROMACY.values())]:
        xyz = np.clip(linear @ seen.T, 0, 1) @ to_xyz.T / [0.95047, 1.0, 1.08883]
        f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
        lab = np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]),
                        200 * (f[:, 1] - f[:, 2])], 1)
        for i, j in itertools.combinations(range(len(lab)), 2):
            closest = min(closest, float(np.linalg.norm(lab[i] - lab[j])))
    return closest


def test_palette_is_colour_blind_safe_and_stable_per_model():
    models = [f"m{i}" for i in range(8)]
    styles = colours.model_styles(models)
    assert closest_pair([styles[m]["color"] for m in models]) >= DISTINCT
    # a model keeps its colour whatever follows it (one palette for every figure)
    assert colours.model_styles(models[:3]) == {m: styles[m] for m in models[:3]}
    classes = [f"class {i}" for i in range(colours.MAX_CLASSES)]
    marks = colours.class_styles(classes)
    assert len({(s["color"], s["marker"]) for s in marks.values()}) == len(classes)
    for marker in {s["marker"] for s in marks.values()}:
        same = [s["color"] for s in marks.values() if s["marker"] == marker]
        assert closest_pair(same) >= DISTINCT


@pytest.fixture(scope="module")
def many_classes(tmp_path_factory) -> tuple[Path, dict]:
    """ESC-50 (50 classes, 5 folds) and LibriSpeech speaker ID (251 classes, one split)."""
    return render_study(tmp_path_factory.mktemp("classes"), datasets=["esc50", "librispeech"],
                        models=["hubert", "logmel"], probes=["linear"], clips=200)


def test_many_classes_show_the_most_confused_and_outcomes_instead_of_a_class_legend(
        many_classes):
    page = Page(many_classes[0].read_text())
    captions = " ".join(page.captions)
    for dataset, n in (("esc50", 50), ("librispeech", 251)):
        assert (f"on {dataset}, the {errors.SUB_MATRIX} most confused of its {n} classes"
                in captions)
        assert re.search(rf"{dataset}: t-SNE of \d+ test clips .* by outcome only \({n} classes",
                         captions)
        assert len(records(page.tables[f"{dataset}-per-class"])) == n
    shots = ARTIFACTS / "classes"
    shots.mkdir(parents=True, exist_ok=True)
    for figure in (many_classes[0].parent / "figures").glob("*.png"):
        shutil.copy(figure, shots / figure.name)


def test_most_confused_classes_are_those_with_the_most_errors():
    import numpy as np

    counts = np.diag(np.full(40, 10.0))
    counts[5, 7] = counts[7, 5] = 6.0  # 5 and 7 mix up
    counts[30, 2] = 4.0
    shown, share = errors.most_confused([f"c{i:02d}" for i in range(40)], counts, top=4)
    assert {"c05", "c07", "c30", "c02"} == set(shown)
    assert share.shape == (4, 4)


def test_many_classes_report_in_headless_chromium(many_classes):
    check_in_browser(browse(many_classes[0], "classes", "esc50"), len(list(
        (many_classes[0].parent / "figures").glob("*.png"))), baseline_rows=1)
