"""Extract pooled features of every layer of one model for one shard of a dataset."""

import os
import sys
from dataclasses import replace
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
from audioprobe.settings import ExtractionSettings

to_file(snakemake.log[0])
# Settings that change the stored features come as params (a change re-extracts); runtime
# settings (batch_size, num_workers, device, resample) are read from the config here, so that
# changing them re-extracts nothing.
settings = ExtractionSettings.from_config(
    snakemake.config["extraction"],
    **snakemake.params.stored,
    pooling=snakemake.params.pooling,
    shard_size=snakemake.params.shard_size,
)
# The job's CPUs (extraction.cpus): DataLoader workers decode and resample; on a GPU the rest
# run the main process, on a CPU the model takes them all (the workers mostly wait on it).
if settings.num_workers == "auto":
    settings = replace(settings, num_workers=max(1, snakemake.threads - 1))
on_gpu = settings.device != "cpu" and torch.cuda.is_available()
torch.set_num_threads(
    max(1, snakemake.threads - settings.num_workers) if on_gpu else snakemake.threads
)
card = read_card(snakemake.input.card)
everything = manifest.read(snakemake.input.manifest)
first = int(snakemake.wildcards.shard) * settings.shard_size
clips = everything.iloc[first : first + settings.shard_size].reset_index(drop=True)
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
    settings=settings,
)
rejected.to_csv(snakemake.output.rejected, index=False)
