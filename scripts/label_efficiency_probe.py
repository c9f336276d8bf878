"""Train one probe on nested fractions of each round's training clips of one feature store."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from audioprobe import torch_env  # before torch is imported

torch_env.apply()

import torch

from audioprobe.features.store import open_store
from audioprobe.joblog import to_file
from audioprobe.probes.run import probe_fractions
from audioprobe.settings import ProtocolSettings
from audioprobe import manifest
from audioprobe.tables import selection_metric

to_file(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
runs, predictions = probe_fractions(
    open_store(snakemake.input.store),
    snakemake.wildcards.probe,
    snakemake.params.spec,
    ProtocolSettings.from_config(snakemake.params.protocol),
    snakemake.params.fractions,
    metric=selection_metric(
        snakemake.params.selection, manifest.read(snakemake.input.manifest)
    ),
)
runs.insert(0, "model", snakemake.wildcards.model)
runs.insert(0, "dataset", snakemake.wildcards.dataset)
runs.to_csv(snakemake.output.runs, index=False)
predictions.to_csv(snakemake.output.predictions, index=False)
