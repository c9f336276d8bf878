rule summary:
    input:
        runs=expand(
            rules.probe.output.runs, dataset=DATASETS, model=MODELS, probe=PROBES
        ),
        predictions=expand(
            rules.probe.output.predictions,
            dataset=DATASETS,
            model=MODELS,
            probe=PROBES,
        ),
        manifests=expand(rules.manifest.output.manifest, dataset=DATASETS),
    output:
        runs="results/tables/runs.csv",
        summary=report(
            "results/tables/summary.csv",
            caption="../report/summary.rst",
            category="Tables",
        ),
        layers=report(
            "results/tables/layers.csv",
            caption="../report/layers.rst",
            category="Tables",
        ),
    log:
        "logs/summary/summary.log",
    benchmark:
        "benchmarks/summary/summary.tsv"
    conda:
        "../envs/audioprobe.yaml"
    params:
        keyed=table_keys(),
    script:
        "../scripts/summary.py"


rule comparisons:
    input:
        runs=rules.summary.output.runs,
        summary=rules.summary.output.summary,
        predictions=rules.summary.input.predictions,
        manifests=rules.summary.input.manifests,
    output:
        comparisons=report(
            "results/tables/comparisons.csv",
            caption="../report/comparisons.rst",
            category="Tables",
        ),
    log:
        "logs/comparisons/comparisons.log",
    benchmark:
        "benchmarks/comparisons/comparisons.tsv"
    conda:
        "../envs/audioprobe.yaml"
    params:
        models=config["models"],
        keyed=table_keys(),
    script:
        "../scripts/comparisons.py"
