"""Layer similarity (debiased linear CKA) at the size the analysis must handle.

Writes one feature store of ``--clips`` clips x ``--layers`` layers x ``--dim`` dims (by
default 20,000 x 25 x 1024: HuBERT large on a large dataset; 2 GB of float32), whose layers
drift from one random signal to another so that CKA falls off with the distance between layers,
then runs the ``layer_similarity`` job's computation on it in the environment of that job and
reports its wall time, its peak memory (resident set) and a few CKA values.

    python bench/layer_similarity_speed.py [--clips 20000] [--layers 25] [--dim 1024]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from audioprobe import torch_env

torch_env.apply()  # before torch is imported, as in the job

import h5py
import numpy as np
import torch

from audioprobe.features.store import open_store
from audioprobe.layer_similarity import layer_similarity


def drifting_store(path: Path, clips: int, layers: int, dim: int) -> Path:
    """Layer k holds a 64-dimensional signal of the clips that drifts from one random signal
    to another as k grows, through a fixed random basis, plus noise; written a layer at a
    time."""
    rng = np.random.default_rng(0)
    start, end = (rng.normal(0, 1, (clips, 64)).astype(np.float32) for _ in range(2))
    basis = rng.normal(0, 1, (64, dim)).astype(np.float32)
    text = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        features = f.create_dataset("features", (layers, clips, dim), "float32",
                                    chunks=(1, min(clips, 512), dim))
        for k in range(layers):
            t = k / max(layers - 1, 1)
            signal = np.cos(t * np.pi / 2) * start + np.sin(t * np.pi / 2) * end
            features[k] = signal @ basis + rng.normal(0, 4, (clips, dim)).astype(np.float32)
        f.create_dataset("clip_id", data=[f"c{i}" for i in range(clips)], dtype=text)
        f.create_dataset("label", data=["a"] * clips, dtype=text)
        f.create_dataset("split", data=[""] * clips, dtype=text)
        f.create_dataset("group", data=[f"g{i}" for i in range(clips)], dtype=text)
        f["fold"] = np.ones(clips, dtype=int)
        f["duration"] = np.full(clips, 5.0)
        f["padded"] = np.zeros(clips, dtype=bool)
        f.attrs.update({"n_layers": layers, "complete": True, "pooling": "mean"})
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=20000)
    parser.add_argument("--layers", type=int, default=25)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = drifting_store(Path(tmp) / "large.h5", args.clips, args.layers, args.dim)
        print(f"store of {args.clips} x {args.layers} x {args.dim} written in "
              f"{time.perf_counter() - start:.0f} s")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        start = time.perf_counter()
        table = layer_similarity({"large": open_store(path)})
        elapsed = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    cka = table.set_index(["layer_a", "layer_b"])["cka"]
    last = args.layers - 1
    print(f"layer similarity: {elapsed:.1f} s on {args.threads} threads, {len(table)} pairs; "
          f"peak resident memory {peak:.2f} GB (before: {before:.2f} GB)")
    print(f"CKA(0, 0) = {cka[0, 0]:.4f}, CKA(0, 1) = {cka[0, 1]:.4f}, "
          f"CKA(0, {last // 2}) = {cka[0, last // 2]:.4f}, CKA(0, {last}) = {cka[0, last]:.4f}")


if __name__ == "__main__":
    main()
