"""The HTML report of the demo run: sections, leaderboard numbers, offline, and a real browser."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from audioprobe import report_data as rd
from audioprobe.report import front_matter_to_title
from tests.conftest import REPO, snakemake

SECTIONS = ["Run summary", "Leaderboard", "Published reference results", "Per-dataset results",
            "Across tasks", "Error analysis", "Data audit", "Cost"]
# Demo: per dataset scores, layer curves, confusion matrix, feature map, data audit (5);
# one dataset-by-layer heatmap per model (2); the cost chart (1).
DEMO_FIGURES = 5 + 2 + 1
ARTIFACTS = REPO / "tests" / "artifacts"


class Page(HTMLParser):
    """Headings, tables (by id) and the src/href attributes of an HTML page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.headings: dict[str, list[str]] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self.links: list[str] = []
        self.images = 0
        self._heading: str | None = None
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [v for k, v in attrs.items() if k in ("src", "href") and v]
        self.images += tag == "img"
        if tag in ("h1", "h2", "h3", "h4"):
            self._heading, self._text = tag, []
        elif tag == "table":
            self._table = attrs.get("id") or f"table-{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == self._heading:
            text = "".join(self._text).replace("¶", "").strip()
            self.headings.setdefault(tag, []).append(text)
            self._heading = None
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._heading:
            self._text.append(data)
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def report(demo_run) -> Path:
    return demo_run / "results" / "report" / "report.html"


@pytest.fixture(scope="module")
def page(report) -> Page:
    return Page(report.read_text())


def records(rows: list[list[str]]) -> list[dict[str, str]]:
    return [dict(zip(rows[0], row)) for row in rows[1:]]


def close_to_3_significant(text: str, value: float) -> bool:
    """``text`` is ``value`` rounded to three significant digits."""
    step = 10 ** (math.floor(math.log10(abs(value))) - 2) if value else 1e-12
    return abs(float(text) - value) <= step / 2 + 1e-12


def test_every_section_is_present(page):
    assert page.headings["h1"] == ["audioprobe report"]
    assert [h for h in page.headings["h2"] if h in SECTIONS] == SECTIONS
    assert "demo" in page.headings["h3"]


def test_leaderboard_matches_summary(page, demo_run):
    summary = pd.read_csv(demo_run / "results/tables/summary.csv")
    chosen = summary.set_index(["dataset", "model", "probe"])
    rows = records(page.tables["leaderboard"])
    assert len(rows) == len(chosen) == 4
    for row in rows:
        want = chosen.loc[row["dataset"], row["model"], row["probe"]]
        assert row["layer per round"] == rd.layers_name(want["chosen_layers"])
        for metric, label in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
            mean, std = row[f"{label} (mean ± std)"].split(" ± ")
            assert close_to_3_significant(mean, want[f"{metric}_mean"])
            assert close_to_3_significant(std, want[f"{metric}_sd"])
            low, high = row[f"{label} 95% CI"].strip("[]").split(", ")
            assert close_to_3_significant(low, want[f"{metric}_ci_low"])
            assert close_to_3_significant(high, want[f"{metric}_ci_high"])
    accuracies = [float(r["accuracy (mean ± std)"].split(" ± ")[0]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True)


def test_run_summary_tables(page, demo_run):
    datasets = records(page.tables["datasets"])
    assert datasets[0]["dataset"] == "demo" and datasets[0]["clips"] == "160"
    assert datasets[0]["classes"] == "8" and datasets[0]["protocol"].startswith("5 folds")
    models = {r["model"]: r for r in records(page.tables["models"])}
    assert models["logmel"]["parameters"] == "0"
    assert int(models["hubert_demo"]["parameters"].replace(",", "")) > 10_000
    assert models["hubert_demo"]["layers"] == "5"
    software = {r["package"]: r["version"] for r in records(page.tables["software"])}
    assert {"audioprobe", "torch", "transformers", "scikit-learn"} <= set(software)
    facts = {r["item"]: r["value"] for r in records(page.tables["run-facts"])}
    seconds = sum(pd.read_csv(p, sep="\t")["s"].sum()
                  for p in (demo_run / "benchmarks").rglob("*.tsv")
                  if p.parent.name != "report")
    total = facts["total run time (sum of job wall times, report excluded)"]
    assert close_to_3_significant(re.search(r"\(([\d.,]+) s\)", total)[1].replace(",", ""),
                                  seconds)


def test_references_say_when_nothing_matches(page):
    rows = records(page.tables["reference-comparison"])
    assert {r["reference"] for r in rows} == {"no reference for this model/task"}
    references = rd.read_references(REPO / "report" / "reference_results.csv")
    assert len(records(page.tables["references"])) == references.groupby(
        ["protocol", "model"]).ngroups
    protocols = {r["protocol"] for r in records(page.tables["reference-protocols"])}
    assert protocols == set(references["protocol"])


def test_figures_and_tables(page, report):
    assert page.images == DEMO_FIGURES
    figures = sorted((report.parent / "figures").glob("*.png"))
    assert len(figures) == DEMO_FIGURES
    for name in ("leaderboard", "demo-per-class", "demo-confused-pairs", "demo-highest-loss",
                 "demo-audit", "cost"):
        assert len(page.tables[name]) > 1, name
    per_class = records(page.tables["demo-per-class"])
    assert len(per_class) == 8 and all(0 <= float(r["f1"]) <= 1 for r in per_class)


def test_no_external_resources(report, page):
    html = report.read_text()
    external = [link for link in page.links if not link.startswith(("data:", "#"))]
    assert external == []
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"""(url\(|@import|import\()\s*["']?(https?:)?//""", html, re.I)


