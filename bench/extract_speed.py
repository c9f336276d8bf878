"""Extraction speed: a naive loop versus the bare model versus the full pipeline.

On the same clips (ESC-50-like: 5 s, 44.1 kHz WAV files) and a HuBERT-base-sized model with
random weights:

(a) naive loop as in the original study: batch size 1, fp32, decode + resample + forward, last
    layer only;
(b) bare model forward on pre-decoded 16 kHz tensors at the pipeline's batch size, every layer
    pooled on the device;
(c) the full pipeline from files to a feature store (decoding in DataLoader workers).

    python bench/extract_speed.py [--clips 32] [--batch-size 16] [--device cpu|cuda]
                                  [--workers 1] [--dtype fp32|bf16|fp16]
                                  [--resample auto|workers|device]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from audioprobe import manifest
from audioprobe.features.checkpoints import fetch
from audioprobe.features.encoders import load_encoder
from audioprobe.features.extract import extract, pool_stats

SECONDS, FILE_RATE = 5.0, 44100


def make_clips(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"clip{i:04d}.wav"
        sf.write(path, 0.1 * rng.standard_normal(int(SECONDS * FILE_RATE)), FILE_RATE,
                 subtype="PCM_16")
        paths.append(path)
    return paths


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def naive(paths: list[Path], encoder, device: torch.device) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for path in paths:
            data, sr = sf.read(path, dtype="float32")
            wave = AF.resample(torch.from_numpy(data), sr, 16000)[None].to(device)
            encoder.model(wave).last_hidden_state.mean(1).cpu()
    sync(device)
    return time.perf_counter() - start


def bare(paths: list[Path], encoder, device: torch.device, batch_size: int, dtype) -> float:
    waves = [AF.resample(torch.from_numpy(sf.read(p, dtype="float32")[0]), FILE_RATE, 16000)
             for p in paths]
    batches = [encoder.prepare(waves[i:i + batch_size]) for i in range(0, len(waves), batch_size)]
    lengths = torch.full((batch_size,), waves[0].numel(), device=device)
    sync(device)
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            layers, frames = encoder(batch, lengths[: len(batch["input_values"])])
            [s.cpu() for s in pool_stats(layers, frames)]
    sync(device)
    return time.perf_counter() - start


def pipeline(paths: list[Path], encoder, out: Path, batch_size: int, workers: int,
             device: str, precision: str, resample: str) -> float:
    clips = manifest.make([{"clip_id": p.stem, "path": str(p), "label": "x", "fold": 1}
                           for p in paths])
    start = time.perf_counter()
    extract(clips, encoder, out, attrs={}, batch_size=batch_size, num_workers=workers,
            device=device, precision=precision, resample=resample)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--resample", choices=["auto", "workers", "device"], default="auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = make_clips(tmp, args.clips)
        card = fetch("hubert_base_random", {"family": "transformers",
                                            "architecture": {"model_type": "hubert"},
                                            "random_weights": True}, tmp / "models")
        encoder = load_encoder(card).to(device)
        naive(paths[:2], encoder, device)  # warm-up
        times = {
            "a naive loop (bs 1, fp32, last layer)": naive(paths, encoder, device),
            f"b bare forward (bs {args.batch_size}, {args.dtype}, all layers)":
                bare(paths, encoder, device, args.batch_size, dtype),
            f"c full pipeline (files -> store, {args.dtype}, resample {args.resample})":
                pipeline(paths, encoder, tmp / "store.h5", args.batch_size, args.workers,
                         args.device, args.dtype, args.resample),
        }
    audio = args.clips * SECONDS
    print(f"{args.clips} clips of {SECONDS:.0f} s, HuBERT-base size, device {device}")
    for name, seconds in times.items():
        print(f"{name:62s} {args.clips / seconds:8.2f} clips/s {audio / seconds:9.1f} audio-s/s")
    a, b, c = times.values()
    print(f"c/a = {a / c:.2f}   c/b = {b / c:.2f}")


if __name__ == "__main__":
    main()
