"""A trained probe labels new audio files from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audioprobe import manifest
from audioprobe.features.families import load_encoder
from audioprobe.features.extract import extract
from audioprobe.features.store import open_store
from audioprobe.probes.label import _predict, features, label
from audioprobe.probes.saved import extraction_settings
from audioprobe.probes.run import probe_all
from audioprobe.settings import ExtractionSettings, ProtocolSettings


def test_label_returns_the_true_class_first_and_skips_bad_files(demo_run, tmp_path):
    audio = demo_run / "resources/datasets/demo/audio"
    files = [str(audio / "tone_low-f1-s0-t0.wav"), str(audio / "clicks-f2-s1-t0.wav")]
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    table = label([*files, str(bad)], demo_run / "results/probes/demo/logmel/linear.pt", 3)
    top = table[table["rank"] == 1].set_index("file")["class"]
    assert top[files[0]] == "tone_low" and top[files[1]] == "clicks"
    assert (table.groupby("file").size()[files] == 3).all()
    probabilities = table[table["file"] == files[0]]["probability"].to_numpy()
    assert (probabilities[:-1] >= probabilities[1:]).all() and probabilities.sum() <= 1 + 1e-6
    skipped = table[table["file"] == str(bad)]
    assert skipped["skipped"].item().startswith("unreadable audio")


def test_label_command_prints_a_table(demo_run, tmp_path):
    wav = demo_run / "resources/datasets/demo/audio/chirp_up-f1-s0-t0.wav"
    probe = str(demo_run / "results/probes/demo/crepe_tiny/mlp.pt")
    result = subprocess.run([sys.executable, "-m", "audioprobe.cli", "label", probe, str(wav),
                             "--top", "2"], capture_output=True, text=True, check=True)
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:4] == ["file", "rank", "class", "probability"]
    assert len(lines) == 3
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    result = subprocess.run([sys.executable, "-m", "audioprobe.cli", "label", probe, str(bad),
                             str(wav), "--top", "2", "--json"], capture_output=True, text=True)
    assert result.returncode == 1 and "1 of 2 files skipped" in result.stderr
    assert "\\/" not in result.stdout  # paths as written, no escaped slashes
    rows = json.loads(result.stdout)
    assert [(r["file"], r["rank"]) for r in rows] == [(str(bad), 0), (str(wav), 1),
                                                      (str(wav), 2)]  # in the order given
    assert rows[1]["probability"] >= rows[2]["probability"]
    assert rows[0]["skipped"].startswith("unreadable audio") and rows[0]["probability"] is None
    for top in ("0", "-1", "two"):
        wrong = subprocess.run([sys.executable, "-m", "audioprobe.cli", "label", probe,
                                str(wav), "--top", top], capture_output=True, text=True)
        assert wrong.returncode == 2 and "not a whole number of at least 1" in wrong.stderr
    missing = subprocess.run([sys.executable, "-m", "audioprobe.cli", "label", "nothing.pt",
                              str(wav)], capture_output=True, text=True)
    assert missing.returncode == 2 and "nothing.pt" in missing.stderr
    assert "Traceback" not in missing.stderr


def tone(path: Path, freq: float, seconds: float, seed: int) -> str:
    t = np.arange(int(seconds * 16000)) / 16000
    noise = np.random.default_rng(seed).standard_normal(t.size)
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t * (1 + 0.2 * t)) + 0.02 * noise)
             .astype(np.float32), 16000)
    return str(path)


def test_label_extracts_as_the_probe_features_were(tmp_path):
    """A probe trained on max-pooled features of 0.5 s windows, with a 2 s clip limit, labels new
    files with those settings: their features equal the store's, not extract()'s defaults'."""
    freqs = {"low": 300.0, "mid": 900.0, "high": 2500.0}
    rows = [{"clip_id": f"{name}{fold}{k}", "label": name, "fold": fold,
             "path": tone(tmp_path / f"{name}{fold}{k}.wav", freq * (1 + 0.03 * k), 1.5,
                          fold * 10 + k)}
            for name, freq in freqs.items() for fold in (1, 2, 3) for k in range(2)]
    clips = manifest.make(rows)
    card = {"family": "logmel", "sample_rate": 16000, "n_mels": 16}
    extract(clips, load_encoder(card), tmp_path / "store.h5", attrs={"protocol": "folds"},
            settings=ExtractionSettings.from_config(
                pooling="max", max_seconds=0.5, max_clip_seconds=2.0, num_workers=0,
                device="cpu"))
    store = open_store(tmp_path / "store.h5")
    settings = extraction_settings(store.attrs)
    assert settings == {"pooling": "max", "max_seconds": 0.5, "max_clip_seconds": 2.0,
                        "precision": "fp32"}
    protocol = {"seeds": 1, "learning_rates": [0.01], "weight_decays": [0.0], "max_epochs": 20,
                "patience": 5, "batch_size": 64}
    probes = probe_all(store, "linear", {"kind": "linear"},
                       ProtocolSettings.from_config(protocol)).probes
    probe_file = tmp_path / "linear.pt"
    torch.save(probes | {"card": card, "extraction": settings}, probe_file)

    long = tone(tmp_path / "long.wav", 900.0, 3.0, 99)
    paths = [rows[0]["path"], rows[7]["path"], rows[14]["path"], long]
    saved = torch.load(probe_file, weights_only=True)
    values, kept, rejected = features(paths, saved)
    assert kept.tolist() == [0, 1, 2]
    stored = store.layer(0)[[0, 7, 14]]  # log-mel: one layer, every round's choice
    np.testing.assert_allclose(values[0].numpy(), stored, rtol=1e-5, atol=1e-6)
    assert rejected["reason"].item().startswith("longer than 2 s")
    # extract()'s defaults (30 s windows, no 2 s limit) give other features and keep the 3 s file
    defaults, kept_all, _ = features(paths, {k: v for k, v in saved.items() if k != "extraction"})
    assert kept_all.tolist() == [0, 1, 2, 3]
    assert np.abs(defaults[0][:3].numpy() - stored).max() > 1e-3

    table = label(paths, probe_file, 3)
    skipped = table[table["file"] == long]
    assert skipped["skipped"].item().startswith("longer than 2 s")
    top = table[table["rank"] == 1].set_index("file")["class"]
    expected = np.mean([_predict(torch.as_tensor(stored[None], dtype=torch.float64), probes, r)
                        for r in probes["rounds"]], axis=0)
    assert list(top[paths[:3]]) == [probes["classes"][i] for i in expected.argmax(1)]
