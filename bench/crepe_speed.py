"""CREPE extraction speed: torchcrepe's own ``embed`` loop versus audioprobe's pipeline.

On the same clips (noise WAV files of ``--lengths``, as in ``extract_speed.py``), two modes, each
warmed up first on a few clips, run ``--repeats`` times alternately, the faster run counting:

(a) torchcrepe's way, as the HEAR 2021 CREPE baseline calls it: each clip decoded, resampled to
    16 kHz and passed alone to ``torchcrepe.embed`` (its frames in batches of ``--frames``), the
    embedding averaged over the clip's frames;
(b) audioprobe's pipeline, from files to a feature store: every layer pooled, the frames of
    all clips of a length-sorted padded batch through the network together (family ``crepe``).

Both at the same hop and on the same device, in an extraction job's environment and threads.
Reported: audio-s/s of each and (b)/(a); then a markdown row for the README's table.

    python bench/crepe_speed.py [--capacity tiny|full] [--hop-ms 10] [--lengths icbhi]
        [--audio-seconds S] [--device cpu|cuda] [--threads N] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from audioprobe import torch_env

torch_env.apply()  # before torch is imported, as in an extraction job

import soundfile as sf
import torch
import torchaudio.functional as AF

from audioprobe import manifest
from audioprobe.features.extract import extract
from audioprobe.features.families import fetch, load_encoder
from audioprobe.settings import ExtractionSettings
from extract_speed import LENGTHS, make_clips  # bench/extract_speed.py

RATE = 16000


def torchcrepe_loop(paths: list[Path], capacity: str, hop: int, frames: int,
                    device: torch.device) -> float:
    """(a): each clip alone through ``torchcrepe.embed``; returns the audio seconds."""
    import torchcrepe

    seconds = 0.0
    with torch.inference_mode():
        for path in paths:
            data, sr = sf.read(path, dtype="float32")
            wave = AF.resample(torch.from_numpy(data), sr, RATE)[None]
            embedding = torchcrepe.embed(wave, RATE, hop, model=capacity, batch_size=frames,
                                         device=str(device))
            embedding.reshape(embedding.shape[1], -1).mean(0).cpu()
            seconds += wave.shape[1] / RATE
    return seconds


def pipeline(paths: list[Path], card: dict, out: Path, device: str) -> float:
    """(b): files to a feature store with family crepe; returns the audio seconds."""
    clips = manifest.make([{"clip_id": p.stem, "path": str(p), "label": "x", "fold": 1}
                           for p in paths])
    settings = ExtractionSettings.from_config(device=device)
    workers, _ = settings.processes(len(os.sched_getaffinity(0)), on_gpu=device == "cuda")
    extract(clips, load_encoder(card), out, attrs={},
            settings=ExtractionSettings.from_config(device=device, num_workers=workers))
    out.unlink()
    return sum(sf.info(p).duration for p in paths)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--capacity", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--hop-ms", type=float, default=10)
    parser.add_argument("--lengths", choices=sorted(LENGTHS), default="icbhi")
    parser.add_argument("--audio-seconds", type=float)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="default: an extraction job's")
    parser.add_argument("--frames", type=int, default=512,
                        help="torchcrepe's frames per batch in (a) (the HEAR baseline's 512)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is visible to torch")
    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        workers, threads = ExtractionSettings.from_config().processes(
            len(os.sched_getaffinity(0)), on_gpu=device.type == "cuda")
        torch.set_num_threads(threads)
    total = args.audio_seconds or (60 if device.type == "cpu" else 3000)
    if args.capacity == "full" and device.type == "cpu" and not args.audio_seconds:
        total = 10
    hop = max(1, round(RATE * args.hop_ms / 1000))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = make_clips(folder, kind=args.lengths, total=total)
        (folder / "warm").mkdir()
        warm = make_clips(folder / "warm", n=1, kind="fixed")
        card = fetch("crepe", {"family": "crepe", "capacity": args.capacity,
                               "hop_ms": args.hop_ms}, folder) | {"name": "crepe"}
        torchcrepe_loop(warm, args.capacity, hop, args.frames, device)
        pipeline(warm, card, folder / "warm.h5", args.device)
        best = {"a": float("inf"), "b": float("inf")}
        seconds = 0.0
        for _ in range(args.repeats):
            start = time.perf_counter()
            seconds = torchcrepe_loop(paths, args.capacity, hop, args.frames, device)
            best["a"] = min(best["a"], time.perf_counter() - start)
            start = time.perf_counter()
            pipeline(paths, card, folder / "store.h5", args.device)
            best["b"] = min(best["b"], time.perf_counter() - start)
    a, b = seconds / best["a"], seconds / best["b"]
    print(f"CREPE {args.capacity}, hop {args.hop_ms:g} ms, {args.lengths} lengths, "
          f"{seconds:.0f} s of audio in {len(paths)} clips on {device} "
          f"({torch.get_num_threads()} threads)")
    print(f"(a) torchcrepe.embed, clip by clip: {a:.1f} audio-s/s")
    print(f"(b) audioprobe pipeline:            {b:.1f} audio-s/s  (b/a = {b / a:.2f})")
    print(f"| CREPE {args.capacity} | {args.hop_ms:g} ms | {args.lengths} | {device} | "
          f"{a:.1f} | {b:.1f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
