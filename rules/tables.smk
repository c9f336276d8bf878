rule summary:
    input:
        runs=probe_files(rules.probe.output.runs),
        predictions=probe_files(rules.probe.output.predictions),
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


rule label_efficiency:
    input:
        runs=label_efficiency_full("runs"),
        predictions=label_efficiency_full("predictions"),
        fraction_runs=label_efficiency_files("runs"),
        fraction_predictions=label_efficiency_files("predictions"),
        manifests=expand(rules.manifest.output.manifest, dataset=DATASETS),
    output:
        table="results/tables/label_efficiency.csv",
    log:
        "logs/label_efficiency/label_efficiency.log",
    benchmark:
        "benchmarks/label_efficiency/label_efficiency.tsv"
    conda:
        "../envs/audioprobe.yaml"
    params:
        fractions=sorted(config["label_efficiency"]["fractions"]),
        keyed=label_efficiency_keys(),
    script:
        "../scripts/label_efficiency.py"


rule layer_similarity:
    input:
        stores=lambda wildcards: expand(
            rules.merge_features.output.store, dataset=wildcards.dataset, model=MODELS
        ),
    output:
        table="results/similarity/{dataset}.csv",
    log:
        "logs/layer_similarity/{dataset}.log",
    benchmark:
        "benchmarks/layer_similarity/{dataset}.tsv"
    conda:
        "../envs/audioprobe.yaml"
    threads: 2
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=120,
    params:
        models=MODELS,
    script:
        "../scripts/layer_similarity.py"


rule supplement:
    input:
        summary=rules.summary.output.summary,
        comparisons=rules.comparisons.output.comparisons,
        references="report/reference_results.csv",
    output:
        csv="results/supplement/models_datasets.csv",
        latex="results/supplement/models_datasets.tex",
        bibtex="results/supplement/references.bib",
    log:
        "logs/supplement/supplement.log",
    benchmark:
        "benchmarks/supplement/supplement.tsv"
    conda:
        "../envs/audioprobe.yaml"
    params:
        datasets=DATASETS,
    script:
        "../scripts/supplement.py"
