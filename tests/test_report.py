"""The HTML report: findings, matrix, figures, references and run details against the tables
they come from (a synthetic study in the tables' format, and the demo run); offline, and in a
real browser at a wide and a narrow window."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from audioprobe import analysis as an
from audioprobe import results
from audioprobe.joblog import RUN_DETAILS, read_run_details, run_details
from audioprobe.rendering import INPUTS_VARIABLE, front_matter_to_title, render, table_of_contents
from audioprobe.synthetic_study import write_study
from tests.conftest import REPO, snakemake

SECTIONS = ["Key findings", "Results matrix", "Setup", "Per-dataset results", "Across tasks",
            "Comparison with published results", "Error analysis", "Data audit", "Cost",
            "Appendix A: Run details", "Appendix B: Published references"]
STUDY_DATASETS = ["esc10", "speechcommands", "icbhi"]
# Per dataset: layers, confusion matrix, feature map, data audit; across tasks; cost.
STUDY_FIGURES = 4 * len(STUDY_DATASETS) + 1 + 1
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
    files |= {"references": str(REPO / "report/reference_results.csv"),
              "figures": str(folder / "results/report/figures")}
    output = folder / "results/report/report.html"
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
    return {name: pd.read_csv(study[1][name]) for name in ("summary", "layers", "comparisons",
                                                            "runs")}


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
    assert len(rows) == summary.groupby(["model", "probe"]).ngroups == 4 * 3
    header = study_page.tables["matrix"][0]
    assert header == ["model", "probe", *STUDY_DATASETS, "mean rank",
                      *(f"{d} sort key" for d in STUDY_DATASETS)]  # the keys hidden
    scored = an.with_headline(summary)
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
    # the synthetic study's icbhi headline is balanced accuracy, not accuracy
    icbhi = scored[scored["dataset"] == "icbhi"].iloc[0]
    assert icbhi["score"] == icbhi["balanced_accuracy_mean"] != icbhi["accuracy_mean"]


def test_key_findings_name_the_best_and_its_comparisons(study, study_tables):
    html = study[0].read_text()
    findings = html[html.index('id="Key-findings"'):html.index('id="Results-matrix"')]
    text = re.sub(r"<[^>]+>", "", findings)
    summary, comparisons = study_tables["summary"], study_tables["comparisons"]
    for dataset in STUDY_DATASETS:
        paragraph = re.search(rf"{dataset}: best on validation .*?(?=\n)", text)[0]
        scored = an.with_headline(summary[summary["dataset"] == dataset])
        best = scored.loc[scored["val_score_mean"].idxmax()]  # chosen on validation, not test
        metric = best["headline_metric"]
        assert paragraph.startswith(f"{dataset}: best on validation (accuracy "
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
        assert f"Holm-adjusted p = {an.sig(pair['p_holm'], 2)}" in paragraph
        if runner_up["model"] != "logmel":
            [logmel] = mine[mine["model_b"] == "logmel"].to_dict("records")
            assert (f"Against the log-mel baseline, it beats logmel "
                    f"(+{100 * logmel['difference']:.1f} points") in paragraph
    assert "Where the best layers sit" in text
    assert "hubert (13 layers, 0 = input embedding, 12 = block 12)" in text
    assert re.search(r"is \S+ with the \S+ probe at (layer \d+ \((input embedding|block "
                     r"\d+)\) of 0–12|all layers|its only layer)", text)
    assert "icbhi is not comparable with published numbers" in text
    assert "split by patient instead of the official 60/40 split" in text
    assert "icbhi: 1 group(s) on both sides of the published split, kept as the split has " \
        "them: patient 101 (recordings in train and in test)" in text


def test_comparisons_are_turned_towards_the_model_asked_about():
    comparisons = pd.DataFrame([{"dataset": "d", "probe": "p", "model_a": "x", "model_b": "y",
                                 "relation": "between models", "mean_a": 0.8, "mean_b": 0.7,
                                 "difference": 0.1, "ci_low": 0.05, "ci_high": 0.15,
                                 "p_holm": 0.01}])
    run = results.Run(summary=pd.DataFrame(), config={}, comparisons=comparisons)
    [turned] = an.comparisons_of(run, "d", "p", "y").to_dict("records")
    assert (turned["model_a"], turned["model_b"], turned["mean_a"]) == ("y", "x", 0.7)
    assert turned["difference"] == -0.1
    assert (turned["ci_low"], turned["ci_high"]) == (-0.15, -0.05)
    assert an.verdict(pd.Series(turned)).startswith("is beaten by x (-10.0 points")


def test_verdict_reads_the_interval_and_holm_p():
    row = {"model_b": "b", "difference": 0.031, "ci_low": 0.01, "ci_high": 0.05,
           "p_holm": 0.004}
    assert an.verdict(pd.Series(row)).startswith("beats b (+3.1 points, 95% CI [1.0, 5.0]")
    assert an.verdict(pd.Series(row | {"ci_low": -0.01, "p_holm": 0.2})).startswith(
        "is not distinguishable from b")
    assert an.verdict(pd.Series(row | {"difference": -0.03, "ci_low": -0.05,
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


def test_cost_sums_the_benchmarks(study_page, study):
    rows = {r["rule"]: r for r in records(study_page.tables["cost"])}
    jobs = study[1]["jobs"]
    for rule in ("extract_shard", "probe"):
        seconds = sum(pd.read_csv(j["benchmark"], sep="\t")["s"].sum()
                      for j in jobs if j["rule"] == rule)
        assert float(rows[rule]["total wall time (s)"].replace(",", "")) == pytest.approx(
            seconds, rel=5e-3)
        assert int(rows[rule]["jobs"]) == sum(j["rule"] == rule for j in jobs)


def test_no_resource_leaves_the_page(study, study_page):
    html = study[0].read_text()
    assert [r for r in study_page.resources if not r.startswith("data:")] == []
    assert not re.search(r"""(url\(|@import|import\()\s*["']?(https?:)?//""", html, re.I)
    assert all(a.startswith(("#", "http", "../tables/")) for a in study_page.anchors)
    assert {a for a in study_page.anchors if a.startswith("../")} == {
        f"../tables/{n}.csv" for n in ("summary", "layers", "comparisons", "runs")}


def test_size_stays_small(study):
    assert study[0].stat().st_size < 10e6 * len(STUDY_DATASETS) / 6


def test_one_dataset_has_no_across_task_heatmap_and_single_layer_models_are_lines(tmp_path):
    page, _ = render_study(tmp_path, datasets=["esc10"], models=["hubert", "logmel"],
                           probes=["linear"], clips=80)
    html = page.read_text()
    parsed = Page(html)
    assert "One dataset only: a comparison across tasks needs two or more." in html
    assert parsed.images == 4 + 1
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
    files |= {"references": str(REPO / "report/reference_results.csv")}
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
    assert set(references["protocol"]) <= set(an.PROTOCOLS)
    assert an.reference_task({"adapter": "esc50", "options": {"subset": "esc10"}}) == "ESC-10"
    assert an.reference_task({"adapter": "speechcommands",
                              "options": {"version": 1, "task": "12"}}) == \
        "Speech Commands v1 (12)"
    assert an.reference_task({"adapter": "custom"}) is None


def test_number_formats():
    assert [an.sig(v) for v in (0.91234, 0.9, 0.012345, 12.345, 99.96, 1234.5)] == [
        "0.912", "0.900", "0.0123", "12.3", "100", "1,234"]
    assert an.sig(float("nan")) == "–"
    assert an.percent(0.78549) == "78.5" and an.percent_interval(0.7, 0.8123) == "[70.0, 81.2]"
    assert [an.layer_name(k) for k in (0, 7, an.ALL_LAYERS)] == ["0", "7", "all"]
    assert an.relative_depth(6, 13) == 0.5 and an.relative_depth(0, 1) == 0.0


def test_front_matter_becomes_the_title():
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("---\ntitle: \"A report\"\nformat: html\n---"),
        nbformat.v4.new_code_cell("1")])
    assert front_matter_to_title(notebook) == "A report"
    assert notebook.cells[0].source == "# A report"


