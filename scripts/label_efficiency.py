"""The label-efficiency table: each probe's score per fraction of the training clips."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

import pandas as pd

from audioprobe.joblog import to_file
from audioprobe.tables import LABEL_EFFICIENCY_COLUMNS, label_efficiency, read_inputs

to_file(snakemake.log[0])
fractions = snakemake.params.fractions
table = pd.DataFrame(columns=LABEL_EFFICIENCY_COLUMNS)
if snakemake.input.runs:
    keyed = snakemake.params.keyed
    full, full_predictions, manifests = read_inputs(
        snakemake.input.runs, keyed["predictions"], keyed["manifests"]
    )
    parts, part_predictions, _ = read_inputs(
        snakemake.input.fraction_runs, keyed["fraction_predictions"], []
    )
    runs = pd.concat([full.assign(fraction=1.0), parts], ignore_index=True)
    predictions = {case + (1.0,): p for case, p in full_predictions.items()} | {
        case + (f,): p[p["fraction"] == f]
        for case, p in part_predictions.items()
        for f in p["fraction"].unique()
    }
    table = label_efficiency(
        runs[runs["fraction"].isin(fractions)], **manifests, predictions=predictions
    )
table.to_csv(snakemake.output.table, index=False, float_format="%.6g")
