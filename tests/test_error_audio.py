"""Error analysis you can hear: the highest-loss clips, their players and the size cap."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pandas as pd
import soundfile as sf

from audioprobe.report import error_audio as ea


def test_worst_clips_are_the_highest_mean_loss():
    predictions = pd.DataFrame({
        "clip_id": ["a", "a", "b", "b", "c", "c"], "label": ["x", "x", "y", "y", "x", "x"],
        "prediction": ["y", "y", "y", "x", "x", "x"], "loss": [2.0, 1.0, 0.1, 3.0, 0.2, 0.2]})
    worst = ea.worst_clips(predictions, 2)
    assert list(worst["clip_id"]) == ["b", "a"]
    assert worst.loc[0, "loss"] == 1.55 and worst.loc[1, "prediction"] == "y"


def test_the_cap_keeps_every_dataset_within_the_budget():
    for datasets in (1, 6, 12):
        count = ea.clips_per_dataset(20, datasets)
        assert count <= 20
        per_clip = 4 / 3 * (ea.RATE * ea.SECONDS * 2 + 44) + 15_000
        assert count * datasets * per_clip <= ea.BUDGET < 10e6 / 3
    assert ea.clips_per_dataset(0, 6) == 0 and ea.clips_per_dataset(3, 1) == 3


def test_rows_embed_a_short_8_khz_player_and_a_spectrogram(tmp_path):
    path = tmp_path / "long.wav"
    t = np.arange(44100 * 10) / 44100
    sf.write(path, 0.5 * np.sin(2 * np.pi * 440 * t), 44100)
    manifest = pd.DataFrame({"clip_id": ["long", "gone"], "path": [str(path), str(tmp_path / "x.wav")],
                             "start": [np.nan, np.nan], "end": [np.nan, np.nan]})
    worst = pd.DataFrame({"clip_id": ["long", "gone"], "label": ["a", "b"],
                          "prediction": ["b", "a"], "loss": [3.0, 2.0]})
    page = ea.rows_html(worst, manifest)
    (wav,) = re.findall(r'src="data:audio/wav;base64,([^"]+)"', page)
    wave, rate = sf.read(io.BytesIO(base64.b64decode(wav)))
    assert rate == ea.RATE and len(wave) == ea.SECONDS * ea.RATE
    assert page.count('alt="spectrogram"') == 1 and "audio not available" in page
    assert len(page) < 4 / 3 * ea.RATE * ea.SECONDS * 2 + 20_000


def test_the_clips_heard_are_the_best_case_of_each_dataset_on_its_headline():
    summary = pd.DataFrame({
        "dataset": ["a", "a", "b", "b"], "model": ["m", "n", "m", "n"],
        "probe": ["linear", "mlp", "linear", "linear"],
        "headline_metric": ["accuracy", "accuracy", "icbhi_score", "icbhi_score"],
        "accuracy_mean": [0.7, 0.8, 0.9, 0.1], "icbhi_score_mean": [0.2, 0.6, 0.3, 0.5]})
    assert ea.best_case(summary, "a") == ("n", "mlp")
    assert ea.best_case(summary, "b") == ("n", "linear")
