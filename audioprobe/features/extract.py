"""Extraction: decode clips in DataLoader workers, resample them there (or on the device), run
the encoder in batches on the device, sum every layer's pooling statistics per clip on the device
in the same pass, and write finished clips to the feature store in chunks: the loop waits for the
device once per chunk, and its memory follows the clips in flight, not the shard.

Batches are length-sorted and padded to their longest window: every encoder is exact on
padded batches (a clip's features do not depend on what it is batched with), so batches are
full whatever the lengths, up to ``batch_size`` windows and ``batch_seconds`` of padded audio.
"""

from __future__ import annotations

import ctypes
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from audioprobe.errors import AudioError, AudioprobeError
from audioprobe.features import audio
from audioprobe.features.store import finalize, removed_on_failure
from audioprobe.settings import ExtractionSettings

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
               max_clip_seconds: float) -> tuple[list[Item], dict[int, str], np.ndarray, np.ndarray]:
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


def make_batches(items: list[Item], batch_size: int, max_samples: float = math.inf
                 ) -> list[list[Item]]:
    """Length-sorted batches of at most ``batch_size`` windows whose rows times longest window
    stay within ``max_samples`` (a window longer than that alone makes a batch)."""
    batches: list[list[Item]] = []
    batch: list[Item] = []
    for item in sorted(items, key=lambda it: (it.length, it.clip, it.first)):
        if batch and (len(batch) == batch_size or (len(batch) + 1) * item.length > max_samples):
            batches.append(batch)
            batch = []
        batch.append(item)
    return batches + [batch] if batch else batches


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
                       lengths=None if self.lengths is None else pin(self.lengths),
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


CPU_BATCH_SECONDS = 60.0  # batch_seconds: auto on a CPU

# Statistics each pooling needs, per clip and layer (``window_stats``, ``PoolingAccumulator``).
POOLING_STATS = {"mean": ("total",), "mean+std": ("total", "squares"), "max": ("peak",)}


@contextmanager
def precision_mode(precision: str, device: torch.device) -> Iterator[None]:
    """Arithmetic of the encoder for the whole loop, entered once (leaving autocast drops its
    cache of weights cast to half precision).

    fp32: IEEE fp32 matmuls and convolutions on a GPU too (cuDNN defaults to TF32 convolutions);
    tf32: TF32 tensor-core matmuls and convolutions on a GPU (a CPU computes IEEE fp32);
    bf16/fp16: autocast. The process-wide settings are restored on exit.
    """
    fp32 = "tf32" if precision == "tf32" else "ieee"
    saved = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    torch.backends.cuda.matmul.fp32_precision = fp32
    torch.backends.cudnn.conv.fp32_precision = fp32
    try:
        with torch.autocast(device.type, dtype=AUTOCAST.get(precision),
                            enabled=precision in AUTOCAST):
            yield
    finally:
        torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = saved


