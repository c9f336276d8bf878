"""Train and score one probe on every layer of one feature store."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from audioprobe import torch_env  # before torch is imported

torch_env.apply()

import torch

from audioprobe import manifest
from audioprobe.errors import AudioprobeError
from audioprobe.features.families import read_card
from audioprobe.features.store import open_store
from audioprobe.joblog import to_file
from audioprobe.probes import saved
from audioprobe.probes.run import probe_all
from audioprobe.settings import ProtocolSettings
from audioprobe.tables import selection_metric

to_file(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
store = open_store(snakemake.input.store)
if store.meta.empty:
    raise AudioprobeError(f"{snakemake.input.store}: no usable clip, every clip was rejected "
                          "(the reasons are in the rejected table beside it)")
probed = probe_all(
    store,
    snakemake.wildcards.probe,
    snakemake.params.spec,
    ProtocolSettings.from_config(snakemake.params.protocol),
    metric=selection_metric(
        snakemake.params.selection, manifest.read(snakemake.input.manifest)
    ),
)
probed.runs.insert(0, "model", snakemake.wildcards.model)
probed.runs.insert(0, "dataset", snakemake.wildcards.dataset)
probed.runs.to_csv(snakemake.output.runs, index=False)
probed.predictions.to_csv(snakemake.output.predictions, index=False)
probed.curves.to_csv(snakemake.output.curves, index=False)
probed.layer_weights.to_csv(snakemake.output.layer_weights, index=False)
saved.write(
    snakemake.output.probes, probed.probes, read_card(snakemake.input.card), store.attrs
)
