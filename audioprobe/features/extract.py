"""Extraction: decode clips in DataLoader workers, resample them there or on the device, run the
encoder in batches on the device, pool every layer on the device in the same pass, and write the
feature store.

Batches are length-sorted and padded to their longest window: every encoder is exact on
padded batches (a clip's features do not depend on what it is batched with), so batches are
full whatever the lengths.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from audioprobe.errors import AudioError
from audioprobe.features import audio
from audioprobe.features.store import finalize

log = logging.getLogger(__name__)

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Item:
    """One window of one clip: what the encoder sees in one batch row."""

    clip: int
    first: int
    last: int
    length: int  # samples at the model's rate (after padding to the minimum)


def plan_items(clips: pd.DataFrame, sample_rate: int, min_samples: int, max_seconds: float,
               max_clip_seconds: float = audio.MAX_CLIP_SECONDS
               ) -> tuple[list[Item], dict[int, str], np.ndarray, np.ndarray]:
    """Split clips into windows from file headers; return items, rejects, durations, padded.
    Clips longer than ``max_clip_seconds`` are rejected."""
    items, rejects = [], {}
    durations = np.zeros(len(clips))
    padded = np.zeros(len(clips), dtype=bool)
    for i, row in enumerate(clips.itertuples()):
        try:
            sr, first, last = audio.probe(row.path, row.start, row.end, max_clip_seconds)
        except AudioError as exc:
            rejects[i] = str(exc)
            continue
        durations[i] = (last - first) / sr
        window = int(max_seconds * sr)
        for lo in range(first, last, window):
            hi = min(last, lo + window)
            n = audio.resampled_length(hi - lo, sr, sample_rate)
            if n < min_samples:
                padded[i] = True
            items.append(Item(i, lo, hi, max(n, min_samples)))
    return items, rejects, durations, padded


def make_batches(items: list[Item], batch_size: int) -> list[list[Item]]:
    """Length-sorted batches of ``batch_size`` windows (the last one may hold fewer)."""
    ordered = sorted(items, key=lambda it: (it.length, it.clip, it.first))
    return [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]


@dataclass
class Decoded:
    """One batch out of a worker: its clips' windows and rejects, and either the encoder's
    inputs (resampled and prepared in the worker) or the decoded waves at their own rates."""

    kept: list[Item]
    rejects: dict[int, str]
    inputs: dict[str, torch.Tensor] | None = None
    lengths: torch.Tensor | None = None
    waves: list[torch.Tensor] = field(default_factory=list)
    rates: list[int] = field(default_factory=list)

    def pin_memory(self) -> "Decoded":
        """Page-locked tensors, for fast non-blocking copies to the GPU (DataLoader calls it)."""
        pin = lambda t: t.pin_memory()  # noqa: E731
        return replace(self, inputs=self.inputs and {k: pin(v) for k, v in self.inputs.items()},
                       waves=[pin(w) for w in self.waves])


def encoder_inputs(encoder, waves: list[torch.Tensor], items: list[Item]
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Pad each wave (at the model's rate) to its window's length and prepare the encoder's
    inputs; return them and the waves' lengths."""
    waves = [F.pad(w, (0, it.length - w.numel())) if w.numel() < it.length else w
             for w, it in zip(waves, items)]
    lengths = torch.tensor([w.numel() for w in waves], dtype=torch.long)
    return encoder.prepare(waves), lengths


class BatchDecoder(Dataset):
    """Decodes one whole batch per index (in a worker); unless resampling is left to the device,
    also resamples it and prepares the encoder's inputs."""

    def __init__(self, batches: list[list[Item]], paths: list[str], encoder,
                 on_device: bool) -> None:
        self.batches, self.paths, self.encoder, self.on_device = batches, paths, encoder, on_device
        self.resample = audio.Resampler(encoder.sample_rate)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> Decoded:
        batch = Decoded(kept=[], rejects={})
        for item in self.batches[index]:
            try:
                wave, rate = audio.decode(self.paths[item.clip], item.first, item.last)
            except AudioError as exc:
                batch.rejects[item.clip] = str(exc)
                continue
            batch.kept.append(item)
            batch.waves.append(wave)
            batch.rates.append(rate)
        if not self.on_device and batch.kept:
            waves = [self.resample(w, r) for w, r in zip(batch.waves, batch.rates)]
            batch.inputs, batch.lengths = encoder_inputs(self.encoder, waves, batch.kept)
            batch.waves, batch.rates = [], []
        return batch


