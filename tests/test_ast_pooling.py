"""AST pools the patches over the clip only, not the [CLS]/distillation tokens or the patches
over the fixed-length input's padding; and the store records whether waveforms were normalised."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import torchaudio.compliance.kaldi as kaldi

from audioprobe import manifest
from audioprobe.features.families import fetch, load_encoder
from audioprobe.features.families.transformers import ASTEncoder
from audioprobe.features.extract import extract
from audioprobe.features.store import open_store
from audioprobe.settings import ExtractionSettings

# 200 fbank frames (2 s) x 128 mel bins: 12 frequency rows x 19 time columns of patches
AST = {"model_type": "audio-spectrogram-transformer", "hidden_size": 32, "num_hidden_layers": 2,
       "num_attention_heads": 2, "intermediate_size": 64, "num_mel_bins": 128,
       "max_length": 200}


@pytest.fixture(scope="module")
def ast(tmp_path_factory) -> ASTEncoder:
    card = fetch("ast", {"family": "transformers", "architecture": AST, "random_weights": True},
                 tmp_path_factory.mktemp("models"))
    return load_encoder(card)


def test_patch_grid(ast):
    assert (ast.rows, ast.columns, ast.time_stride) == (12, 19, 10)


@pytest.mark.parametrize("samples, columns", [(400, 1), (1999, 1), (2000, 2), (8000, 5),
                                              (16000, 10), (31840, 19), (32000, 19)])
def test_columns_covered_follow_the_fbank_frames(ast, samples, columns):
    frames = kaldi.fbank(torch.zeros(1, samples), sample_frequency=16000,
                         window_type="hanning", num_mel_bins=128).shape[0]
    assert ast.columns_covered(torch.tensor([samples])).item() == min(columns, 19)
    assert columns == min(19, -(-frames // 10))  # the columns starting inside the fbank


def test_pooling_covers_the_clip_patches_only(ast, tmp_path):
    rng = np.random.default_rng(3)
    sf.write(tmp_path / "short.wav", 0.3 * rng.standard_normal(8000), 16000, subtype="FLOAT")
    clips = manifest.make([{"clip_id": "short", "path": str(tmp_path / "short.wav"),
                            "label": "a", "fold": 1}])
    extract(clips, ast, tmp_path / "f.h5", attrs={},
            settings=ExtractionSettings.from_config(num_workers=0, device="cpu"))
    stored = open_store(tmp_path / "f.h5")
    wave = torch.from_numpy(sf.read(tmp_path / "short.wav", dtype="float32")[0])
    with torch.no_grad():
        hidden = ast.model(ast.prepare([wave])["input_values"],
                           output_hidden_states=True).hidden_states
    # 0.5 s: 48 fbank frames, so columns 0-4 of each of the 12 rows, past the 2 special tokens
    index = [2 + row * 19 + column for row in range(12) for column in range(5)]
    for layer, h in enumerate(hidden):
        expected = h[0, index].mean(0).numpy()
        np.testing.assert_allclose(stored.layer(layer)[0], expected, rtol=1e-4, atol=1e-5)
        assert not np.allclose(stored.layer(layer)[0], h[0].mean(0).numpy(), atol=1e-3)


def test_store_records_waveform_normalisation(ast, tmp_path):
    hubert = {"model_type": "hubert", "hidden_size": 32, "num_hidden_layers": 1,
              "num_attention_heads": 2, "intermediate_size": 64, "conv_dim": [16] * 7,
              "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2}
    encoder = load_encoder(fetch("hubert", {"family": "transformers", "architecture": hubert,
                                            "random_weights": True}, tmp_path))
    assert encoder.normalizes_waveform is bool(encoder.extractor.do_normalize)
    encoder.extractor.do_normalize = not encoder.extractor.do_normalize
    assert encoder.normalizes_waveform is bool(encoder.extractor.do_normalize)
    assert ast.normalizes_waveform is False  # its extractor normalises the fbank
    assert load_encoder({"family": "logmel"}).normalizes_waveform is False
