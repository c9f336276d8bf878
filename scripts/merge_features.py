"""Merge a dataset's shard stores and rejected tables into one of each."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

import pandas as pd

from audioprobe.features.store import merge
from audioprobe.joblog import to_file

to_file(snakemake.log[0])
merge([Path(p) for p in snakemake.input.shards], Path(snakemake.output.store))
# Clip ids such as NA or nan stay text.
rejected = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in snakemake.input.rejected]
pd.concat(rejected, ignore_index=True).to_csv(snakemake.output.rejected, index=False)