def full_precision(device: torch.device) -> torch.autocast:
    """Autocast off inside ``precision_mode``: resampling and pooling always run in fp32."""
    return torch.autocast(device.type, enabled=False)


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def fixed_mmap_threshold(nbytes: int = 1 << 20) -> None:
    """Serve allocations of ``nbytes`` or more with mmap, given back to the system when freed
    (glibc; elsewhere nothing). By default glibc raises that threshold to the largest block freed
    so far, so the tensors a CPU extraction frees after every batch land in the heap and
    fragment it: peak RSS then grows with the number of clips (bench/extract_memory.py's
    stand-in: 1,395 MB at 10,000 clips against 788 MB with the threshold fixed)."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, nbytes)


def to_device(values: list[int], device: torch.device) -> torch.Tensor:
    """A list of ints as a long tensor on ``device``, copied from pinned memory without blocking."""
    tensor = torch.tensor(values, dtype=torch.long)
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def window_stats(layers: list[torch.Tensor], frames: torch.Tensor,
                 pooling: str) -> dict[str, torch.Tensor]:
    """Statistics of each batch row's valid frames for every layer, (layers, batch, dim) each.

    total: sum; squares: sum of squares about the row's own mean plus total**2 / frames; peak:
    max. Only what ``pooling`` needs (POOLING_STATS). For mean+std both are float64, from
    deviations about the row's mean summed in float32: summed over a clip's windows,
    squares / n - mean**2 is then the variance, without the cancellation a float32 sum of
    squares (or of totals across windows) suffers when a feature's mean is large against its
    spread (tests/test_extract.py measures it). Mean pooling sums in float32.
    """
    stacked = torch.stack(layers).float()  # (L, B, T, D)
    valid = (torch.arange(stacked.shape[2], device=stacked.device)[None, :]
             < frames.to(stacked.device)[:, None])[None, :, :, None]
    if pooling == "max":
        return {"peak": stacked.masked_fill(~valid, -torch.inf).amax(2)}
    total = (stacked * valid).sum(2)
    if pooling == "mean":
        return {"total": total}
    n = frames.to(stacked.device).clamp(min=1)[None, :, None]
    mean = total / n
    centred = (stacked - mean[:, :, None]) * valid
    residual = centred.sum(2).double()  # what float32 rounding left out of the mean
    total = mean.double() * n + residual
    squares = centred.square().sum(2).double() - residual.square() / n + total.square() / n
    return {"total": total, "squares": squares}


class PoolingAccumulator:
    """Pooling statistics of the clips in flight, on the device, one slot per clip.

    A clip's windows may fall into different batches (long clips are windowed; batches are
    length-sorted): ``add`` sums each batch's ``window_stats`` into the clips' slots
    (``index_add_``; ``scatter_reduce_`` amax for max pooling), ``release`` turns the slots of
    finished clips into pooled vectors and frees them, so memory follows the clips in flight,
    not the shard. Slot 0 absorbs the windows of clips already rejected.
    """

    def __init__(self, pooling: str, device: torch.device) -> None:
        self.pooling, self.device = pooling, device
        self.stats: dict[str, torch.Tensor] = {}
        self.count = torch.zeros(0, dtype=torch.float64, device=device)
        self.slot: dict[int, int] = {}
        self.free: list[int] = []

    def _grow(self, like: dict[str, torch.Tensor]) -> None:
        """Double the slots (one at first: the discard slot)."""
        old = self.count.numel()
        more = max(old, 64)
        for name, value in like.items():
            blank = torch.full((value.shape[0], more, value.shape[2]),
                               -torch.inf if name == "peak" else 0.0,
                               dtype=value.dtype, device=self.device)
            self.stats[name] = torch.cat([self.stats[name], blank], 1) if old else blank
        self.count = torch.cat([self.count, self.count.new_zeros(more)])
        self.free.extend(range(old + more - 1, max(old, 1) - 1, -1))

    def _slots(self, clips: list[int], discard: set[int],
               like: dict[str, torch.Tensor]) -> list[int]:
        slots = []
        for clip in clips:
            if clip in discard:
                slots.append(0)
                continue
            if clip not in self.slot:
                if not self.free:
                    self._grow(like)
                self.slot[clip] = self.free.pop()
            slots.append(self.slot[clip])
        return slots

    def add(self, clips: list[int], stats: dict[str, torch.Tensor], frames: torch.Tensor,
            discard: set[int]) -> None:
        """Add the statistics of one batch's rows (row i belongs to ``clips[i]``)."""
        if not self.stats:
            self._grow(stats)
        index = to_device(self._slots(clips, discard, stats), self.device)
        for name, value in stats.items():
            if name == "peak":
                self.stats[name].scatter_reduce_(1, index[None, :, None].expand_as(value), value,
                                                 "amax")
            else:
                self.stats[name].index_add_(1, index, value)
        self.count.index_add_(0, index, frames.to(self.count))

    def _reset(self, slots: list[int]) -> None:
        index = to_device(slots, self.device)
        for name, value in self.stats.items():
            value.index_fill_(1, index, -torch.inf if name == "peak" else 0.0)
        self.count.index_fill_(0, index, 0.0)
        self.free.extend(slots)

    def drop(self, clip: int) -> None:
        """Forget a clip's statistics (it was rejected after some of its windows were added)."""
        if clip in self.slot:
            self._reset([self.slot.pop(clip)])

    def release(self, clips: list[int]) -> torch.Tensor:
        """Pooled vectors (layers, len(clips), dim') of finished clips, float32 on the device;
        their slots are freed."""
        slots = [self.slot.pop(clip) for clip in clips]
        index = to_device(slots, self.device)
        n = self.count[index][None, :, None]
        if self.pooling == "max":
            out = self.stats["peak"][:, index]
        else:
            mean = self.stats["total"][:, index] / n
            out = mean
            if self.pooling == "mean+std":
                var = self.stats["squares"][:, index] / n - mean.square()
                out = torch.cat([mean, var.clamp(min=0).sqrt()], -1)
        out = out.float()
        self._reset(slots)
        return out


