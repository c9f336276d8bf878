"""Render the HTML report from the page source report/page.py (Quarto when installed, else
nbconvert), on the inputs the report rule keys by dataset, model, probe and rule."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from audioprobe.joblog import to_file
from audioprobe.rendering import render

to_file(snakemake.log[0])
files = dict(snakemake.params.files) | {
    name: snakemake.input[name]
    for name in (
        "summary",
        "layers",
        "comparisons",
        "runs",
        "label_efficiency",
        "references",
        "reference_models",
        "protocols",
    )
} | {"figures": snakemake.output.figures}
render(Path(snakemake.input.source), Path(snakemake.output.html), files, snakemake.params.config)
