"""Family ``logmel``: the weight-free baseline, log-mel frames as a single "layer"."""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

import torch
import torchaudio.transforms as T

from audioprobe import __version__
from audioprobe.features.families.common import BaseEncoder, reflect_pad

baseline = True


class Options(TypedDict, total=False):
    """``models.<name>.options`` of family logmel."""

    sample_rate: int
    n_mels: int


def needs_gpu(spec: dict) -> bool:
    """Log-mel frames are cheap: extraction runs on the CPU."""
    return False


def fetch(name: str, spec: dict, models_dir: Path) -> dict:
    """Nothing to download: the card records the front end's settings."""
    return {"model_id": "logmel", "revision": __version__,
            "sample_rate": spec.get("sample_rate", 16000), "n_mels": spec.get("n_mels", 64)}


def load(card: dict) -> LogMelEncoder:
    """The log-mel front end of the card's settings."""
    return LogMelEncoder(card.get("sample_rate", 16000), card.get("n_mels", 64))


def layer_names(n_layers: int) -> list[str]:
    """The log-mel frames, the only layer."""
    return ["log-mel"]


def batching(card: dict) -> str:
    """Padded batches, each clip reflection-padded at its own ends."""
    return "padded"


class LogMelEncoder(BaseEncoder):
    """Weight-free baseline: log-mel spectrogram frames as a single "layer". Centred frames:
    each clip is reflection-padded at its own ends (``reflect_pad``), so the last frames of a
    clip in a padded batch are those it gets alone."""

    prepares_on_device = True
    device_module = "melspec"

    def __init__(self, sample_rate: int = 16000, n_mels: int = 64) -> None:
        self.sample_rate = sample_rate
        self.hop = sample_rate // 100
        self.min_samples = 2 * self.hop
        self.n_fft = 2 * self.hop * 2
        self.melspec = T.MelSpectrogram(
            sample_rate=sample_rate, n_fft=self.n_fft, hop_length=self.hop, n_mels=n_mels,
            center=False,
        )
        self.n_layers = 1

    def prepare(self, waves: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"waves": torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)}

    @torch.inference_mode()
    def __call__(self, batch: dict[str, torch.Tensor], lengths: torch.Tensor):
        mel = self.melspec(reflect_pad(batch["waves"], lengths, self.n_fft // 2))  # (B, mels, T)
        frames = torch.log(mel + 1e-6).transpose(1, 2)
        return [frames], lengths // self.hop + 1