class ChunkWriter:
    """Writes the pooled vectors of finished clips into the partial store, a chunk at a time.

    A chunk's copy to the host starts without blocking when it is handed over and is waited for
    (the loop's one synchronisation with the device) when the next chunk comes or at the end,
    so the device keeps working meanwhile. The store's ``features`` has one HDF5 chunk per clip,
    so clips finishing out of order are each written once.
    """

    def __init__(self, f: h5py.File, n_clips: int) -> None:
        self.f, self.n_clips = f, n_clips
        self.written = np.zeros(n_clips, dtype=bool)
        self.pending: tuple[list[int], torch.Tensor, torch.cuda.Event | None] | None = None

    def put(self, clips: list[int], pooled: torch.Tensor) -> None:
        if "features" not in self.f:
            layers, _, dim = pooled.shape
            self.f.create_dataset("features", (layers, self.n_clips, dim), "float32",
                                  chunks=(layers, 1, dim))
        cuda = pooled.device.type == "cuda"
        host = torch.empty(pooled.shape, dtype=torch.float32, pin_memory=cuda)
        host.copy_(pooled, non_blocking=cuda)
        event = None
        if cuda:
            event = torch.cuda.Event()
            event.record()
        self.flush()
        self.pending = (clips, host, event)

    def flush(self) -> None:
        """Write the chunk whose copy is under way, once it has arrived."""
        if self.pending is None:
            return
        clips, host, event = self.pending
        if event is not None:
            event.synchronize()
        order = np.argsort(clips)
        rows = np.asarray(clips)[order]
        self.f["features"][:, rows] = host.numpy()[:, order]
        self.written[rows] = True
        self.pending = None


def extract(clips: pd.DataFrame, encoder, out: Path, *, attrs: dict,
            settings: ExtractionSettings, chunk_clips: int = 256) -> pd.DataFrame:
    """Extract pooled features of every layer for ``clips`` into the store ``out``.

    Clips longer than ``settings.max_seconds`` are processed in windows of that length (at most
    the encoder's own ``max_seconds``) and pooled across them; clips longer than
    ``max_clip_seconds`` are rejected. ``precision`` (``precision_mode``): "fp32" (IEEE),
    "tf32" (GPU tensor cores), "bf16" or "fp16" (autocast); resampling and pooling always run in
    fp32. ``resample`` "workers" (or "auto") resamples and prepares the encoder's inputs in the
    DataLoader workers; "device" does both on the device, for models whose preparation is made
    of torch operations (``prepares_on_device``). ``num_workers`` is a number here ("auto" is
    resolved by the job). A batch holds at most ``batch_size`` windows and ``batch_seconds`` of
    padded audio (``effective_settings``). Finished clips go to the store in chunks of
    ``chunk_clips``.

    Returns the rejected clips (clip_id, path, reason); with ``bad_audio="fail"`` the first
    unusable clip raises AudioError instead.
    """
    dev = resolve_device(settings.device)
    settings = effective_settings(settings, encoder, dev)
    log.info("on %s, %s: batches of up to %d windows and %g s of padded audio; %d DataLoader "
             "workers, %d torch threads", dev, settings.precision, settings.batch_size,
             settings.batch_seconds, settings.num_workers, torch.get_num_threads())
    encoder.to(dev)
    fixed_mmap_threshold()
    items, rejects, durations, padded = plan_items(
        clips, encoder.sample_rate, encoder.min_samples, settings.max_seconds,
        settings.max_clip_seconds)
    _check_rejects(rejects, clips, settings.bad_audio)
    partial = out.with_name(out.name + ".partial")
    with removed_on_failure(partial), h5py.File(partial, "w") as f, \
            precision_mode(settings.precision, dev):
        run = ExtractionRun(encoder, dev, settings, ChunkWriter(f, len(clips)), rejects, clips,
                            np.bincount([it.clip for it in items], minlength=len(clips)),
                            chunk_clips)
        run.loop(loader(clips, encoder, items, settings, dev), len(items), out.stem)
    keep = run.writer.written
    keep[list(rejects)] = False
    run.log_speed(int(keep.sum()))
    meta = clips.assign(duration=durations, padded=padded)
    finalize(partial, out, keep, meta, attrs | {
        "pooling": settings.pooling, "n_layers": encoder.n_layers,
        "sample_rate": encoder.sample_rate, "precision": settings.precision,
        "max_seconds": settings.max_seconds, "max_clip_seconds": settings.max_clip_seconds})
    return rejected_table(clips, rejects)


