"""Extract pooled features of every layer of one model for one shard of a dataset."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
# Idle OpenMP threads sleep instead of spinning, so parallel jobs on few cores do not starve.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from audioprobe import __version__, manifest
from audioprobe.features.families import load_encoder, normalizes_waveform, read_card
from audioprobe.features.extract import extract
from audioprobe.joblog import to_file

to_file(snakemake.log[0])
stored = snakemake.params.stored
# runtime settings: not params, so that changing them re-extracts nothing
runtime = snakemake.config["extraction"]
# The job's CPUs (extraction.cpus): DataLoader workers decode and resample; on a GPU the rest
# run the main process, on a CPU the model takes them all (the workers mostly wait on it).
workers = runtime["num_workers"]
if workers == "auto":
    workers = max(1, snakemake.threads - 1)
on_gpu = runtime["device"] != "cpu" and torch.cuda.is_available()
torch.set_num_threads(max(1, snakemake.threads - workers) if on_gpu else snakemake.threads)
card = read_card(snakemake.input.card)
everything = manifest.read(snakemake.input.manifest)
first = int(snakemake.wildcards.shard) * snakemake.params.shard_size
clips = everything.iloc[first : first + snakemake.params.shard_size].reset_index(drop=True)
encoder = load_encoder(card)
rejected = extract(
    clips,
    encoder,
    Path(snakemake.output.store),
    attrs={
        "dataset": snakemake.wildcards.dataset,
        "model": snakemake.wildcards.model,
        "model_id": card["model_id"],
        "revision": card["revision"],
        "family": card["family"],
        "config_hash": card["config_hash"],
        "protocol": manifest.protocol(everything),
        "audioprobe_version": __version__,
        "waveform_normalized": normalizes_waveform(encoder),
    },
    batch_size=runtime["batch_size"],
    pooling=snakemake.params.pooling,
    num_workers=workers,
    device=runtime["device"],
    bad_audio=stored["bad_audio"],
    max_seconds=stored["max_seconds"],
    max_clip_seconds=stored["max_clip_seconds"],
    precision=stored["precision"],
    resample=runtime["resample"],
)
rejected.to_csv(snakemake.output.rejected, index=False)
