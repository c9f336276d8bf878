"""The HDF5 feature store: pooled features of every layer for every clip of one dataset.

Layout of ``results/features/{dataset}/{model}.h5``:

- ``features``: float32 (layers, clips, dim); ``layer_names`` (an attribute) says what each
  layer is, as the model's family names them (transformers: layer 0 is the input embedding)
- ``clip_id``, ``label``, ``split``, ``group``: strings per clip; ``fold``: int per clip (0: none)
- ``duration``: seconds per clip; ``padded``: clip was shorter than the model's minimum input
- attributes: dataset, model, model_id, revision, family, sample_rate, pooling, max_seconds
  (window length used), max_clip_seconds, precision, waveform_normalized, n_layers,
  layer_names, model_card (the model card as JSON: every family setting, e.g. CREPE's hop_ms),
  classes, protocol, audioprobe_version, config_hash, complete

A store is written to a temporary name and renamed when complete, so an interrupted job never
leaves a file that looks complete.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

STRING_COLUMNS = ("clip_id", "label", "split", "group")


@dataclass
class Store:
    """An opened feature store's metadata, with lazy per-layer access to its features."""

    path: Path
    meta: pd.DataFrame
    attrs: dict

    @property
    def n_layers(self) -> int:
        return int(self.attrs["n_layers"])

    @property
    def dim(self) -> int:
        """Dimensions of a layer's pooled vector (read from the header, not the data)."""
        with h5py.File(self.path, "r") as f:
            return int(f["features"].shape[2])

    def layer(self, index: int) -> np.ndarray:
        """Features of one layer, (clips, dim)."""
        with h5py.File(self.path, "r") as f:
            return f["features"][index]

    def rows(self, index: np.ndarray) -> np.ndarray:
        """Features of every layer for these rows (in their order), (layers, rows, dim)."""
        order = np.argsort(index, kind="stable")
        with h5py.File(self.path, "r") as f:
            block = f["features"][:, np.asarray(index)[order]]
        return block[:, np.argsort(order)]


def open_store(path: str | Path) -> Store:
    """Open a complete store; refuse one that is not marked complete."""
    with h5py.File(path, "r") as f:
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
        if not attrs.get("complete"):
            raise ValueError(f"{path} is not a complete feature store")
        meta = pd.DataFrame({c: f[c].asstr()[...] for c in STRING_COLUMNS})
        meta["fold"] = f["fold"][...]
        meta["duration"] = f["duration"][...]
        meta["padded"] = f["padded"][...]
    return Store(Path(path), meta, attrs)


def _write_meta(dst: h5py.File, meta: pd.DataFrame, attrs: dict) -> None:
    """Per-clip metadata and attributes, then the mark that the store is complete."""
    text = h5py.string_dtype()
    for column in STRING_COLUMNS:
        dst.create_dataset(column, data=meta[column].astype(str).to_numpy(dtype=object),
                           dtype=text)
    dst["fold"] = meta["fold"].fillna(0).astype(int).to_numpy()
    dst["duration"] = meta["duration"].to_numpy(dtype=float)
    dst["padded"] = meta["padded"].to_numpy(dtype=bool)
    dst.attrs.update(attrs)
    dst.attrs["classes"] = sorted(meta["label"].unique())
    dst.attrs["complete"] = True


CHUNK_CLIPS = 512  # clips per HDF5 chunk of ``features`` (one layer each)


def _features(dst: h5py.File, n_layers: int, n: int, dim: int) -> h5py.Dataset:
    """The features dataset; one of no clips (every clip rejected) is stored unchunked."""
    chunks = (1, min(n, CHUNK_CLIPS), dim) if n and dim else None
    return dst.create_dataset("features", (n_layers, n, dim), "float32", chunks=chunks)


@contextmanager
def removed_on_failure(*paths: Path) -> Iterator[None]:
    """Remove ``paths`` (temporary stores) when the block fails, e.g. on a full disk, and
    re-raise: a failed job leaves no ``*.h5.partial`` or ``*.h5.tmp`` behind."""
    try:
        yield
    except BaseException:
        for path in paths:
            path.unlink(missing_ok=True)
        raise


def finalize(partial: Path, out: Path, keep: np.ndarray, meta: pd.DataFrame, attrs: dict) -> None:
    """Copy the kept rows of a partial store into ``out`` with metadata, then mark it complete.

    Rows are copied a chunk of clips (all layers) at a time, so memory does not grow with the
    number of clips."""
    tmp = out.with_name(out.name + ".tmp")
    kept = np.flatnonzero(keep)
    with removed_on_failure(partial, tmp), h5py.File(partial, "r") as src, \
            h5py.File(tmp, "w") as dst:
        if "features" in src:
            n_layers, _, dim = src["features"].shape
        else:  # no clip was usable: an empty store, its clips listed as rejected
            n_layers, dim = int(attrs["n_layers"]), 0
        features = _features(dst, n_layers, len(kept), dim)
        for lo in range(0, len(kept), CHUNK_CLIPS):
            rows = kept[lo:lo + CHUNK_CLIPS]
            block = src["features"][:, rows[0]:rows[-1] + 1]
            features[:, lo:lo + len(rows)] = block[:, rows - rows[0]]
        _write_meta(dst, meta[keep].reset_index(drop=True), attrs)
    os.replace(tmp, out)
    partial.unlink()


def merge(shards: list[Path], out: Path) -> None:
    """Concatenate shard stores (in order) into one complete store ``out``."""
    parts = [open_store(p) for p in shards]
    n_layers = parts[0].n_layers
    for part in parts[1:]:
        if part.n_layers != n_layers or part.attrs.get("model") != parts[0].attrs.get("model"):
            raise ValueError(f"{part.path} does not match {parts[0].path}: cannot merge")
    filled = [p for p in parts if len(p.meta)]  # a shard of rejected clips only adds none
    dim = filled[0].dim if filled else 0
    tmp = out.with_name(out.name + ".tmp")
    with removed_on_failure(tmp), h5py.File(tmp, "w") as dst:
        features = _features(dst, n_layers, sum(len(p.meta) for p in filled), dim)
        for layer in range(n_layers if filled else 0):
            features[layer] = np.concatenate([p.layer(layer) for p in filled])
        attrs = {k: v for k, v in parts[0].attrs.items() if k not in ("classes", "complete")}
        _write_meta(dst, pd.concat([p.meta for p in parts], ignore_index=True), attrs)
    os.replace(tmp, out)