def resolve_device(device: str) -> torch.device:
    """The torch device of a ``device`` setting (auto: a GPU when there is one)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise AudioprobeError(f"extraction.device is {device}, but this job sees no GPU (torch "
                              "finds no CUDA device); use auto or cpu, or run it on a GPU node")
    return torch.device(device)


def effective_settings(settings: ExtractionSettings, encoder, dev: torch.device
                       ) -> ExtractionSettings:
    """The settings as this encoder on this device runs them: tf32 is IEEE fp32 off a GPU,
    models with a fixed input span (Whisper: 30 s, AST: 10.24 s) cap the window length, and
    batch_seconds auto is a number (CPU_BATCH_SECONDS on a CPU, no limit on a GPU)."""
    precision = settings.precision
    if precision == "tf32" and dev.type != "cuda":
        log.info("precision tf32 on %s: computed in IEEE fp32", dev)
        precision = "fp32"
    max_seconds = min(settings.max_seconds, getattr(encoder, "max_seconds", math.inf))
    batch_seconds = settings.batch_seconds
    if batch_seconds == "auto":
        batch_seconds = math.inf if dev.type == "cuda" else CPU_BATCH_SECONDS
    return replace(settings, precision=precision, max_seconds=max_seconds,
                   batch_seconds=batch_seconds)


def loader(clips: pd.DataFrame, encoder, items: list[Item], settings: ExtractionSettings,
           dev: torch.device) -> DataLoader:
    """Length-sorted batches of windows, decoded (and unless resampling is left to the device,
    resampled and prepared) in ``settings.num_workers`` worker processes."""
    on_device = settings.resample == "device" and encoder.prepares_on_device
    batches = make_batches(items, settings.batch_size,
                           settings.batch_seconds * encoder.sample_rate)
    workers = settings.num_workers
    return DataLoader(BatchDecoder(batches, clips["path"].tolist(), encoder, on_device),
                      batch_size=None, num_workers=workers, pin_memory=dev.type == "cuda",
                      prefetch_factor=4 if workers else None)


def rejected_table(clips: pd.DataFrame, rejects: dict[int, str]) -> pd.DataFrame:
    """The rejected clips: clip_id, path, reason."""
    return pd.DataFrame(
        [{"clip_id": clips["clip_id"].iat[i], "path": clips["path"].iat[i], "reason": r}
         for i, r in sorted(rejects.items())],
        columns=["clip_id", "path", "reason"],
    )


class ExtractionRun:
    """The loop's state: encoder on the device, pooling accumulator, windows still to come per
    clip, finished clips waiting for the next chunk, and the store writer."""

    def __init__(self, encoder, dev: torch.device, settings: ExtractionSettings,
                 writer: ChunkWriter, rejects: dict[int, str], clips: pd.DataFrame,
                 remaining: np.ndarray, chunk_clips: int) -> None:
        self.encoder, self.dev, self.writer = encoder, dev, writer
        self.on_device = settings.resample == "device" and encoder.prepares_on_device
        self.pooling, self.bad_audio = settings.pooling, settings.bad_audio
        self.rejects, self.clips = rejects, clips
        self.remaining, self.chunk_clips = remaining, chunk_clips
        self.accumulator = PoolingAccumulator(self.pooling, dev)
        self.resampler = audio.Resampler(encoder.sample_rate, dev)
        self.finished: list[int] = []
        self.started, self.audio_seconds = time.perf_counter(), 0.0

    def loop(self, batches: DataLoader, n_items: int, name: str) -> None:
        """Run every batch, with a progress bar of windows, then write the last clips."""
        bar = tqdm(total=n_items, unit="win", desc=f"extract {name}", mininterval=2)
        for batch in batches:
            self.step(batch)
            bar.update(len(batch.kept) + len(batch.rejects))
            elapsed = time.perf_counter() - self.started
            bar.set_postfix(clips_s=f"{bar.n / elapsed:.1f}",
                            audio_s_s=f"{self.audio_seconds / elapsed:.0f}", refresh=False)
        self.finish()
        bar.close()

    def log_speed(self, kept: int) -> None:
        elapsed = time.perf_counter() - self.started
        log.info("extracted %d clips (%.0f s of audio) in %.1f s: %.1f clips/s, %.0f audio-s/s; "
                 "%d rejected", kept, self.audio_seconds, elapsed, kept / elapsed,
                 self.audio_seconds / elapsed, len(self.rejects))

    def inputs(self, batch: Decoded) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The encoder's inputs and the clips' lengths on the device, copied without blocking."""
        if self.on_device:
            with full_precision(self.dev):
                waves = [self.resampler(w.to(self.dev, non_blocking=True), r)
                         for w, r in zip(batch.waves, batch.rates)]
                inputs, lengths = encoder_inputs(self.encoder, waves, batch.kept)
            if self.dev.type == "cuda":
                lengths = lengths.pin_memory()
        else:
            inputs, lengths = batch.inputs, batch.lengths
        self.audio_seconds += float(lengths.sum()) / self.encoder.sample_rate
        return ({k: v.to(self.dev, non_blocking=True) for k, v in inputs.items()},
                lengths.to(self.dev, non_blocking=True))

    def step(self, batch: Decoded) -> None:
        """Run one batch through the encoder and add its pooling statistics."""
        for clip, reason in batch.rejects.items():
            self.rejects.setdefault(clip, reason)
            self.accumulator.drop(clip)
        _check_rejects(batch.rejects, self.clips, self.bad_audio)
        if not batch.kept:
            return
        inputs, lengths = self.inputs(batch)
        layers, frames = self.encoder(inputs, lengths)
        with full_precision(self.dev):
            stats = window_stats(layers, frames, self.pooling)
        del layers
        clips = [it.clip for it in batch.kept]
        self.accumulator.add(clips, stats, frames, set(self.rejects))
        for clip in clips:
            self.remaining[clip] -= 1
            if self.remaining[clip] == 0 and clip not in self.rejects:
                self.finished.append(clip)
        if len(self.finished) >= self.chunk_clips:
            self.write()

    def write(self) -> None:
        """Hand the finished clips' pooled vectors to the writer."""
        if self.finished:
            self.writer.put(self.finished, self.accumulator.release(self.finished))
            self.finished = []

    def finish(self) -> None:
        """Write the last finished clips and wait for them."""
        self.write()
        self.writer.flush()


def _check_rejects(rejects: dict[int, str], clips: pd.DataFrame, bad_audio: str) -> None:
    if rejects and bad_audio == "fail":
        i, reason = next(iter(rejects.items()))
        raise AudioError(f"clip {clips['clip_id'].iat[i]} ({clips['path'].iat[i]}): {reason}")
