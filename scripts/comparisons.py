"""Paired comparisons of models on each dataset's headline metric, Holm-corrected per dataset."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from audioprobe.joblog import to_file
from audioprobe.tables import compare, read_inputs, read_table

to_file(snakemake.log[0])
runs, predictions, manifests = read_inputs(
    [snakemake.input.runs],
    snakemake.params.keyed["predictions"],
    snakemake.params.keyed["manifests"],
)
summary = read_table(snakemake.input.summary)
compare(
    runs, summary, snakemake.params.models, predictions, manifests["groups"]
).to_csv(snakemake.output.comparisons, index=False, float_format="%.6g")
