from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/datasets.smk"
include: "rules/features.smk"
include: "rules/probes.smk"
include: "rules/tables.smk"
include: "rules/report.smk"


localrules:
    all,
    demo_dataset,
    download_dataset,
    fetch_model,
    summary,
    comparisons,
    label_efficiency,
    supplement,


rule all:
    default_target: True
    input:
        "results/tables/summary.csv",
        "results/tables/comparisons.csv",
        "results/report/report.html",
        rules.supplement.output,
        # the stores too: one removed as unreadable (rules/common.smk) is built again
        all_stores(),
