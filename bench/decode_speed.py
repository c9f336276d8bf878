"""Decoding throughput: what the DataLoader workers of an extraction job deliver, without a model.

The clips of ``extract_speed.py`` (``--lengths``) are decoded, resampled to 16 kHz and padded
into the pipeline's batches by ``--workers`` worker processes (an extraction job's
``BatchDecoder``), as fast as they come. On a GPU this is the wall the model cannot pass.

    python bench/decode_speed.py [--lengths librispeech] [--audio-seconds 600] [--workers 7]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from audioprobe import torch_env

torch_env.apply()  # before torch is imported, as in an extraction job

import soundfile as sf
from torch.utils.data import DataLoader

from audioprobe.features.extract import BatchDecoder, Item, make_batches
from audioprobe.features.families.logmel import LogMelEncoder
from extract_speed import LENGTHS, make_clips


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", choices=sorted(LENGTHS), default="librispeech")
    parser.add_argument("--audio-seconds", type=float, default=600)
    parser.add_argument("--workers", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    encoder = LogMelEncoder()  # only its rate and padding are used: 16 kHz waves, padded
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_clips(Path(tmp), kind=args.lengths, total=args.audio_seconds)
        items = []
        for i, path in enumerate(paths):
            frames = sf.info(path).frames
            items.append(Item(i, 0, frames, frames * 16000 // LENGTHS[args.lengths]))
        batches = make_batches(items, args.batch_size)
        decoder = BatchDecoder(batches, [str(p) for p in paths], encoder, on_device=False)
        loader = DataLoader(decoder, batch_size=None, num_workers=args.workers,
                            prefetch_factor=4 if args.workers else None)
        start = time.perf_counter()
        seconds = sum(float(batch.lengths.sum()) / 16000 for batch in loader)
        elapsed = time.perf_counter() - start
    print(f"decoded, resampled to 16 kHz and padded {seconds:.0f} s of audio ({len(paths)} "
          f"{args.lengths} clips) with {args.workers} workers in {elapsed:.1f} s: "
          f"{seconds / elapsed:.0f} audio-s/s")


if __name__ == "__main__":
    main()
