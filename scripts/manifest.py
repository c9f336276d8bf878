"""Read a dataset's published layout into a validated manifest and its notes."""

import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from audioprobe import manifest
from audioprobe.datasets import build_manifest
from audioprobe.datasets.download import unverified_notes
from audioprobe.joblog import to_file

to_file(snakemake.log[0])
log = logging.getLogger("manifest")
spec = snakemake.params.spec
options = spec.get("options", {})
table = build_manifest(spec["adapter"], spec["root"], options)
record = manifest.audit(table, snakemake.wildcards.dataset, spec["adapter"], options)
for flag in (p for p in snakemake.input if p.endswith(".downloaded")):  # download's flag
    record["notes"] += unverified_notes(json.loads(Path(flag).read_text()).get("files", []))
log.info("%s: %d clips; comparable with published results: %s", record["dataset"], len(table),
         record["comparable"])
for note in record["notes"]:
    log.info("note: %s", note)
for group, reason in record["leakage_exceptions"].items():
    log.info("leakage exception: group %s: %s", group, reason)
for side, counts in record["class_counts"].items():
    log.info("class counts (%s): %s", side, counts)
manifest.write(table, snakemake.output.manifest)
manifest.write_audit(record, snakemake.output.notes)
