"""Supplement files: the models x datasets matrix (CSV, LaTeX booktabs), BibTeX for every
cited source, and the "reproduce this" block."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from audioprobe import supplement
from audioprobe.report import reproduce
from audioprobe.results import read_references

REPO = Path(__file__).resolve().parent.parent


def summary() -> pd.DataFrame:
    rows = []
    for dataset, metric in (("esc_50", "accuracy"), ("icbhi", "icbhi_score")):
        for k, model in enumerate(("logmel", "hubert_base")):
            for probe in ("linear", "mlp"):
                mean = 0.5 + 0.1 * k + (0.05 if probe == "mlp" else 0)
                rows.append({"dataset": dataset, "model": model, "probe": probe,
                             "headline_metric": metric, f"{metric}_mean": mean,
                             f"{metric}_ci_low": mean - 0.02, f"{metric}_ci_high": mean + 0.03})
    return pd.DataFrame(rows)


def comparisons() -> pd.DataFrame:
    """With the MLP, hubert_base beats logmel on esc_50 (Holm p 0.01, interval above 0) and
    not on icbhi (p 0.2); no comparison of the linear probes."""
    return pd.DataFrame([
        {"dataset": d, "probe": "mlp", "model_a": "hubert_base", "model_b": "logmel",
         "difference": 0.1, "ci_low": low, "ci_high": 0.2, "p_holm": p}
        for d, low, p in (("esc_50", 0.02, 0.01), ("icbhi", -0.01, 0.2))])


def test_matrix_csv_and_latex_hold_the_summary_values(tmp_path):
    paths = [tmp_path / n for n in ("m.csv", "m.tex", "r.bib")]
    supplement.write(summary(), comparisons(),
                     read_references(REPO / "report/reference_results.csv"),
                     ["esc_50", "icbhi"], *map(str, paths))
    frame = pd.read_csv(paths[0])
    assert len(frame) == 4
    row = frame[(frame["model"] == "hubert_base") & (frame["probe"] == "mlp")].iloc[0]
    assert row["icbhi_mean"] == pytest.approx(0.65) and row["icbhi_metric"] == "icbhi_score"
    assert row["esc_50_ci_low"] == pytest.approx(0.63)
    latex = paths[1].read_text()
    assert latex.count(r"\toprule") == latex.count(r"\midrule") == latex.count(r"\bottomrule") == 1
    assert r"esc\_50" in latex and r"icbhi score" in latex
    lines = {tuple(l.split(" & ")[:2]): l for l in latex.splitlines() if " & " in l}
    assert "[0.630, 0.680]" in lines["hubert\\_base", "mlp"]
    # bold as in the report: what no other model beats, not the highest mean
    assert lines["hubert\\_base", "mlp"].count(r"\textbf{") == 2  # unbeaten on both
    assert lines["logmel", "mlp"].count(r"\textbf{") == 1  # beaten on esc_50 only
    assert r"\textbf{0.550}" in lines["logmel", "mlp"].split(" & ")[3]
    assert not any(r"\textbf" in lines[m, "linear"] for m in ("logmel", "hubert\\_base"))
    assert "% bold: no other model with the same probe beats it" in latex
    body = latex.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    assert len(body) == 4 and all(l.count("&") == 3 for l in body)


def test_bibtex_has_every_cited_source_and_the_methods(tmp_path):
    references = read_references(REPO / "report/reference_results.csv")
    bib = supplement.bibtex(references)
    keys = re.findall(r"^@\w+\{([^,]+),", bib, re.M)
    assert len(keys) == len(set(keys))
    sources = references.drop_duplicates(["source", "year", "link"])
    assert len(keys) == len(supplement.METHOD_REFERENCES) + sources["source"].nunique()
    assert {"kornblith2019", "song2012", "nadeau2003", "holm1979"} <= set(keys)
    assert bib.count("{") == bib.count("}")
    # every source of a published number has its full record: authors, title, and a year
    # where the reference table gives one (HEAR 2021's proceedings appeared in 2022)
    assert set(sources["source"]) <= set(supplement.SOURCE_REFERENCES)
    entries = dict(re.findall(r"^@\w+\{([^,]+),\n(.*?)^\}", bib, re.M | re.S))
    for _, row in sources.iterrows():
        entry = entries[supplement.SOURCE_REFERENCES[row["source"]][0]]
        assert "  author = " in entry and "  title = " in entry
        assert not row["year"] or "  year = {20" in entry, row["source"]
    assert "Zhang, Junbo and Dinkel, Heinrich" in entries["zhang2025xares"]
    assert "pages = {1015--1018}" in entries["piczak2015esc"]
    assert "  year = {2024}" in entries["kim2024bts"]  # Interspeech 2024 (arXiv 2406.06786)


def test_reproduce_block_has_commit_config_digests_and_command(tmp_path):
    manifest = tmp_path / "demo.csv"
    manifest.write_text("clip_id,label\n1,a\n")
    config = {"datasets": {"demo": {"adapter": "custom"}}, "protocol": {"seeds": 2}}
    text = reproduce.block(config, "abc123 + uncommitted changes", {"demo": manifest},
                           {"numpy": "2.1.0", "torch": "not installed"})
    assert "git checkout abc123" in text and "uncommitted" in text
    assert hashlib.sha256(manifest.read_bytes()).hexdigest() in text
    assert "'numpy==2.1.0'" in text and "torch" not in text.split("pip install")[1].split("\n")[0]
    inner = text.split("<<'EOF'\n")[1].split("\nEOF")[0]
    assert yaml.safe_load(inner) == config
    assert text.rstrip().endswith(reproduce.COMMAND)


def test_citation_and_license_at_the_top_level():
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["license"] == "MIT"
    assert citation["authors"] == [{"name": "audioprobe developers"}]
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)[1]
    assert str(citation["version"]) == version
    license_text = (REPO / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "audioprobe developers" in license_text
