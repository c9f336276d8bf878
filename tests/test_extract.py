"""Extraction is exact under batching, and bad audio is skipped with a reason or fails clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from audioprobe import manifest
from audioprobe.errors import AudioError
from audioprobe.features import audio
from audioprobe.features.families import fetch, load_encoder
from audioprobe.features.families.logmel import LogMelEncoder
from audioprobe.features.extract import (Item, PoolingAccumulator, extract, make_batches,
                                         precision_mode, window_stats)
from audioprobe.features.store import open_store
from audioprobe.settings import ExtractionSettings

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "conv_dim": [16] * 7, "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 2}
FAMILIES = {
    # group-norm feature encoder (base models)
    "hubert": {"model_type": "hubert", **TINY},
    # layer-norm feature encoder (large models)
    "wav2vec2-masked": {"model_type": "wav2vec2", "feat_extract_norm": "layer",
                        "do_stable_layer_norm": True, **TINY},
}


def write(path: Path, seconds: float, sr: int = 16000, seed: int = 0, channels: int = 1,
          subtype: str = "PCM_16") -> Path:
    rng = np.random.default_rng(seed)
    data = 0.3 * rng.standard_normal((int(seconds * sr), channels))
    sf.write(path, data, sr, subtype=subtype, format="WAV")
    return path


def clips_frame(paths: list[Path]) -> pd.DataFrame:
    return manifest.make([{"clip_id": p.stem, "path": str(p), "label": "x", "fold": 1}
                          for p in paths])


def run(clips, encoder, out: Path, chunk_clips: int = 256, **kwargs
        ) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    rejected = extract(clips, encoder, out, attrs={}, chunk_clips=chunk_clips,
                       settings=ExtractionSettings.from_config(num_workers=0, **kwargs))
    store = open_store(out)
    return np.stack([store.layer(i) for i in range(store.n_layers)]), store.meta, rejected


@pytest.mark.parametrize("family", ["logmel", *sorted(FAMILIES)])
def test_resampling_on_the_device_equals_resampling_in_workers(family, tmp_path):
    """Waves sent to the device at their own rates (through a worker process) and resampled
    there give the features of waves resampled in the workers."""
    spec = ({"family": "logmel"} if family == "logmel" else
            {"family": "transformers", "architecture": FAMILIES[family], "random_weights": True})
    encoder = load_encoder(fetch(family, spec, tmp_path / "models"))
    assert encoder.prepares_on_device
    clips = clips_frame([write(tmp_path / f"c{i}.wav", s, sr=sr, seed=i) for i, (s, sr) in
                         enumerate([(1.3, 44100), (0.7, 8000), (1.3, 22050), (1.0, 16000)])])
    workers, _, _ = run(clips, encoder, tmp_path / "workers.h5", resample="workers")
    rejected = extract(clips, encoder, tmp_path / "device.h5", attrs={},
                       settings=ExtractionSettings.from_config(num_workers=1, resample="device"))
    store = open_store(tmp_path / "device.h5")
    device = np.stack([store.layer(i) for i in range(store.n_layers)])
    assert rejected.empty and device.shape == workers.shape == (encoder.n_layers, 4, device.shape[2])
    np.testing.assert_allclose(device, workers, rtol=1e-5, atol=1e-6)
    assert np.abs(workers).max() > 0


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_clip_alone_equals_clip_in_mixed_length_batch(family, tmp_path):
    card = fetch(family, {"family": "transformers", "architecture": FAMILIES[family],
                          "random_weights": True}, tmp_path / "models")
    encoder = load_encoder(card)
    target = write(tmp_path / "target.wav", 1.3, seed=1)
    others = [write(tmp_path / f"other{i}.wav", s, sr=sr, seed=10 + i)
              for i, (s, sr) in enumerate([(1.3, 16000), (0.7, 16000), (2.1, 22050), (1.0, 8000)])]
    alone, _, _ = run(clips_frame([target]), encoder, tmp_path / "alone.h5", batch_size=8)
    mixed, meta, _ = run(clips_frame([*others, target]), encoder, tmp_path / "mixed.h5",
                         batch_size=8)
    row = meta.index[meta["clip_id"] == "target"][0]
    assert alone.shape[0] == TINY["num_hidden_layers"] + 1
    np.testing.assert_allclose(mixed[:, row], alone[:, 0], rtol=1e-4, atol=1e-5)


def test_batches_are_full_whatever_the_lengths():
    items = [Item(clip, 0, 1, length) for clip, length in
             enumerate([16000, 4800, 16000, 192000, 33600, 4800, 64000])]
    batches = make_batches(items, 3)
    assert [len(b) for b in batches] == [3, 3, 1]
    assert [it.length for b in batches for it in b] == sorted(it.length for it in items)


def test_batch_seconds_caps_batches_of_long_windows():
    items = [Item(clip, 0, 1, length) for clip, length in
             enumerate([16000, 4800, 16000, 192000, 33600, 4800, 64000, 200000])]
    # rows x longest window within 100,000 samples; a longer window makes a batch alone
    batches = make_batches(items, 3, max_samples=100_000)
    assert [[it.length for it in b] for b in batches] == [
        [4800, 4800, 16000], [16000, 33600], [64000], [192000], [200000]]
    assert all(len(b) * b[-1].length <= 100_000 for b in batches if len(b) > 1)


def test_logmel_batching_is_exact(tmp_path):
    paths = [write(tmp_path / f"c{i}.wav", s, seed=i) for i, s in enumerate([1.0, 1.0, 0.5])]
    together, _, _ = run(clips_frame(paths), LogMelEncoder(), tmp_path / "all.h5",
                         pooling="mean+std", batch_size=4)
    alone, _, _ = run(clips_frame(paths[:1]), LogMelEncoder(), tmp_path / "one.h5",
                      pooling="mean+std")
    np.testing.assert_allclose(together[:, 0], alone[:, 0], rtol=1e-5, atol=1e-5)


@pytest.fixture()
def odd_audio(tmp_path) -> tuple[pd.DataFrame, dict[str, str | None]]:
    """Clips covering the odd cases real collections have; value: expected reject reason."""
    d = tmp_path / "audio"
    d.mkdir()
    (d / "unreadable.wav").write_text("this is not audio")
    sf.write(d / "empty.wav", np.zeros((0, 1)), 16000)
    sf.write(d / "nan.wav", np.full((16000, 1), np.nan, dtype=np.float32), 16000,
             subtype="FLOAT")
    write(d / "stereo.wav", 1.0, channels=2)
    write(d / "pcm8.wav", 1.0, subtype="PCM_U8")
    write(d / "pcm24.wav", 1.0, subtype="PCM_24")
    write(d / "float32.wav", 1.0, subtype="FLOAT")
    write(d / "rate8k.wav", 1.0, sr=8000)
    write(d / "rate96k.wav", 1.0, sr=96000)
    write(d / "tiny.wav", 0.01)
    write(d / "long.wav", 601, sr=8000, subtype="PCM_U8")
    write(d / "flac_named.mp3", 1.0)  # WAV content behind a wrong extension
    expected = {
        "unreadable": "unreadable audio", "empty": "empty clip", "nan": "non-finite samples",
        "tiny": "shorter than 25 ms", "long": "longer than 10 minutes",
        "stereo": None, "pcm8": None, "pcm24": None, "float32": None, "rate8k": None,
        "rate96k": None, "flac_named": None,
    }
    return clips_frame(sorted(d.iterdir())), expected


def test_bad_audio_is_skipped_with_a_reason(odd_audio, tmp_path):
    clips, expected = odd_audio
    features, meta, rejected = run(clips, LogMelEncoder(), tmp_path / "s.h5")
    reasons = dict(zip(rejected["clip_id"], rejected["reason"]))
    assert len(meta) + len(rejected) == len(clips)
    assert set(meta["clip_id"]) == {c for c, r in expected.items() if r is None}
    for clip, reason in expected.items():
        if reason is not None:
            assert reasons[clip].startswith(reason), (clip, reasons[clip])
    assert np.isfinite(features).all()


def test_bad_audio_fails_with_the_clip_named(odd_audio, tmp_path):
    clips, _ = odd_audio
    with pytest.raises(AudioError, match=r"clip \w+ \(.*\): "):
        extract(clips, LogMelEncoder(), tmp_path / "f.h5", attrs={},
                settings=ExtractionSettings.from_config(num_workers=0, bad_audio="fail"))
    assert not (tmp_path / "f.h5").exists()


def test_long_clips_are_windowed_and_short_clips_padded(tmp_path):
    paths = [write(tmp_path / "long.wav", 70.0), write(tmp_path / "short.wav", 0.03)]
    encoder = LogMelEncoder()
    encoder.min_samples = 800  # as for a model whose receptive field is 50 ms
    features, meta, rejected = run(clips_frame(paths), encoder, tmp_path / "w.h5",
                                   max_seconds=30)
    assert rejected.empty
    assert meta.set_index("clip_id").loc["long", "duration"] == pytest.approx(70.0)
    assert bool(meta.set_index("clip_id").loc["short", "padded"])
    assert not bool(meta.set_index("clip_id").loc["long", "padded"])
    assert np.isfinite(features).all()


def windows_through_the_model(encoder, wave: torch.Tensor, window: int) -> torch.Tensor:
    """Each ``window`` samples of ``wave`` through the encoder alone; every layer's frames of
    all windows, in order: (layers, frames, dim), float64."""
    parts = []
    for lo in range(0, wave.numel(), window):
        piece = wave[lo:lo + window]
        layers, frames = encoder(encoder.prepare([piece]), torch.tensor([piece.numel()]))
        parts.append(torch.stack([layer[0, :int(frames[0])] for layer in layers]).double())
    return torch.cat(parts, dim=1)


@pytest.mark.parametrize("family, pooling", [("logmel", "mean"), ("logmel", "mean+std"),
                                             ("logmel", "max"), ("hubert", "mean+std")])
def test_windowed_clip_pools_every_frame_of_every_window(family, pooling, tmp_path):
    """A clip longer than max_seconds is cut into windows (1 s, 1 s, 0.6 s here) that the model
    sees one at a time; the stored vector pools all their frames as one sequence."""
    encoder = (LogMelEncoder() if family == "logmel" else load_encoder(fetch(
        family, {"family": "transformers", "architecture": FAMILIES[family],
                 "random_weights": True}, tmp_path / "models")))
    path = write(tmp_path / "long.wav", 2.6, seed=3)
    features, meta, rejected = run(clips_frame([path]), encoder, tmp_path / "w.h5",
                                   max_seconds=1.0, pooling=pooling)
    assert rejected.empty and meta["duration"].item() == pytest.approx(2.6)
    wave = torch.from_numpy(sf.read(path, dtype="float32")[0])
    frames = windows_through_the_model(encoder, wave, window=16000)
    by_hand = {"mean": frames.mean(1), "max": frames.amax(1),
               "mean+std": torch.cat([frames.mean(1), frames.std(1, correction=0)], -1)}[pooling]
    assert features.shape == (encoder.n_layers, 1, by_hand.shape[-1])
    np.testing.assert_allclose(features[:, 0], by_hand.numpy(), rtol=1e-4, atol=1e-4)
    # pooling the windows' own pooled vectors instead would give other values
    if pooling == "mean":
        per_window = [windows_through_the_model(encoder, wave[lo:lo + 16000], 16000).mean(1)
                      for lo in (0, 16000, 32000)]
        assert not np.allclose(features[:, 0], torch.stack(per_window).mean(0).numpy(),
                               rtol=1e-4, atol=1e-4)


def direct_pooling(path: Path, encoder, max_seconds: float, pooling: str) -> np.ndarray:
    """Pooled features of one clip computed directly: each window alone through the encoder,
    the frames of all windows pooled together in float64."""
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    wave = torch.from_numpy(data.mean(axis=1))
    resample = audio.Resampler(encoder.sample_rate)
    window = int(max_seconds * sr)
    frames = []
    for lo in range(0, len(wave), window):
        part = resample(wave[lo:lo + window], sr)
        part = torch.nn.functional.pad(part, (0, max(0, encoder.min_samples - len(part))))
        layers, n = encoder(encoder.prepare([part]), torch.tensor([len(part)]))
        frames.append(torch.stack(layers)[:, 0, : int(n[0])].double().numpy())
    x = np.concatenate(frames, axis=1)  # (layers, frames, dim)
    if pooling == "max":
        return x.max(1)
    if pooling == "mean":
        return x.mean(1)
    return np.concatenate([x.mean(1), x.std(1)], axis=-1)


class OffsetLogMel(LogMelEncoder):
    """Log-mel frames plus 1000: means near 1000, spread of a few units."""

    def __call__(self, batch, lengths):
        layers, frames = super().__call__(batch, lengths)
        return [layer + 1000.0 for layer in layers], frames


@pytest.mark.parametrize("pooling", ["mean", "mean+std", "max"])
def test_features_equal_a_direct_computation(pooling, tmp_path):
    """Windowed clips whose windows fall into different batches, several chunks of finished
    clips, and a rejected clip: every kept clip's features equal the direct computation."""
    paths = [write(tmp_path / f"c{i}.wav", s, sr=sr, seed=i) for i, (s, sr) in
             enumerate([(1.3, 16000), (3.5, 22050), (0.7, 8000), (2.2, 44100), (1.0, 16000),
                        (0.2, 16000)])]
    (tmp_path / "bad.wav").write_text("not audio")
    encoder = LogMelEncoder()
    features, meta, rejected = run(clips_frame([*paths, tmp_path / "bad.wav"]), encoder,
                                   tmp_path / "s.h5", pooling=pooling, batch_size=3,
                                   max_seconds=1.0, chunk_clips=2)
    assert list(rejected["clip_id"]) == ["bad"]
    assert list(meta["clip_id"]) == [p.stem for p in paths]
    for i, path in enumerate(paths):
        expected = direct_pooling(path, encoder, 1.0, pooling)
        np.testing.assert_allclose(features[:, i], expected, rtol=2e-6, atol=2e-6)


