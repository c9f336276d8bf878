"""Fetch (or build) a model's weights on the submit host and write its card."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from audioprobe.features.families import fetch
from audioprobe.joblog import to_file

to_file(snakemake.log[0])
out = Path(snakemake.output.card)
card = fetch(snakemake.wildcards.model, snakemake.params.spec, out.parent)
out.write_text(json.dumps(card, indent=2))
