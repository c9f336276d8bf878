"""Effect of tf32, bf16 and fp16 (``extraction.precision``) on the stored features.

The same clips (ESC-50-like: 5 s, 44.1 kHz) go through the full pipeline in IEEE fp32 (the
reference) and in each other precision with a HuBERT-base-sized model: random weights, or a
transformers checkpoint (a hub id in the cache, or a local folder) with ``--checkpoint``. For
every layer, the relative error of each clip's pooled vector against fp32,
||x - x_fp32|| / ||x_fp32||, and its cosine similarity are summarised over clips (median and
worst). tf32 exists on NVIDIA GPUs only (Ampere and later): run with ``--device cuda``; on a
CPU it computes IEEE fp32, so its error there is zero.

    python bench/precision_effect.py [--device cpu|cuda] [--clips 16] [--checkpoint ID|DIR]
                                     [--precisions tf32 bf16 fp16]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from audioprobe import manifest
from audioprobe.features.families import fetch, load_encoder
from audioprobe.features.extract import extract
from audioprobe.features.store import open_store
from audioprobe.settings import ExtractionSettings
from extract_speed import make_clips


def features(paths: list[Path], encoder, out: Path, device: str, precision: str) -> np.ndarray:
    clips = manifest.make([{"clip_id": p.stem, "path": str(p), "label": "x", "fold": 1}
                           for p in paths])
    extract(clips, encoder, out, attrs={}, settings=ExtractionSettings.from_config(
        batch_size=8, num_workers=1, device=device, precision=precision))
    store = open_store(out)
    return np.stack([store.layer(k) for k in range(store.n_layers)]).astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", help="transformers hub id or folder (default: random)")
    parser.add_argument("--precisions", nargs="+", choices=["tf32", "bf16", "fp16"],
                        default=["tf32", "bf16", "fp16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = ({"family": "transformers", "checkpoint": args.checkpoint} if args.checkpoint else
            {"family": "transformers", "architecture": {"model_type": "hubert"},
             "random_weights": True})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = make_clips(tmp, args.clips)
        encoder = load_encoder(fetch("model", spec, tmp / "models"))
        reference = features(paths, encoder, tmp / "fp32.h5", args.device, "fp32")
        print(f"{args.clips} clips, {args.checkpoint or 'HuBERT-base size, random weights'}, "
              f"device {args.device}")
        for precision in args.precisions:
            x = features(paths, encoder, tmp / f"{precision}.h5", args.device, precision)
            error = np.linalg.norm(x - reference, axis=-1) / np.linalg.norm(reference, axis=-1)
            cosine = (x * reference).sum(-1) / (np.linalg.norm(x, axis=-1)
                                                * np.linalg.norm(reference, axis=-1))
            print(f"\n{precision}: layer  relative error (median, max)  cosine (median, min)")
            for k in range(len(x)):
                print(f"{precision:>5s} {k:6d}  {np.median(error[k]):10.2e} {error[k].max():10.2e}"
                      f"  {np.median(cosine[k]):12.6f} {cosine[k].min():10.6f}")
            print(f"{precision}: all layers: median relative error {np.median(error):.2e}, "
                  f"max {error.max():.2e}; min cosine {cosine.min():.6f}")


if __name__ == "__main__":
    main()