def test_snakemake_report_holds_the_html_report_and_its_figures(demo_run, report, tmp_path):
    out = tmp_path / "snakemake-report.html"
    snakemake(demo_run, "--report", str(out))
    text = out.read_text()
    assert "report.html" in text
    for figure in (report.parent / "figures").glob("*.png"):
        assert figure.name in text


def test_reference_mapping_matches_task_model_and_protocol():
    references = rd.read_references(REPO / "report" / "reference_results.csv")
    assert list(references.columns) == ["source", "protocol", "model", "task", "metric",
                                        "value", "std", "note"]
    assert set(references["protocol"]) <= set(rd.PROTOCOLS)
    summary = pd.DataFrame([{"dataset": "kws", "model": "hubert", "probe": "linear",
                             "accuracy_mean": 0.9512, "selected": True}])
    run = rd.Run(summary=summary, references=references,
                 config={"datasets": {"kws": {"adapter": "speechcommands",
                                              "options": {"version": 1, "task": "12"}}},
                         "probes": {"linear": {"kind": "linear"}}},
                 cards={"hubert": {"model_id": "facebook/hubert-base-ls960"}},
                 predictions={}, stores={}, rejected={}, manifests={}, benchmarks=[],
                 figures=None)
    [row] = rd.reference_comparison(run).to_dict("records")
    assert row["task"] == "Speech Commands v1 (12)" and row["reference"] == "HuBERT Base"
    assert row["reference (%)"] == "96.30" and row["this run (%)"] == "95.1"
    assert row["protocol"].startswith("protocol differs: SUPERB")
    run.config["probes"]["linear"]["kind"] = "weighted"
    assert rd.reference_comparison(run)["protocol"].tolist() == ["same probe type"]
    assert rd.reference_task({"adapter": "esc50", "options": {"subset": "esc10"}}) == "ESC-10"
    assert rd.reference_task({"adapter": "custom"}) is None


def test_layer_names_follow_the_probes_all_layers_value():
    assert [rd.layer_name(k) for k in (0, 7, rd.ALL_LAYERS)] == ["0", "7", "all"]


def test_sig_keeps_three_significant_digits():
    assert [rd.sig(v) for v in (0.91234, 0.9, 0.012345, 12.345, 99.96, 1234.5)] == [
        "0.912", "0.900", "0.0123", "12.3", "100", "1,234"]
    assert rd.sig(float("nan")) == "–"


def test_front_matter_becomes_the_title():
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("---\ntitle: \"A report\"\nformat: html\n---"),
        nbformat.v4.new_code_cell("1")])
    assert front_matter_to_title(notebook) == "A report"
    assert notebook.cells[0].source == "# A report"


# Headless Chromium over the DevTools protocol ----------------------------------------------

def chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)


async def load_in_browser(binary: str, url: str, screenshot: Path) -> dict:
    """Open ``url`` in headless Chromium; return console errors, exceptions, network requests
    and what the page holds, and save a full-page screenshot."""
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
                return await _drive(socket, url, screenshot)
        finally:
            process.terminate()
            await process.wait()


async def _drive(socket, url: str, screenshot: Path) -> dict:
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

    target = (await call("Target.createTarget", url="about:blank"))["targetId"]
    session = (await call("Target.attachToTarget", targetId=target, flatten=True))["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        await call(f"{domain}.enable", session)
    await call("Page.navigate", session, url=url)
    while not any(e.get("method") == "Page.loadEventFired" for e in events):
        events.append(json.loads(await asyncio.wait_for(socket.recv(), 60)))
    await asyncio.sleep(1)  # late script errors
    await call("Emulation.setDeviceMetricsOverride", session, width=1280, height=900,
               deviceScaleFactor=1, mobile=False)
    probe = """JSON.stringify({
        images: document.images.length,
        decoded: [...document.images].filter(i => i.complete && i.naturalWidth > 0).length,
        tables: document.querySelectorAll('table').length,
        sections: [...document.querySelectorAll('h2')].map(h => h.textContent.replace('¶', '').trim()),
        height: document.documentElement.scrollHeight})"""
    result = await call("Runtime.evaluate", session, expression=probe, returnByValue=True)
    content = json.loads(result["result"]["value"])
    await call("Emulation.setDeviceMetricsOverride", session, width=1280,
               height=min(content["height"], 16000), deviceScaleFactor=1, mobile=False)
    shot = await call("Page.captureScreenshot", session, format="png")
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    params = [(e["method"], e.get("params", {})) for e in events]
    return content | {
        "console errors": [p["args"] for m, p in params if m == "Runtime.consoleAPICalled"
                           and p["type"] in ("error", "assert")],
        "exceptions": [p["exceptionDetails"] for m, p in params if m == "Runtime.exceptionThrown"],
        "log errors": [p["entry"] for m, p in params
                       if m == "Log.entryAdded" and p["entry"]["level"] == "error"],
        "requests": [p["request"]["url"] for m, p in params if m == "Network.requestWillBeSent"],
    }


def test_report_loads_in_headless_chromium(report):
    binary = chromium()
    if binary is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); "
                    "the browser check of the report did not run")
    pytest.importorskip("websockets", reason="websockets is not installed (pip install "
                                             "'.[test]'); the browser check did not run")
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "report.png"
    seen = asyncio.run(load_in_browser(binary, report.as_uri(), screenshot))
    assert seen["console errors"] == [] and seen["exceptions"] == []
    assert seen["log errors"] == []
    assert [u for u in seen["requests"] if not u.startswith(("file:", "data:"))] == []
    assert seen["images"] == seen["decoded"] == DEMO_FIGURES
    assert seen["tables"] >= 15
    assert [s for s in seen["sections"] if s in SECTIONS] == SECTIONS
    assert screenshot.stat().st_size > 50_000
