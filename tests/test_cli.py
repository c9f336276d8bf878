"""The command line: its version, its help (Snakemake is the workflow's interface), and
``audioprobe label``'s output formats and exit status, on a stand-in for the probe."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from audioprobe import __version__, cli
from audioprobe.probes import label as label_module

TABLE = pd.DataFrame([
    {"file": "a.wav", "rank": 1, "class": "dog", "probability": 0.75, "skipped": ""},
    {"file": "a.wav", "rank": 2, "class": "cat", "probability": 0.25, "skipped": ""},
    {"file": "b.wav", "rank": 0, "class": "", "probability": np.nan,
     "skipped": "unreadable audio: not a sound file"}])


@pytest.fixture
def labelled(monkeypatch):
    """``label()`` answers TABLE's rows of the files asked for."""
    monkeypatch.setattr(label_module, "label",
                        lambda paths, probe, top: TABLE[TABLE["file"].isin(paths)])


def test_version():
    result = subprocess.run([sys.executable, "-m", "audioprobe.cli", "--version"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"audioprobe {__version__}"


def test_help_says_snakemake_is_the_interface_with_the_demo_command():
    result = subprocess.run([sys.executable, "-m", "audioprobe.cli", "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0
    assert "Snakemake is the interface" in result.stdout
    assert "snakemake --cores 8 --resources gpu=1" in result.stdout
    assert "results/report/report.html" in result.stdout


def test_label_exits_1_when_a_file_was_skipped(labelled, capsys):
    assert cli.main(["label", "p.pt", "a.wav"]) == 0
    assert capsys.readouterr().err == ""
    assert cli.main(["label", "p.pt", "a.wav", "b.wav"]) == 1
    out, err = capsys.readouterr()
    assert "unreadable audio" in out and err.strip() == "audioprobe: 1 of 2 files skipped"


def test_label_json(labelled, capsys):
    assert cli.main(["label", "p.pt", "a.wav", "b.wav", "--json"]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == {"file": "a.wav", "rank": 1, "class": "dog", "probability": 0.75,
                       "skipped": ""}
    assert rows[2]["probability"] is None and rows[2]["skipped"].startswith("unreadable")


def test_label_csv(labelled, capsys):
    assert cli.main(["label", "p.pt", "a.wav", "--csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False)
    assert list(table.columns) == ["file", "rank", "class", "probability", "skipped"]
    assert table["class"].tolist() == ["dog", "cat"]
    assert table["probability"].tolist() == [0.75, 0.25]


def test_json_and_csv_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["label", "p.pt", "a.wav", "--json", "--csv"])
    assert exit_.value.code == 2 and "not allowed with" in capsys.readouterr().err
