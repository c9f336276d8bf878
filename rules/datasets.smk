rule demo_dataset:
    output:
        csv="resources/datasets/demo/demo.csv",
    log:
        "logs/demo_dataset/demo.log",
    benchmark:
        "benchmarks/demo_dataset/demo.tsv"
    conda:
        "../envs/audioprobe.yaml"
    script:
        "../scripts/demo_dataset.py"


rule download_dataset:
    output:
        flag="resources/datasets/{dataset}.downloaded",
    log:
        "logs/download_dataset/{dataset}.log",
    benchmark:
        "benchmarks/download_dataset/{dataset}.tsv"
    conda:
        "../envs/audioprobe.yaml"
    params:
        spec=lookup(dpath="datasets/{dataset}", within=config),
    script:
        "../scripts/download_dataset.py"


checkpoint manifest:
    input:
        root=dataset_root_input,
        source=lookup(dpath="{dataset}", within=DATASET_SOURCES),
    output:
        manifest="results/manifests/{dataset}.csv",
        notes="results/manifests/{dataset}.notes.json",
    log:
        "logs/manifest/{dataset}.log",
    benchmark:
        "benchmarks/manifest/{dataset}.tsv"
    conda:
        "../envs/audioprobe.yaml"
    params:
        spec=lookup(dpath="datasets/{dataset}", within=config),
    script:
        "../scripts/manifest.py"