def test_std_is_exact_when_the_mean_dwarfs_the_spread(tmp_path):
    """Sums of squares about each window's mean, in float64: a float32 sum of squares would
    lose the std of features with a large mean to cancellation."""
    path = write(tmp_path / "c.wav", 2.5, seed=3)
    encoder = OffsetLogMel()
    features, _, _ = run(clips_frame([path]), encoder, tmp_path / "s.h5", pooling="mean+std",
                         max_seconds=1.0)
    expected = direct_pooling(path, encoder, 1.0, "mean+std")
    np.testing.assert_allclose(features[:, 0], expected, rtol=2e-6, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the loop's host-device "
                    "synchronisation is only observable on a GPU")
@pytest.mark.parametrize("resample", ["workers", "device"])
def test_loop_does_not_synchronise_per_batch_on_cuda(resample, tmp_path):
    """Under sync debug mode "error", any blocking copy or implicit synchronisation of the loop
    raises; the loop waits for the device only per chunk of finished clips (an event)."""
    paths = [write(tmp_path / f"c{i}.wav", s, sr=sr, seed=i) for i, (s, sr) in
             enumerate([(1.3, 16000), (3.5, 22050), (0.7, 8000), (2.2, 44100), (1.0, 16000)])]
    clips = clips_frame(paths)
    expected, _, _ = run(clips, LogMelEncoder(), tmp_path / "cpu.h5", device="cpu",
                         pooling="mean+std", max_seconds=1.0)
    encoder = LogMelEncoder().to(torch.device("cuda"))  # moving the model blocks, once
    torch.cuda.set_sync_debug_mode("error")
    try:
        extract(clips, encoder, tmp_path / "gpu.h5", attrs={}, chunk_clips=2,
                settings=ExtractionSettings.from_config(
                    num_workers=1, device="cuda", pooling="mean+std", max_seconds=1.0,
                    batch_size=2, resample=resample))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    store = open_store(tmp_path / "gpu.h5")
    np.testing.assert_allclose(store.layer(0), expected[0], rtol=1e-4, atol=1e-4)


