rule probe:
    input:
        store=rules.merge_features.output.store,
        card=rules.fetch_model.output.card,
        manifest=rules.manifest.output.manifest,
    output:
        runs="results/probes/{dataset}/{model}/{probe}.csv",
        predictions="results/predictions/{dataset}/{model}/{probe}.csv",
        probes="results/probes/{dataset}/{model}/{probe}.pt",
        curves="results/probes/{dataset}/{model}/{probe}.curves.csv",
        layer_weights="results/probes/{dataset}/{model}/{probe}.layer_weights.csv",
    log:
        "logs/probe/{dataset}/{model}/{probe}.log",
    benchmark:
        "benchmarks/probe/{dataset}/{model}/{probe}.tsv"
    conda:
        "../envs/audioprobe.yaml"
    threads: 2
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=120,
    params:
        spec=lookup(dpath="probes/{probe}", within=config),
        protocol=config["protocol"],
        selection=lookup(dpath="datasets/{dataset}/selection", within=config),
    script:
        "../scripts/probe.py"


rule label_efficiency_probe:
    input:
        store=rules.merge_features.output.store,
        manifest=rules.manifest.output.manifest,
    output:
        runs="results/label_efficiency/runs/{dataset}/{model}/{probe}.csv",
        predictions="results/label_efficiency/predictions/{dataset}/{model}/{probe}.csv",
    log:
        "logs/label_efficiency_probe/{dataset}/{model}/{probe}.log",
    benchmark:
        "benchmarks/label_efficiency_probe/{dataset}/{model}/{probe}.tsv"
    conda:
        "../envs/audioprobe.yaml"
    threads: 2
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=120,
    params:
        spec=lookup(dpath="probes/{probe}", within=config),
        protocol=config["protocol"],
        selection=lookup(dpath="datasets/{dataset}/selection", within=config),
        fractions=sorted(config["label_efficiency"]["fractions"]),
    script:
        "../scripts/label_efficiency_probe.py"
