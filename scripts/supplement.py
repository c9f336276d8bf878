"""Write the supplement: the models x datasets matrix (CSV, LaTeX) and the BibTeX file."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from audioprobe import supplement
from audioprobe.joblog import to_file
from audioprobe.results import read_references
from audioprobe.tables import read_table

to_file(snakemake.log[0])
supplement.write(
    read_table(snakemake.input.summary),
    read_table(snakemake.input.comparisons),
    read_references(snakemake.input.references),
    snakemake.params.datasets,
    snakemake.output.csv,
    snakemake.output.latex,
    snakemake.output.bibtex,
)
