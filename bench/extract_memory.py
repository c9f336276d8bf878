"""Peak memory of an extraction job against the number of clips in its shard.

Each shard size runs in a fresh process (so its peak RSS is its own): N short clips (16 kHz WAV)
through the full pipeline into a feature store, with a cheap model of HuBERT base's depth
(13 layers of 256 dims, a third of its width; random weights, a small convolutional front end,
so that 20,000 clips run in minutes on a CPU), the log-mel baseline, or ``frames``, a stand-in
that returns random frames of HuBERT base's shape (13 layers, 768 dims) at no cost, so that only
the extraction loop's own memory shows; mean+std pooling (the most statistics). Reported: the
extraction process's peak RSS, its RSS before extraction (model loaded), and the largest peak
RSS of its DataLoader workers. Flat in N means memory is bounded by the batch, not the shard.
Every run is in the environment of an extraction job (``audioprobe.torch_env``).

    python bench/extract_memory.py [--clips 1000 10000 20000] [--model hubert256|logmel|frames]
                                   [--pooling mean+std] [--seconds 0.1] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from audioprobe import torch_env

torch_env.apply()  # before torch is imported, as in an extraction job (children inherit it)

import numpy as np
import soundfile as sf

MODELS = {
    "hubert256": {"family": "transformers", "random_weights": True,
                  "architecture": {"model_type": "hubert", "hidden_size": 256,
                                   "num_hidden_layers": 12, "num_attention_heads": 4,
                                   "intermediate_size": 512, "conv_dim": [32] * 7,
                                   "num_conv_pos_embeddings": 16}},
    "logmel": {"family": "logmel"},
    "frames": None,  # RandomFrames below
}


class RandomFrames:
    """A stand-in for an encoder of HuBERT base's shape and no cost: 13 layers of 768-dim random
    frames (one per 320 samples), so that only the extraction loop's own memory shows."""

    prepares_on_device = True
    sample_rate, min_samples, n_layers = 16000, 400, 13

    def prepare(self, waves: list) -> dict:
        import torch

        return {"waves": torch.stack(waves)}

    def to(self, device) -> "RandomFrames":
        return self

    def __call__(self, batch: dict, lengths):
        import torch

        frames = lengths // 320
        shape = (len(lengths), int(batch["waves"].shape[1]) // 320, 768)
        return [torch.randn(shape) for _ in range(self.n_layers)], frames


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(args: argparse.Namespace) -> None:
    """One extraction in this process; prints its figures as JSON."""
    import torch

    from audioprobe import manifest
    from audioprobe.features.families import fetch, load_encoder
    from audioprobe.features.extract import extract
    from audioprobe.settings import ExtractionSettings

    torch.set_num_threads(args.threads)
    folder = Path(args.folder)
    paths = sorted(folder.glob("clip*.wav"))[: args.child]
    clips = manifest.make([{"clip_id": p.stem, "path": str(p), "label": "x", "fold": 1}
                           for p in paths])
    encoder = (RandomFrames() if args.model == "frames" else
               load_encoder(fetch(args.model, MODELS[args.model], folder / "models")))
    before = current_rss_mb()
    start = time.perf_counter()
    extract(clips, encoder, folder / f"store{args.child}.h5", attrs={},
            settings=ExtractionSettings.from_config(
                batch_size=args.batch_size, pooling=args.pooling, num_workers=args.workers,
                device="cpu"))
    elapsed = time.perf_counter() - start
    (folder / f"store{args.child}.h5").unlink()
    print(json.dumps({
        "clips": args.child, "before_mb": before, "elapsed_s": elapsed,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, nargs="+", default=[1000, 10000, 20000])
    parser.add_argument("--model", choices=sorted(MODELS), default="hubert256")
    parser.add_argument("--pooling", choices=["mean", "mean+std", "max"], default="mean+std")
    parser.add_argument("--seconds", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        for i in range(max(args.clips)):
            sf.write(Path(tmp) / f"clip{i:06d}.wav",
                     0.1 * rng.standard_normal(int(args.seconds * 16000)), 16000,
                     subtype="PCM_16")
        for n in args.clips:
            command = [sys.executable, __file__, "--child", str(n), "--folder", tmp,
                       "--model", args.model, "--pooling", args.pooling,
                       "--batch-size", str(args.batch_size), "--workers", str(args.workers),
                       "--threads", str(args.threads)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                sys.exit(done.stderr)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    print(f"\n{args.model}, {args.pooling} pooling, {args.seconds} s clips, batch "
          f"{args.batch_size}, {args.workers} workers")
    print("| clips | peak RSS (MB) | RSS before extraction (MB) | worker peak RSS (MB) "
          "| time (s) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clips']:,} | {r['peak_mb']:.0f} | {r['before_mb']:.0f} | "
              f"{r['worker_peak_mb']:.0f} | {r['elapsed_s']:.0f} |")


if __name__ == "__main__":
    main()
