"""Family ``logmel``: the weight-free baseline, log-mel frames as a single "layer". Its fetch
writes a card without importing torch (the encoder imports it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from audioprobe import __version__
from audioprobe.features.families.common import BaseEncoder, reflect_pad

if TYPE_CHECKING:
    import torch


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
        import torchaudio.transforms as T

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
        from torch.nn.utils.rnn import pad_sequence

        return {"waves": pad_sequence(waves, batch_first=True)}

    def __call__(self, batch: dict[str, torch.Tensor], lengths: torch.Tensor):
        import torch

        with torch.inference_mode():
            # (batch, mels, frames)
            mel = self.melspec(reflect_pad(batch["waves"], lengths, self.n_fft // 2))
            frames = torch.log(mel + 1e-6).transpose(1, 2)
        return [frames], lengths // self.hop + 1
