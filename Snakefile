from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/datasets.smk"
include: "rules/features.smk"
include: "rules/probes.smk"
include: "rules/tables.smk"
include: "rules/report.smk"


# Short jobs run by Snakemake itself, on the submit host under a cluster executor: the
# downloads and model cards (which need the internet), the manifests (the planning already
# reads every dataset root's file states there) and the tables.
localrules:
    all,
    demo_dataset,
    download_dataset,
    manifest,
    fetch_model,
    summary,
    comparisons,
    label_efficiency,
    supplement,


STORES = expand(rules.merge_features.output.store, dataset=DATASETS, model=MODELS)
set_aside_unreadable_stores(STORES)


rule all:
    default_target: True
    input:
        rules.summary.output.summary,
        rules.comparisons.output.comparisons,
        rules.report.output.html,
        rules.supplement.output,
        # the stores too: one set aside as unreadable (rules/common.smk) is built again
        STORES,
        # and every probe's files: one deleted is made again, not left missing
        [probe_files(pattern) for pattern in rules.probe.output],
