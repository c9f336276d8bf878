"""Debiased linear CKA between every pair of layers of one dataset's feature stores."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from audioprobe import torch_env  # before torch is imported

torch_env.apply()

import torch

from audioprobe.features.store import open_store
from audioprobe.joblog import to_file
from audioprobe.layer_similarity import layer_similarity

to_file(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
stores = {
    model: open_store(path)
    for model, path in zip(snakemake.params.models, snakemake.input.stores)
}
table = layer_similarity(stores)
table.insert(0, "dataset", snakemake.wildcards.dataset)
table.to_csv(snakemake.output.table, index=False, float_format="%.6g")