# The demo run --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_report(demo_run) -> Path:
    return demo_run / "results" / "report" / "report.html"


def test_demo_report_matches_its_tables(demo_report, demo_run):
    page = Page(demo_report.read_text())
    assert [h for h in page.headings["h2"] if h in SECTIONS] == SECTIONS
    summary = an.with_headline(pd.read_csv(demo_run / "results/tables/summary.csv"))
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
    height: document.documentElement.scrollHeight})"""

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
    seen["print"] = await evaluate(session, """JSON.stringify({
        toc: getComputedStyle(document.getElementById('TOC')).display,
        margin: getComputedStyle(document.querySelector('main')).marginLeft})""")
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
    assert seen["print"] == {"toc": "none", "margin": "0px"}  # the print stylesheet


def test_study_report_in_headless_chromium(study):
    check_in_browser(browse(study[0], "study", "esc10"), STUDY_FIGURES, baseline_rows=3)


def test_demo_report_in_headless_chromium(demo_report):
    baseline = records(Page(demo_report.read_text()).tables["matrix"])
    check_in_browser(browse(demo_report, "demo", "demo"), len(list(
        (demo_report.parent / "figures").glob("*.png"))),
        baseline_rows=sum(r["model"].endswith("baseline") for r in baseline))


def test_every_figure_is_also_pdf_and_svg(study):
    figures = Path(study[1]["figures"])
    pngs = sorted(figures.glob("*.png"))
    assert pngs
    for png in pngs:
        assert png.with_suffix(".pdf").read_bytes().startswith(b"%PDF")
        assert b"<svg" in png.with_suffix(".svg").read_bytes()[:2000]
