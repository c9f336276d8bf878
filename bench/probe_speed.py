"""Probe training speed on an ESC-50-sized problem.

2,000 clips x 768 dims x 13 layers, 50 classes, 5 folds (HEAR rounds), linear and MLP probes,
under the probe rule's default protocol (``config.schema.yaml``: 3 seeds, a 2 x 2 grid of
learning rate and weight decay, early stopping); ``--patience`` overrides the patience. It
runs in the environment of a probe job (``audioprobe.torch_env``).

    python bench/probe_speed.py [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from audioprobe import torch_env

torch_env.apply()  # before torch is imported, as in a probe job

import h5py
import numpy as np
import torch

from audioprobe.features.store import open_store
from audioprobe.probes.run import probe_all
from audioprobe.settings import ProtocolSettings


def synthetic_store(path: Path, clips: int = 2000, dim: int = 768, layers: int = 13,
                    classes: int = 50) -> Path:
    """Features with a class signal that grows, then fades, over the layers."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(classes), clips // classes)
    centers = rng.normal(0, 1, (classes, dim))
    text = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.create_dataset("features", (layers, clips, dim), "float32")
        for k in range(layers):
            signal = 0.05 + 0.07 * np.sin(np.pi * k / (layers - 1))
            f["features"][k] = centers[y] * signal + rng.normal(0, 1, (clips, dim))
        f.create_dataset("clip_id", data=[f"c{i}" for i in range(clips)], dtype=text)
        f.create_dataset("label", data=[f"class{c:02d}" for c in y], dtype=text)
        f.create_dataset("split", data=[""] * clips, dtype=text)
        f.create_dataset("group", data=[f"g{i // 5}" for i in range(clips)], dtype=text)
        f["fold"] = np.tile(np.arange(1, 6), clips // 5)
        f["duration"] = np.full(clips, 5.0)
        f["padded"] = np.zeros(clips, dtype=bool)
        f.attrs.update({"n_layers": layers, "complete": True, "pooling": "mean",
                        "classes": [f"class{c:02d}" for c in range(classes)]})
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--patience", type=int)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # the protocol a config gets when it names none
    protocol = ProtocolSettings.from_config()
    if args.patience:
        protocol = replace(protocol, patience=args.patience)
    print("protocol:", protocol)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(synthetic_store(Path(tmp) / "esc50_like.h5"))
        total = 0.0
        for probe, spec in [("linear", {"kind": "linear"}),
                            ("mlp", {"kind": "mlp"})]:
            start = time.perf_counter()
            runs = probe_all(store, probe, spec, protocol).runs
            elapsed = time.perf_counter() - start
            total += elapsed
            headline = runs[runs["chosen"]].groupby("fold")["accuracy"].mean().mean()
            print(f"{probe:6s} {elapsed:6.1f} s  {len(runs)} runs  mean epochs "
                  f"{runs['epochs'].mean():.0f}  accuracy at each round's chosen layer "
                  f"{headline:.3f}")
        print(f"total  {total:6.1f} s on {args.threads} threads")


if __name__ == "__main__":
    main()
