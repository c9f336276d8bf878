"""Every model family is exact under batching, has the expected layers, and is windowed right.

Each family runs as a tiny randomly initialised model (hidden size 32, 2 layers; PANNs: the
package's full-width Cnn14 on short clips). Exactness: a clip's pooled features extracted alone
equal those extracted inside a batch of clips of other lengths (padded batches for models with
masks or fixed-length input, equal-length batches otherwise) within ATOL, a float32
rounding-level bound; the largest differences measured are printed (``pytest -s``).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import soundfile as sf
import torch

from audioprobe.errors import AudioprobeError
from audioprobe.features.checkpoints import fetch
from audioprobe.features.encoders import load_encoder
from tests.test_extract import clips_frame, run, write

ATOL = 1e-5
RTOL = 1e-4

TINY_W2V = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 64, "conv_dim": [16] * 7, "num_conv_pos_embeddings": 16,
            "num_conv_pos_embedding_groups": 2}
# model_type and overrides; whether padded batches are exact
TRANSFORMERS = {
    "wavlm": ({"model_type": "wavlm", "num_buckets": 32, "max_bucket_distance": 100,
               **TINY_W2V}, False),
    "wavlm-masked": ({"model_type": "wavlm", "feat_extract_norm": "layer",
                      "do_stable_layer_norm": True, "num_buckets": 32,
                      "max_bucket_distance": 100, **TINY_W2V}, True),
    "hubert-masked": ({"model_type": "hubert", "feat_extract_norm": "layer",
                       "do_stable_layer_norm": True, **TINY_W2V}, True),
    # takes masks, but its stacked positional convolutions carry padding into the clip
    "data2vec-audio": ({"model_type": "data2vec-audio", **TINY_W2V, "conv_pos_kernel_size": 5,
                        "num_conv_pos_embeddings": 2}, False),
    # 100 encoder positions: 200 mel frames = 2 s of input (30 s for the real models)
    "whisper": ({"model_type": "whisper", "d_model": 32, "encoder_layers": 2,
                 "encoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_layers": 1,
                 "decoder_attention_heads": 2, "decoder_ffn_dim": 64, "num_mel_bins": 16,
                 "max_source_positions": 100, "max_target_positions": 16}, True),
    # 200 fbank frames = 2 s of input (1024 = 10.24 s for the real models); 1 x 19 patches
    "ast": ({"model_type": "audio-spectrogram-transformer", "hidden_size": 32,
             "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
             "num_mel_bins": 16, "max_length": 200}, True),
}
TA_TINY = {"extractor_conv_layer_config": [[16, 10, 5]] + [[16, 3, 2]] * 4 + [[16, 2, 2]] * 2,
           "encoder_embed_dim": 32, "encoder_num_layers": 2, "encoder_num_heads": 2,
           "encoder_ff_interm_features": 64, "encoder_pos_conv_kernel": 16,
           "encoder_pos_conv_groups": 2}
TORCHAUDIO = {  # bundle: padded batches exact (layer-norm feature encoder)
    "HUBERT_BASE": False, "HUBERT_LARGE": True, "WAVLM_LARGE": False,
}
OTHER_CLIPS = [(1.3, 16000), (0.7, 16000), (2.1, 22050), (1.0, 8000), (0.9, 44100)]


def alone_and_mixed(encoder, tmp_path, label: str):
    """Pooled features (layers, dim) of one clip extracted alone and inside a mixed batch."""
    target = write(tmp_path / "target.wav", 1.3, seed=1)
    others = [write(tmp_path / f"other{i}.wav", s, sr=sr, seed=10 + i)
              for i, (s, sr) in enumerate(OTHER_CLIPS)]
    alone, _, _ = run(clips_frame([target]), encoder, tmp_path / "alone.h5", batch_size=8)
    mixed, meta, _ = run(clips_frame([*others, target]), encoder, tmp_path / "mixed.h5",
                         batch_size=8)
    row = meta.index[meta["clip_id"] == "target"][0]
    alone, mixed = alone[:, 0], mixed[:, row]
    print(f"\n{label}: max |alone - batched| = {np.abs(alone - mixed).max():.2e} "
          f"(max |feature| {np.abs(alone).max():.2e})")
    return alone, mixed


def windows_combine(encoder, tmp_path, seconds: float, frames: list[int]):
    """A clip longer than the model's input span is windowed at ``encoder.max_seconds`` and
    its features are the frame-weighted mean of its windows' features."""
    sr = 16000
    rng = np.random.default_rng(7)
    data = 0.3 * rng.standard_normal(int(seconds * sr))
    sf.write(tmp_path / "long.wav", data, sr, subtype="FLOAT")
    step = int(encoder.max_seconds * sr)
    parts = []
    for i, lo in enumerate(range(0, len(data), step)):
        sf.write(tmp_path / f"part{i}.wav", data[lo:lo + step], sr, subtype="FLOAT")
        parts.append(tmp_path / f"part{i}.wav")
    assert len(parts) == len(frames)
    whole, meta, _ = run(clips_frame([tmp_path / "long.wav"]), encoder, tmp_path / "long.h5",
                         max_seconds=30)
    assert meta["duration"].iat[0] == pytest.approx(seconds)
    each, _, _ = run(clips_frame(parts), encoder, tmp_path / "parts.h5", max_seconds=30)
    weights = np.array(frames, dtype=float)
    expected = (each * weights[None, :, None]).sum(1) / weights.sum()
    np.testing.assert_allclose(whole[:, 0], expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("family", ["hubert", "hubert-masked"])
def test_wav2vec2_inputs_equal_the_feature_extractor(family, normalize, tmp_path):
    """The wav2vec2 extractor's steps, replayed in torch so they can run on the device, give
    the extractor's own inputs (with a mask: padded batches; without: equal lengths)."""
    architecture = TRANSFORMERS[family][0] if family in TRANSFORMERS else {
        "model_type": "hubert", **TINY_W2V}
    encoder = load_encoder(fetch(family, {"family": "transformers", "architecture": architecture,
                                          "random_weights": True}, tmp_path / "models"))
    encoder.extractor.do_normalize = normalize
    lengths = [5000, 3100, 4200] if encoder.pads_exactly else [4200] * 3
    gen = torch.Generator().manual_seed(0)
    waves = [0.1 + 0.3 * torch.randn(n, generator=gen) for n in lengths]
    ours = encoder.prepare(waves)
    theirs = encoder.extractor([w.numpy() for w in waves], sampling_rate=encoder.sample_rate,
                               padding=True, return_attention_mask=encoder.pads_exactly,
                               return_tensors="pt")
    assert encoder.prepares_on_device and sorted(ours) == sorted(theirs)
    for key in ours:
        assert ours[key].dtype == theirs[key].dtype
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", sorted(TRANSFORMERS))
def test_transformers_family_is_exact_under_batching(family, tmp_path):
    arch, exact_padding = TRANSFORMERS[family]
    card = fetch(family, {"family": "transformers", "architecture": arch,
                          "random_weights": True}, tmp_path / "models")
    assert card["model_type"] == arch["model_type"]
    assert card["revision"] and card["model_id"] and card["path"]
    encoder = load_encoder(card)
    assert encoder.pads_exactly == exact_padding
    alone, mixed = alone_and_mixed(encoder, tmp_path, family)
    assert alone.shape == (3, 32)  # input embedding + 2 layers, hidden size 32
    assert encoder.n_layers == 3
    np.testing.assert_allclose(mixed, alone, rtol=RTOL, atol=ATOL)


def test_whisper_crops_frames_and_windows_long_clips(tmp_path):
    arch, _ = TRANSFORMERS["whisper"]
    card = fetch("whisper", {"family": "transformers", "architecture": arch,
                             "random_weights": True}, tmp_path / "models")
    encoder = load_encoder(card)
    assert encoder.max_seconds == 2.0
    # valid encoder frames: ceil(samples / hop / 2), capped at the context
    lengths = torch.tensor([1, 320, 321, 20800, 32000, 40000])
    assert encoder.frames(lengths).tolist() == [1, 1, 2, 65, 100, 100]
    # 5 s: windows of 2, 2 and 1 s, i.e. 100, 100 and 50 encoder frames
    windows_combine(encoder, tmp_path, 5.0, [100, 100, 50])


def test_ast_windows_long_clips(tmp_path):
    arch, _ = TRANSFORMERS["ast"]
    card = fetch("ast", {"family": "transformers", "architecture": arch,
                         "random_weights": True}, tmp_path / "models")
    encoder = load_encoder(card)
    assert encoder.max_seconds == pytest.approx(2.0)
    # each window is pooled over the patches that cover it (1 x 19 patches over 2 s, 1 x 10
    # over the last 1 s: 98 fbank frames), weighted by their number
    windows_combine(encoder, tmp_path, 5.0, [19, 19, 10])


def test_local_transformers_checkpoint_card(tmp_path):
    built = fetch("built", {"family": "transformers", "architecture": TRANSFORMERS["ast"][0],
                            "random_weights": True}, tmp_path / "models")
    card = fetch("local", {"family": "transformers", "checkpoint": built["path"],
                           "revision": "main"}, tmp_path / "models")
    assert card["path"] == built["path"]
    assert card["model_id"] == built["path"]
    assert card["revision"].startswith("sha256:")
    assert "random_weights" not in card


@pytest.mark.parametrize("bundle", sorted(TORCHAUDIO))
def test_torchaudio_bundle_is_exact_under_batching(bundle, tmp_path):
    card = fetch(bundle, {"family": "torchaudio", "bundle": bundle, "architecture": TA_TINY,
                          "random_weights": True}, tmp_path / "models")
    assert card["model_id"] == f"torchaudio.pipelines.{bundle}" and card["revision"]
    encoder = load_encoder(card)
    assert encoder.pads_exactly == TORCHAUDIO[bundle]
    alone, mixed = alone_and_mixed(encoder, tmp_path, f"torchaudio {bundle}")
    assert alone.shape == (2, 32)  # one per transformer layer (no input embedding)
    assert encoder.n_layers == 2
    np.testing.assert_allclose(mixed, alone, rtol=RTOL, atol=ATOL)


def test_torchaudio_pretrained_weights_come_from_the_fetched_file(tmp_path, monkeypatch):
    import torchaudio.pipelines as pipelines
    from torchaudio.models import wavlm_model

    params = dict(pipelines.WAVLM_LARGE._params) | TA_TINY
    bundle = pipelines.Wav2Vec2Bundle("tiny_test.pth", params, _sample_rate=16000,
                                      _normalize_waveform=True, _model_type="WavLM")
    monkeypatch.setattr(pipelines, "TINY_TEST", bundle, raising=False)
    torch.manual_seed(3)
    model = wavlm_model(**params).eval()
    weights = tmp_path / "models" / "torchaudio" / "tiny_test.pth"
    weights.parent.mkdir(parents=True)
    torch.save(model.state_dict(), weights)  # already "downloaded": no network needed
    card = fetch("tiny", {"family": "torchaudio", "bundle": "TINY_TEST"}, tmp_path / "models")
    assert card["path"] == str(weights.resolve()) and card["revision"].startswith("sha256:")
    encoder = load_encoder(card)
    wave = torch.randn(16000)
    layers, frames = encoder(encoder.prepare([wave]), torch.tensor([16000]))
    with torch.inference_mode():
        ref, _ = model.extract_features(torch.nn.functional.layer_norm(wave, wave.shape)[None])
    for got, want in zip(layers, ref, strict=True):
        torch.testing.assert_close(got, want)


@pytest.fixture(scope="module")
def panns_random(tmp_path_factory):
    pytest.importorskip("panns_inference")
    card = fetch("cnn14", {"family": "panns", "random_weights": True, "sample_rate": 32000},
                 tmp_path_factory.mktemp("models"))
    return card, load_encoder(card)


def test_panns_cnn14_is_exact_under_batching(panns_random, tmp_path):
    card, encoder = panns_random
    assert card["model_id"] and card["revision"] and card["sample_rate"] == 32000
    assert not encoder.pads_exactly and encoder.n_layers == 7
    alone, mixed = alone_and_mixed(encoder, tmp_path, "panns Cnn14")
    assert alone.shape == (7, 2048)
    np.testing.assert_allclose(mixed, alone, rtol=RTOL, atol=ATOL)


def test_panns_layers_are_block_averages_and_the_embedding(panns_random):
    _, encoder = panns_random
    wave = 0.3 * torch.randn(2, 16000)
    layers, frames = encoder(encoder.prepare(list(wave)), torch.tensor([16000, 16000]))
    assert frames.tolist() == [1, 1]
    for layer, channels in zip(layers, [64, 128, 256, 512, 1024, 2048, 2048]):
        assert layer.shape == (2, 1, 2048)
        assert not layer[..., channels:].any()  # zero-padded to the store's common dim
    with torch.inference_mode():
        embedding = encoder.model(wave)["embedding"]
    torch.testing.assert_close(layers[-1][:, 0], embedding)
    # DataLoader workers get the encoder without its model (they only run prepare)
    assert "model" not in pickle.loads(pickle.dumps(encoder)).__dict__


def test_panns_checkpoint_file(panns_random, tmp_path):
    _, encoder = panns_random
    path = tmp_path / "Cnn14_mAP=0.431.pth"
    torch.save({"iteration": 0, "model": encoder.model.state_dict()}, path)
    card = fetch("cnn14", {"family": "panns", "checkpoint": str(path), "sample_rate": 16000},
                 tmp_path / "models")
    assert card["path"] == str(path.resolve()) and card["revision"].startswith("sha256:")
    assert card["sample_rate"] == 32000  # from the checkpoint's STFT, not the config default
    loaded = load_encoder(card)
    for a, b in zip(loaded.model.state_dict().values(), encoder.model.state_dict().values()):
        assert torch.equal(a, b)
    path.unlink()
    other = tmp_path / "Cnn10.pth"
    torch.save({"model": {"spectrogram_extractor.stft.conv_real.weight": torch.zeros(1),
                          "fc1.weight": torch.zeros(512, 512)}}, other)
    with pytest.raises(AudioprobeError, match="not a Cnn14 checkpoint"):
        fetch("cnn10", {"family": "panns", "checkpoint": str(other)}, tmp_path / "models")
