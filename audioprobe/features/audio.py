"""Decoding one clip: read (a segment of) a file, mix to mono, check it, resample."""

from __future__ import annotations

import math
import os

import numpy as np
import soundfile as sf
import torch
import torchaudio.transforms as T

from audioprobe.errors import AudioError

MIN_SECONDS = 0.025


def frame_range(info: sf._SoundFileInfo, start: float, end: float) -> tuple[int, int]:
    """First and one-past-last frame of the segment [start, end) seconds (NaN: file bounds)."""
    first = 0 if math.isnan(start) else int(round(start * info.samplerate))
    last = info.frames if math.isnan(end) else min(info.frames, int(round(end * info.samplerate)))
    return first, last


def probe(path: str, start: float, end: float, longest: float) -> tuple[int, int, int]:
    """Return (sample rate, first frame, one-past-last frame) of a clip from the header alone.

    Raises AudioError when the file cannot be opened or the clip is empty, too short or longer
    than ``longest`` seconds.
    """
    if not os.path.isfile(path):
        raise AudioError(f"{'a folder, not a file' if os.path.isdir(path) else 'no such file'}: "
                         f"{path}")
    try:
        info = sf.info(path)
    except Exception as exc:  # soundfile raises several types for unreadable files
        raise AudioError(f"unreadable audio ({exc.__class__.__name__}: {exc})") from None
    first, last = frame_range(info, start, end)
    n = last - first
    if n <= 0:
        raise AudioError("empty clip (no samples in the file or segment)")
    if n < MIN_SECONDS * info.samplerate:
        raise AudioError(f"shorter than {MIN_SECONDS * 1000:.0f} ms ({n} samples)")
    if n > longest * info.samplerate:
        limit = f"{longest / 60:g} minutes" if longest % 60 == 0 else f"{longest:g} s"
        raise AudioError(f"longer than {limit} ({n / info.samplerate:.1f} s; "
                         "extraction.max_clip_seconds)")
    return info.samplerate, first, last


def resampled_length(n: int, orig_sr: int, new_sr: int) -> int:
    """Number of samples torchaudio's resample returns for ``n`` input samples."""
    if orig_sr == new_sr:
        return n
    g = math.gcd(orig_sr, new_sr)
    return -(-(new_sr // g) * n // (orig_sr // g))


def decode(path: str, first: int, last: int) -> tuple[torch.Tensor, int]:
    """Decode frames [first, last) to a mono float32 tensor; return it and its sample rate.
    AudioError if unusable."""
    try:
        data, sr = sf.read(path, start=first, stop=last, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"unreadable audio ({exc.__class__.__name__}: {exc})") from None
    if data.size == 0:
        raise AudioError("empty clip (no samples in the file or segment)")
    if not np.isfinite(data).all():
        raise AudioError("non-finite samples (NaN or infinity)")
    return torch.from_numpy(data.mean(axis=1)), sr


class Resampler:
    """torchaudio's resampling to one rate on one device, with a kernel cached per source rate."""

    def __init__(self, rate: int, device: torch.device | str = "cpu") -> None:
        self.rate, self.device = rate, torch.device(device)
        self.kernels: dict[int, T.Resample] = {}

    def __call__(self, wave: torch.Tensor, rate: int) -> torch.Tensor:
        if rate == self.rate:
            return wave
        if rate not in self.kernels:
            # a copy that does not wait: the loop must not block on the device per new rate
            self.kernels[rate] = T.Resample(rate, self.rate).to(self.device, non_blocking=True)
        return self.kernels[rate](wave)