def test_precision_is_recorded_and_global_settings_restored(tmp_path):
    before = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    for precision, fp32 in [("fp32", "ieee"), ("tf32", "tf32")]:
        with precision_mode(precision, torch.device("cpu")):
            assert torch.backends.cuda.matmul.fp32_precision == fp32
            assert torch.backends.cudnn.conv.fp32_precision == fp32
    clips = clips_frame([write(tmp_path / "c.wav", 1.0)])
    ieee, _, _ = run(clips, LogMelEncoder(), tmp_path / "fp32.h5")
    tf32, _, _ = run(clips, LogMelEncoder(), tmp_path / "tf32.h5", precision="tf32")
    assert open_store(tmp_path / "fp32.h5").attrs["precision"] == "fp32"
    # a CPU has no TF32: it computes, and records, IEEE fp32
    assert open_store(tmp_path / "tf32.h5").attrs["precision"] == "fp32"
    np.testing.assert_array_equal(tf32, ieee)
    after = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    assert after == before


def test_accumulator_memory_follows_the_clips_in_flight():
    """Slots of released clips are reused: 1,000 clips through batches of 8, released every 16
    finished clips, never need more than the first 64 slots."""
    accumulator = PoolingAccumulator("mean+std", torch.device("cpu"))
    rng = np.random.default_rng(0)
    finished = []
    for first in range(0, 1000, 8):
        clips = list(range(first, first + 8))
        layers = [torch.from_numpy(rng.standard_normal((8, 5, 3)).astype(np.float32))]
        frames = torch.full((8,), 5)
        accumulator.add(clips, window_stats(layers, frames, "mean+std"), frames, set())
        finished += clips
        if len(finished) >= 16:
            pooled = accumulator.release(finished)
            expected = torch.cat([layers[0].mean(1), layers[0].std(1, correction=0)], -1)
            torch.testing.assert_close(pooled[0, -8:], expected, rtol=1e-5, atol=1e-6)
            finished = []
    assert accumulator.count.numel() == 64