def pool_stats(layers: list[torch.Tensor], frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Masked per-clip sum, sum of squares and max of every layer: each (layers, batch, dim)."""
    stacked = torch.stack(layers).float()  # (L, B, T, D)
    mask = (torch.arange(stacked.shape[2], device=stacked.device)[None, :]
            < frames.to(stacked.device)[:, None])[None, :, :, None]
    masked = stacked * mask
    total = masked.sum(2)
    squares = (masked * stacked).sum(2)
    peak = stacked.masked_fill(~mask, -torch.inf).amax(2)
    return total, squares, peak


def pooled(total: np.ndarray, squares: np.ndarray, peak: np.ndarray, count: np.ndarray,
           pooling: str) -> np.ndarray:
    """Turn accumulated statistics into pooled vectors (layers, clips, dim')."""
    mean = total / count[None, :, None]
    if pooling == "mean":
        return mean
    if pooling == "max":
        return peak
    std = np.sqrt(np.maximum(squares / count[None, :, None] - mean**2, 0.0))
    return np.concatenate([mean, std], axis=-1)


def extract(clips: pd.DataFrame, encoder, out: Path, *, attrs: dict, batch_size: int = 16,
            pooling: str = "mean", num_workers: int = 2, device: str = "auto",
            bad_audio: str = "skip", max_seconds: float = 30.0,
            max_clip_seconds: float = audio.MAX_CLIP_SECONDS,
            precision: str = "fp32", resample: str = "auto") -> pd.DataFrame:
    """Extract pooled features of every layer for ``clips`` into the store ``out``.

    Clips longer than ``max_seconds`` are processed in windows of that length (at most the
    encoder's own ``max_seconds``) and pooled across them; clips longer than
    ``max_clip_seconds`` are rejected. ``precision`` "bf16" or "fp16" runs the encoder under autocast; pooling stays in fp32.
    ``resample`` "workers" resamples (and prepares the encoder's inputs) in the DataLoader
    workers, "device" on the device, "auto" on a GPU when the encoder prepares its inputs with
    torch operations (``prepares_on_device``), otherwise in the workers.

    Returns the rejected clips (clip_id, path, reason); with ``bad_audio="fail"`` the first
    unusable clip raises AudioError instead.
    """
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    encoder.to(dev)
    if precision == "fp32":  # fp32 convolutions on the GPU too, not cuDNN's default TF32
        torch.backends.cudnn.conv.fp32_precision = "ieee"
    on_device = resample == "device" or (resample == "auto" and dev.type == "cuda"
                                         and encoder.prepares_on_device)
    resampler = audio.Resampler(encoder.sample_rate, dev)
    # Models with a fixed input span (Whisper: 30 s, AST: 10.24 s) cap the window length.
    max_seconds = min(max_seconds, getattr(encoder, "max_seconds", math.inf))
    items, rejects, durations, padded = plan_items(
        clips, encoder.sample_rate, encoder.min_samples, max_seconds, max_clip_seconds)
    _check_rejects(rejects, clips, bad_audio)
    batches = make_batches(items, batch_size)
    windows = np.bincount([it.clip for it in items], minlength=len(clips))
    loader = DataLoader(BatchDecoder(batches, clips["path"].tolist(), encoder, on_device),
                        batch_size=None, num_workers=num_workers, pin_memory=dev.type == "cuda",
                        prefetch_factor=4 if num_workers else None)
    partial = out.with_name(out.name + ".partial")
    n = len(clips)
    acc = None
    count = np.zeros(n)
    seen = np.zeros(n, dtype=int)
    started, audio_seconds = time.perf_counter(), 0.0
    bar = tqdm(total=len(items), unit="win", desc=f"extract {out.stem}", mininterval=2)
    with h5py.File(partial, "w") as f:
        for batch in loader:
            for clip, reason in batch.rejects.items():
                rejects.setdefault(clip, reason)
            _check_rejects(batch.rejects, clips, bad_audio)
            kept = batch.kept
            bar.update(len(kept) + len(batch.rejects))
            if not kept:
                continue
            if on_device:
                waves = [resampler(w.to(dev, non_blocking=True), r)
                         for w, r in zip(batch.waves, batch.rates)]
                inputs, lengths = encoder_inputs(encoder, waves, kept)
            else:
                inputs, lengths = batch.inputs, batch.lengths
            inputs = {k: v.to(dev, non_blocking=True) for k, v in inputs.items()}
            with torch.autocast(dev.type, dtype=AUTOCAST.get(precision),
                                enabled=precision in AUTOCAST):
                layers, frames = encoder(inputs, lengths.to(dev))
            stats = [s.double().cpu().numpy() for s in pool_stats(layers, frames)]
            if acc is None:
                n_layers, _, dim = stats[0].shape
                acc = [np.zeros((n_layers, n, dim)), np.zeros((n_layers, n, dim)),
                       np.full((n_layers, n, dim), -np.inf)]
                out_dim = dim * (2 if pooling == "mean+std" else 1)
                f.create_dataset("features", (n_layers, n, out_dim), "float32",
                                 chunks=(1, min(n, 1024), out_dim))
            idx = np.array([it.clip for it in kept])
            np.add.at(acc[0], (slice(None), idx), stats[0])
            np.add.at(acc[1], (slice(None), idx), stats[1])
            np.maximum.at(acc[2], (slice(None), idx), stats[2])
            np.add.at(count, idx, frames.cpu().numpy())
            np.add.at(seen, idx, 1)
            audio_seconds += float(lengths.sum()) / encoder.sample_rate
            elapsed = time.perf_counter() - started
            bar.set_postfix(clips_s=f"{bar.n / elapsed:.1f}", audio_s_s=f"{audio_seconds / elapsed:.0f}")
        bar.close()
        keep = (seen == windows) & (windows > 0)
        keep[list(rejects)] = False
        if acc is not None and keep.any():
            sel = np.flatnonzero(keep)
            f["features"][:, sel] = pooled(acc[0][:, sel], acc[1][:, sel], acc[2][:, sel],
                                           count[sel], pooling).astype(np.float32)
    elapsed = time.perf_counter() - started
    log.info("extracted %d clips (%.0f s of audio) in %.1f s: %.1f clips/s, %.0f audio-s/s; "
             "%d rejected", int(keep.sum()), audio_seconds, elapsed, keep.sum() / elapsed,
             audio_seconds / elapsed, len(rejects))
    meta = clips.assign(duration=durations, padded=padded)
    finalize(partial, out, keep, meta, attrs | {"pooling": pooling, "n_layers": encoder.n_layers,
                                                "sample_rate": encoder.sample_rate,
                                                "precision": precision,
                                                "max_seconds": max_seconds,
                                                "max_clip_seconds": max_clip_seconds})
    return pd.DataFrame(
        [{"clip_id": clips["clip_id"].iat[i], "path": clips["path"].iat[i], "reason": r}
         for i, r in sorted(rejects.items())],
        columns=["clip_id", "path", "reason"],
    )


def _check_rejects(rejects: dict[int, str], clips: pd.DataFrame, bad_audio: str) -> None:
    if rejects and bad_audio == "fail":
        i, reason = next(iter(rejects.items()))
        raise AudioError(f"clip {clips['clip_id'].iat[i]} ({clips['path'].iat[i]}): {reason}")
