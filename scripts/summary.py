"""Combine every probe job's runs into the headline summary and the per-layer curves."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from audioprobe.joblog import to_file
from audioprobe.tables import layer_curves, read_inputs, summarize

to_file(snakemake.log[0])
runs, predictions, manifests = read_inputs(
    snakemake.input.runs,
    snakemake.params.keyed["predictions"],
    snakemake.params.keyed["manifests"],
)
runs.to_csv(snakemake.output.runs, index=False)
summarize(runs, **manifests, predictions=predictions).to_csv(
    snakemake.output.summary, index=False, float_format="%.6g"
)
layer_curves(runs).to_csv(snakemake.output.layers, index=False, float_format="%.6g")
