"""Checkpoint files are untrusted: one that pickles more than tensors is refused (one line, what
to do) unless the model opts in with ``trust_checkpoint: true``, at fetch, at extraction (the
card) and in ``audioprobe label`` (the probe file's card). Crafted pickles prove nothing ran."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audioprobe.errors import UnsafeCheckpointError
from audioprobe.features.families import fetch, load_encoder
from audioprobe.features.families.common import safe_torch_load
from tests.conftest import REPO


class Payload:
    """Unpickling this runs a shell command that writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def crafted(path: Path, marker: Path) -> Path:
    """A checkpoint whose unpickling would write ``marker``."""
    torch.save({"iteration": 0, "model": Payload(marker)}, path)
    return path


def one_line(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message and "trust_checkpoint: true" in message
    return message


def test_safe_torch_load_refuses_a_crafted_pickle(tmp_path):
    marker = tmp_path / "ran"
    path = crafted(tmp_path / "weights.pt", marker)
    with pytest.raises(UnsafeCheckpointError) as caught:
        safe_torch_load(path)
    assert str(path) in one_line(caught.value)
    assert not marker.exists()
    tensors = tmp_path / "tensors.pt"
    torch.save({"w": torch.ones(2)}, tensors)
    assert torch.equal(safe_torch_load(tensors)["w"], torch.ones(2))


@pytest.fixture(scope="module")
def cnn14_state():
    pytest.importorskip("panns_inference")
    card = fetch("cnn14", {"family": "panns", "random_weights": True, "sample_rate": 16000},
                 Path("unused"))
    return load_encoder(card).model.state_dict()


def test_panns_fetch_and_load_refuse_a_crafted_checkpoint(cnn14_state, tmp_path):
    marker = tmp_path / "ran"
    path = crafted(tmp_path / "Cnn14_mAP=0.431.pth", marker)
    with pytest.raises(UnsafeCheckpointError) as caught:
        fetch("cnn14", {"family": "panns", "checkpoint": str(path)}, tmp_path / "models")
    one_line(caught.value)
    card = {"name": "cnn14", "family": "panns", "sample_rate": 16000, "path": str(path)}
    with pytest.raises(UnsafeCheckpointError) as caught:
        load_encoder(card)
    one_line(caught.value)
    assert not marker.exists()


def test_label_refuses_a_crafted_checkpoint_in_one_line(cnn14_state, tmp_path):
    marker = tmp_path / "ran"
    path = crafted(tmp_path / "Cnn14_mAP=0.431.pth", marker)
    probe = tmp_path / "linear.pt"
    card = {"name": "cnn14", "family": "panns", "sample_rate": 16000, "path": str(path)}
    torch.save({"card": card, "pooling": "mean", "classes": ["a", "b"],
                "rounds": [], "architecture": {}}, probe)
    wav = tmp_path / "clip.wav"
    sf.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    result = subprocess.run([sys.executable, "-m", "audioprobe.cli", "label", str(probe),
                             str(wav)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("audioprobe: ") and "trust_checkpoint: true" in line
    assert not marker.exists()


def test_trust_checkpoint_loads_a_training_checkpoint_and_travels_in_the_card(cnn14_state,
                                                                              tmp_path):
    """A checkpoint with a pickled object besides its tensors (here training arguments) loads
    only with the opt-in, which the card records for every later load."""
    path = tmp_path / "Cnn14_16k_mAP=0.438.pth"
    torch.save({"model": cnn14_state, "args": argparse.Namespace(lr=1e-3)}, path)
    spec = {"family": "panns", "checkpoint": str(path)}
    with pytest.raises(UnsafeCheckpointError):
        fetch("cnn14", spec, tmp_path / "models")
    card = fetch("cnn14", spec | {"trust_checkpoint": True}, tmp_path / "models")
    assert card["trust_checkpoint"] is True and card["sample_rate"] == 16000
    loaded = load_encoder(card).model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in cnn14_state.items())
    with pytest.raises(UnsafeCheckpointError):
        load_encoder({k: v for k, v in card.items() if k != "trust_checkpoint"})


def test_a_training_checkpoint_with_numpy_state_loads_without_the_opt_in(cnn14_state, tmp_path):
    """PANNs' released checkpoints keep their training sampler's state (numpy arrays and
    scalars) beside the weights: data, not code, so no opt-in is needed."""
    path = tmp_path / "Cnn14_16k_mAP=0.438.pth"
    sampler = {"indexes_per_class": [np.arange(5), np.arange(3)], "queue": [np.int64(3), 4],
               "pointers_of_classes": [0, 1]}
    torch.save({"iteration": 10, "model": cnn14_state, "sampler": sampler}, path)
    loaded = safe_torch_load(path)
    np.testing.assert_array_equal(loaded["sampler"]["indexes_per_class"][0], np.arange(5))
    card = fetch("cnn14", {"family": "panns", "checkpoint": str(path)}, tmp_path / "models")
    assert "trust_checkpoint" not in card and card["sample_rate"] == 16000


def test_panns_reads_a_safetensors_state_dict(cnn14_state, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "cnn14.safetensors"
    save_file({k: v.contiguous() for k, v in cnn14_state.items()}, path)
    card = fetch("cnn14", {"family": "panns", "checkpoint": str(path)}, tmp_path / "models")
    assert "trust_checkpoint" not in card and card["sample_rate"] == 16000
    loaded = load_encoder(card).model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in cnn14_state.items())


def test_torchaudio_weights_are_loaded_as_tensors_only(tmp_path):
    """torch.hub unpickles in full by default; a crafted file where the bundle's weights are
    cached is refused at fetch, as at extraction."""
    from audioprobe.features.families.torchaudio import torchaudio_bundle

    marker = tmp_path / "ran"
    weights = tmp_path / "models" / "torchaudio" / Path(torchaudio_bundle("HUBERT_BASE")._path).name
    weights.parent.mkdir(parents=True)
    crafted(weights, marker)
    with pytest.raises(UnsafeCheckpointError) as caught:
        fetch("hubert", {"family": "torchaudio", "bundle": "HUBERT_BASE"}, tmp_path / "models")
    one_line(caught.value)
    card = {"name": "hubert", "family": "torchaudio", "bundle": "HUBERT_BASE",
            "path": str(weights)}
    with pytest.raises(UnsafeCheckpointError):
        load_encoder(card)
    assert not marker.exists()


UNSAFE = re.compile(r"weights_only\s*=\s*False|trust_remote_code\s*=\s*True|pickle\.loads?\(|"
                    r"torch\.load\((?![^)]*weights_only\s*=\s*True)")


def test_the_package_loads_no_pickle_but_through_safe_torch_load():
    """Every torch.load in the package restricts itself to tensors, but the one opt-in branch of
    ``safe_torch_load``; nothing unpickles otherwise or lets transformers run a repository's
    code."""
    found = {str(path.relative_to(REPO)): UNSAFE.findall(path.read_text())
             for path in (REPO / "audioprobe").rglob("*.py")}
    found = {path: hits for path, hits in found.items() if hits}
    assert found == {"audioprobe/features/families/common.py": ["torch.load(", "weights_only=False"]}
