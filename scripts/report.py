"""Render the HTML report from report/report.py (Quarto when installed, else nbconvert)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from audioprobe.joblog import to_file
from audioprobe.report import render

to_file(snakemake.log[0])


def as_list(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


paths = {
    name: as_list(snakemake.input[name])
    for name in ("predictions", "stores", "rejected", "manifests", "cards", "benchmarks")
} | {
    "summary": snakemake.input.summary,
    "layers": snakemake.input.layers,
    "references": snakemake.input.references,
    "figures": snakemake.output.figures,
}
render(Path(snakemake.input.source), Path(snakemake.output.html), paths, snakemake.params.config)
