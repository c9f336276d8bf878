"""Extract pooled features of every layer of one model for one shard of a dataset."""

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from audioprobe import torch_env  # before torch is imported

torch_env.apply()
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from audioprobe import __version__, manifest
from audioprobe.features.families import layer_names, load_encoder, read_card
from audioprobe.features.extract import extract
from audioprobe.joblog import to_file
from audioprobe.settings import ExtractionSettings

to_file(snakemake.log[0])
# Settings that change the stored features come as params (a change re-extracts); runtime
# settings are read from the config here, so that changing them re-extracts nothing.
settings = ExtractionSettings.from_config(
    snakemake.config["extraction"],
    **snakemake.params.stored,
    pooling=snakemake.params.pooling,
    shard_size=snakemake.params.shard_size,
)
workers, threads = settings.processes(
    snakemake.threads, on_gpu=settings.device != "cpu" and torch.cuda.is_available()
)
settings = replace(settings, num_workers=workers)
torch.set_num_threads(threads)
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
        "waveform_normalized": encoder.normalizes_waveform,
        "layer_names": layer_names(card, encoder),
        "model_card": json.dumps(card, sort_keys=True),
    },
    settings=settings,
)
# whole or not at all: a job killed while writing must leave no table that looks complete
# (Snakemake's incomplete marks do not reach the temp() outputs of jobs after a checkpoint)
partial = Path(snakemake.output.rejected + ".partial")
rejected.to_csv(partial, index=False)
os.replace(partial, snakemake.output.rejected)
