"""Extraction speed: the seed study's loop versus the bare model versus the full pipeline.

On the same clips and a HuBERT-base-shaped model with random weights (``--model base``; ``small``
is narrower and shallower, for CPUs), three modes, each under the same ``--precision`` (fp32 is
IEEE fp32 on a GPU too) and each warmed up first on a few of the clips:

(a) the seed study's loop: batch size 1, decode + resample + forward, last layer only;
(b) the bare model: pre-decoded, pre-resampled inputs (prepared before timing) in the batches
    the pipeline forms, every layer pooled on the device;
(c) the full pipeline from files to a feature store (decoding and resampling in DataLoader
    workers, planning from file headers included).

Lengths (``--lengths``): ``fixed`` (ESC-50-like: 5 s, 44.1 kHz WAV), ``librispeech``
(utterances: normal, mean 12.3 s, sd 3.9 s, clipped to 2-20 s; 16 kHz) or ``icbhi``
(respiratory cycles: log-normal, median 2.5 s, clipped to 0.2-8 s; 44.1 kHz). Clips are drawn
until each mode has ``--audio-seconds`` of audio (default 20,000 on a GPU, 300 on a CPU).

Every mode runs in the environment of an extraction job (``audioprobe.torch_env``) with its
DataLoader workers and torch threads (``ExtractionSettings.processes`` for this machine's CPUs,
unless ``--workers`` / ``--threads`` say otherwise). (b) and (c) run ``--repeats`` times,
alternately, and the faster run of each counts (CPU timings vary by a tenth between runs).

Batches are the pipeline's: length-sorted, at most ``--batch-size`` windows and
``--batch-seconds`` of padded audio (extraction.batch_seconds; auto: 60 s on a CPU, no limit on
a GPU). Reported per mode: clips/s, audio-s/s, mean batch fill (rows per forward / the rows it
could hold: the batch size, or fewer where batch_seconds caps a batch of long windows), peak
memory (the process's RSS on a CPU, sampled; torch.cuda.max_memory_allocated on a GPU), and the
DataLoader workers and CPUs; then a markdown row for the README's benchmark table.

    python bench/extract_speed.py [--model small|base] [--lengths fixed|librispeech|icbhi]
        [--audio-seconds S] [--batch-size 16] [--batch-seconds auto|S] [--device cpu|cuda]
        [--workers N] [--threads N] [--precision fp32|tf32|bf16|fp16]
        [--resample auto|workers|device] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from audioprobe import torch_env

torch_env.apply()  # before torch is imported, as in an extraction job

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from audioprobe import manifest
from audioprobe.features.families import fetch, load_encoder
from audioprobe.features.extract import (Item, effective_settings, encoder_inputs, extract,
                                         full_precision, make_batches, precision_mode,
                                         window_stats)
from audioprobe.settings import ExtractionSettings

MODELS = {
    "base": {"model_type": "hubert"},  # transformers' defaults: HuBERT base
    "small": {"model_type": "hubert", "hidden_size": 384, "num_hidden_layers": 4,
              "num_attention_heads": 6, "intermediate_size": 1536, "conv_dim": [256] * 7},
}
LENGTHS = {"fixed": 44100, "librispeech": 16000, "icbhi": 44100}  # file sample rates
MODEL_RATE = 16000


def draw_seconds(kind: str, total: float, rng: np.random.Generator) -> list[float]:
    """Clip durations drawn like the named collection until they add up to ``total`` seconds."""
    seconds: list[float] = []
    while sum(seconds) < total:
        if kind == "fixed":
            seconds.append(5.0)
        elif kind == "librispeech":
            seconds.append(float(np.clip(rng.normal(12.3, 3.9), 2.0, 20.0)))
        else:
            seconds.append(float(np.clip(rng.lognormal(np.log(2.5), 0.5), 0.2, 8.0)))
    return seconds


def make_clips(folder: Path, n: int = 0, kind: str = "fixed", total: float = 0.0,
               seed: int = 0) -> list[Path]:
    """WAV files of noise: ``n`` fixed-length clips, or clips of ``kind`` up to ``total`` s."""
    rng = np.random.default_rng(seed)
    rate = LENGTHS[kind]
    seconds = [5.0] * n if n else draw_seconds(kind, total, rng)
    paths = []
    for i, s in enumerate(seconds):
        path = folder / f"clip{i:05d}.wav"
        sf.write(path, 0.1 * rng.standard_normal(int(s * rate)), rate, subtype="PCM_16")
        paths.append(path)
    return paths


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class PeakMemory:
    """Peak memory during the blocks it watches: torch.cuda.max_memory_allocated on a GPU, else
    this process's RSS sampled every 10 ms."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak_mb, self._stop = device, 0.0, threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, rss_mb())
            self._stop.wait(0.01)

    @contextmanager
    def watch(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            yield
            self.peak_mb = max(self.peak_mb, torch.cuda.max_memory_allocated() / 2**20)
            return
        self._stop = threading.Event()
        sampler = threading.Thread(target=self._sample, daemon=True)
        sampler.start()
        try:
            yield
        finally:
            self._stop.set()
            sampler.join()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Counting:
    """An encoder that counts its forwards' rows against the rows they could hold: ``batch_size``,
    or fewer where ``max_samples`` (batch_seconds) caps a batch of long windows (for the mean
    batch fill)."""

    def __init__(self, encoder, batch_size: int, max_samples: float) -> None:
        self.encoder, self.batch_size, self.max_samples = encoder, batch_size, max_samples
        self.lengths: list[torch.Tensor] = []

    def fill(self) -> float:
        """Rows per forward over the rows each could hold, since the last ``reset`` (read after
        timing: it waits for the device)."""
        rows = sum(len(n) for n in self.lengths)
        capacity = sum(min(self.batch_size, self.max_samples // int(n.max()))
                       for n in self.lengths)
        return rows / capacity

    def reset(self) -> None:
        self.lengths = []

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "encoder":
            raise AttributeError(name)
        return getattr(self.encoder, name)

    def to(self, device: torch.device) -> "Counting":
        self.encoder.to(device)
        return self

    def __call__(self, batch: dict[str, torch.Tensor], lengths: torch.Tensor):
        self.lengths.append(lengths)  # no host sync while timing
        return self.encoder(batch, lengths)


def seed_loop(paths: list[Path], encoder, device: torch.device, precision: str) -> int:
    """(a): one clip at a time, decoded, resampled and run alone; the last layer's mean."""
    with precision_mode(precision, device), torch.inference_mode():
        for path in paths:
            data, sr = sf.read(path, dtype="float32")
            wave = AF.resample(torch.from_numpy(data), sr, MODEL_RATE)[None].to(device)
            encoder.model(wave).last_hidden_state.mean(1).float().cpu()
    sync(device)
    return len(paths)


def bare_batches(paths: list[Path], encoder) -> list[tuple[dict, torch.Tensor]]:
    """(b)'s inputs: decoded, resampled and prepared before timing, in the pipeline's batches."""
    waves = [AF.resample(torch.from_numpy(sf.read(p, dtype="float32")[0]), sf.info(p).samplerate,
                         MODEL_RATE) for p in paths]
    items = [Item(i, 0, len(w), max(len(w), encoder.min_samples)) for i, w in enumerate(waves)]
    batches = []
    for batch in make_batches(items, encoder.batch_size, encoder.max_samples):
        inputs, lengths = encoder_inputs(encoder, [waves[it.clip] for it in batch], batch)
        pin = torch.cuda.is_available()
        batches.append(({k: v.pin_memory() if pin else v for k, v in inputs.items()},
                        lengths.pin_memory() if pin else lengths))
    return batches


def bare(batches: list[tuple[dict, torch.Tensor]], encoder, device: torch.device,
         precision: str) -> int:
    """(b): the model and every layer's pooling statistics on the device, nothing else."""
    with precision_mode(precision, device):
        for inputs, lengths in batches:
            inputs = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
            layers, frames = encoder(inputs, lengths.to(device, non_blocking=True))
            with full_precision(device):
                window_stats(layers, frames, "mean")
    sync(device)
    return sum(len(lengths) for _, lengths in batches)


def pipeline(paths: list[Path], encoder, out: Path, args: argparse.Namespace) -> int:
    """(c): files to a feature store."""
    clips = manifest.make([{"clip_id": p.stem, "path": str(p), "label": "x", "fold": 1}
                           for p in paths])
    extract(clips, encoder, out, attrs={}, settings=ExtractionSettings.from_config(
        batch_size=args.batch_size, batch_seconds=args.batch_seconds,
        num_workers=args.workers, device=args.device,
        precision=args.precision, resample=args.resample))
    out.unlink()
    return len(paths)


def timed(run, memory: PeakMemory) -> tuple[float, int]:
    with memory.watch():
        start = time.perf_counter()
        clips = run()
        elapsed = time.perf_counter() - start
    return elapsed, clips


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=sorted(MODELS), default="base")
    parser.add_argument("--lengths", choices=sorted(LENGTHS), default="fixed")
    parser.add_argument("--audio-seconds", type=float,
                        help="audio per mode (default: 20000 on a GPU, 300 on a CPU)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batch-seconds", default="auto",
                        type=lambda v: v if v == "auto" else float(v),
                        help="extraction.batch_seconds (auto: 60 on a CPU, no limit on a GPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, help="default: an extraction job's")
    parser.add_argument("--threads", type=int, help="default: an extraction job's")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--precision", choices=["fp32", "tf32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--resample", choices=["auto", "workers", "device"], default="auto")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is visible to torch")
    cpus = len(os.sched_getaffinity(0))
    workers, threads = ExtractionSettings.from_config().processes(cpus, device.type == "cuda")
    args.workers = workers if args.workers is None else args.workers
    args.threads = threads if args.threads is None else args.threads
    torch.set_num_threads(args.threads)
    total = args.audio_seconds or (20000.0 if device.type == "cuda" else 300.0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "clips").mkdir()
        (tmp / "warm").mkdir()
        paths = make_clips(tmp / "clips", kind=args.lengths, total=total)
        warm = make_clips(tmp / "warm", kind=args.lengths, total=min(total / 20, 60.0), seed=1)
        audio = sum(sf.info(p).duration for p in paths)
        spec = {"family": "transformers", "architecture": MODELS[args.model],
                "random_weights": True}
        model = load_encoder(fetch(f"hubert_{args.model}", spec, tmp / "models"))
        settings = effective_settings(ExtractionSettings.from_config(
            batch_size=args.batch_size, batch_seconds=args.batch_seconds), model, device)
        encoder = Counting(model, args.batch_size, settings.batch_seconds * model.sample_rate)
        encoder.to(device)
        memory = {m: PeakMemory(device) for m in "abc"}
        fills = {"a": 1.0}
        seed_loop(warm, encoder, device, args.precision)
        times = {"a": timed(lambda: seed_loop(paths, encoder, device, args.precision),
                            memory["a"])}
        batches = bare_batches(paths, encoder)
        bare(bare_batches(warm, encoder), encoder, device, args.precision)
        pipeline(warm, encoder, tmp / "warm.h5", args)
        runs = {"b": lambda: bare(batches, encoder, device, args.precision),
                "c": lambda: pipeline(paths, encoder, tmp / "store.h5", args)}
        for _ in range(args.repeats):
            for m, run in runs.items():
                encoder.reset()
                elapsed, clips = timed(run, memory[m])
                if m not in times or elapsed < times[m][0]:
                    times[m] = elapsed, clips
                fills[m] = encoder.fill()
    name = {"a": "a seed loop (bs 1, last layer)",
            "b": f"b bare model (bs {args.batch_size}, best of {args.repeats})",
            "c": f"c pipeline ({args.workers} workers, best of {args.repeats})"}
    unit = "MB GPU" if device.type == "cuda" else "MB RSS"
    print(f"{len(paths)} clips, {audio:.0f} s of audio ({args.lengths}), HuBERT {args.model} "
          f"shape, random weights, {device}, {args.precision}; {cpus} CPUs, torch threads "
          f"{args.threads}, {args.workers} workers")
    for m, (seconds, clips) in times.items():
        print(f"{name[m]:44s} {clips / seconds:8.2f} clips/s {audio / seconds:9.1f} audio-s/s "
              f"fill {fills[m]:.2f}  peak {memory[m].peak_mb:8.0f} {unit}")
    a, b, c = (times[m][0] for m in "abc")
    print(f"c/a = {a / c:.2f}   c/b = {b / c:.2f}")
    speed = {m: f"{audio / times[m][0]:.3g}" for m in "abc"}
    print(f"\n| {args.model} | {args.lengths} | {device} | {args.precision} | {speed['a']} | "
          f"{speed['b']} | {speed['c']} | {a / c:.2f} | {b / c:.2f} | {fills['b']:.2f} / "
          f"{fills['c']:.2f} | {memory['b'].peak_mb:.0f} / {memory['c'].peak_mb:.0f} {unit} | "
          f"{args.workers} / {cpus} |")


if __name__ == "__main__":
    main()
