"""The family registry: every family module provides the interface, and the registry's answers
(layer names, batching rule, GPU, baseline) agree with the encoders the families build."""

from __future__ import annotations

import subprocess
import sys

import pytest

from audioprobe.errors import AudioprobeError, OptionError
from audioprobe.features import families
from audioprobe.features.families import (
    GENERIC_KEYS, family, fetch, is_baseline, load_encoder, needs_gpu, spec_of,
)
from audioprobe.features.families.common import BaseEncoder
from tests.conftest import REPO
from tests.test_encoders import TA_TINY, TRANSFORMERS

SPECS = {
    "logmel": {"family": "logmel", "n_mels": 16},
    "hubert": {"family": "transformers", "architecture": TRANSFORMERS["hubert"],
               "random_weights": True},
    "wav2vec2-conformer": {"family": "transformers",
                           "architecture": TRANSFORMERS["wav2vec2-conformer"],
                           "random_weights": True},
    "whisper": {"family": "transformers", "architecture": TRANSFORMERS["whisper"],
                "random_weights": True},
    "ast": {"family": "transformers", "architecture": TRANSFORMERS["ast"],
            "random_weights": True},
    "torchaudio": {"family": "torchaudio", "bundle": "HUBERT_BASE", "architecture": TA_TINY,
                   "random_weights": True},
    "crepe": {"family": "crepe", "capacity": "tiny"},
}
BATCHING = {"logmel": "padded", "hubert": "padded", "wav2vec2-conformer": "alone",
            "whisper": "fixed", "ast": "fixed", "torchaudio": "padded", "crepe": "padded"}
LAYERS = {"logmel": ["log-mel"], "hubert": ["input embedding", "block 1", "block 2"],
          "torchaudio": ["block 1", "block 2"],
          "crepe": [*(f"conv block {k}" for k in range(1, 6)),
                    "embedding (conv block 5, flattened)", "conv block 6"]}


def test_every_family_module_provides_the_interface():
    for name in families.FAMILIES:
        module = family(name)
        for attribute in ("fetch", "load", "layer_names", "batching"):
            assert callable(getattr(module, attribute)), (name, attribute)
        assert callable(getattr(module, "check", None)) == families.FAMILIES[name].checks, name
        assert not set(families.FAMILIES[name].options.__annotations__) & set(GENERIC_KEYS), name
    assert [n for n in families.FAMILIES if families.FAMILIES[n].baseline] == ["logmel"]
    assert [n for n in families.FAMILIES if not needs_gpu({"family": n})] == ["logmel"]
    # CREPE tiny runs on CPUs, full asks for a GPU; any model's gpu setting decides over both
    assert not needs_gpu({"family": "crepe", "capacity": "tiny"})
    assert needs_gpu({"family": "crepe", "capacity": "full"})
    assert needs_gpu({"family": "logmel", "gpu": True})
    assert not needs_gpu({"family": "transformers", "gpu": False})
    assert is_baseline({"family": "logmel"}) and not is_baseline({"family": "panns"})
    assert not is_baseline({})


def namespaced(spec: dict) -> dict:
    """The config entry of ``spec`` in the current form: the family's options under options."""
    top = {key: value for key, value in spec.items() if key in GENERIC_KEYS}
    options = {key: value for key, value in spec.items() if key not in GENERIC_KEYS}
    if isinstance(options.get("options"), dict):  # hear and custom: the user's keyword arguments
        options |= options.pop("options")
    return top | ({"options": options} if options else {})


USER_SPECS = {
    "hear": {"family": "hear", "module": "tinyhear", "weights": "w.pt", "embedding": "scene",
             "options": {"width": 3}},
    "custom": {"family": "custom", "class": "myencoder:TinyEncoder", "options": {"width": 12},
               "gpu": False},
}


@pytest.mark.parametrize("model", sorted(SPECS | USER_SPECS))
def test_both_config_forms_give_the_same_spec(model):
    """A model's family options under ``options`` or (deprecated) at the top level: the same
    spec, so the same fetch_model params and card; the top-level ones are named to move."""
    flat = (SPECS | USER_SPECS)[model]
    moved = [key for key in flat if key not in (*GENERIC_KEYS, "options")]
    assert spec_of(flat) == (flat, moved)
    new = namespaced(flat)
    assert "options" in new or not moved
    assert spec_of(new) == (flat, [])


@pytest.mark.parametrize("entry, message", [
    ({"family": "crepe", "options": {"capacity": "huge"}},
     "options: capacity: 'huge' is not allowed for family crepe; allowed: 'tiny', 'full'"),
    ({"family": "crepe", "options": {"n_mels": 64}},
     "options: unknown key 'n_mels' for family crepe; allowed keys: capacity, hop_ms"),
    ({"family": "logmel", "options": {"n_mels": "64"}},
     "options: n_mels: '64' is not allowed for family logmel; allowed: any int"),
    ({"family": "logmel", "n_mels": 32, "options": {"n_mels": 64}},
     "options.n_mels: also given at the top level; give it once, under options"),
    ({"family": "transformers", "bundle": "HUBERT_BASE"},
     "unknown key 'bundle' for family transformers; allowed keys: architecture (or one of "),
    ({"family": "custom", "options": {"class": 3}},
     "options: class: 3 is not allowed for family custom; allowed: any str"),
])
def test_family_options_are_checked_against_the_familys(entry, message):
    with pytest.raises(OptionError) as caught:
        spec_of(entry)
    assert str(caught.value).startswith(message)


def test_every_encoder_shares_the_base():
    from audioprobe.features.families import (
        crepe, logmel, panns, torchaudio, transformers, user_code,
    )
    encoders = [crepe.CrepeEncoder, logmel.LogMelEncoder, panns.PannsEncoder,
                torchaudio.TorchaudioEncoder, transformers.TransformersEncoder,
                transformers.WhisperEncoder, transformers.ASTEncoder, user_code.UserEncoder]
    assert all(issubclass(cls, BaseEncoder) for cls in encoders)
    assert all("to" not in vars(cls) for cls in encoders)


@pytest.mark.parametrize("model", sorted(SPECS))
def test_layer_names_and_batching_match_the_encoder(model, tmp_path):
    card = fetch(model, SPECS[model], tmp_path / "models")
    assert card["name"] == model and card["family"] == SPECS[model]["family"]
    module = family(card["family"])
    assert module.batching(card) == BATCHING[model]
    encoder = load_encoder(card)
    names = families.layer_names(card, encoder)
    assert len(names) == len(set(names)) == encoder.n_layers
    if model in LAYERS:
        assert names == LAYERS[model]


def test_panns_layer_names():
    names = family("panns").layer_names(7)
    assert names == [f"conv block {k}" for k in range(1, 7)] + ["embedding"]


def test_unknown_family_is_a_one_line_error(tmp_path):
    with pytest.raises(AudioprobeError, match=r"^model m: unknown model family 'cnn'; known: "):
        fetch("m", {"family": "cnn"}, tmp_path)


def test_importing_the_registry_does_not_import_torch():
    code = "import sys, audioprobe.features.families; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"
