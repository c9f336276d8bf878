rule fetch_model:
    output:
        card="resources/models/{model}.json",
    log:
        "logs/models/{model}.log",
    benchmark:
        "benchmarks/models/{model}.tsv"
    conda:
        "../envs/audioprobe.yaml"
    params:
        spec=lambda wildcards: lookup(dpath=f"models/{wildcards.model}", within=config),
    script:
        "../scripts/fetch_model.py"


rule extract_shard:
    input:
        manifest="results/manifests/{dataset}.csv",
        card="resources/models/{model}.json",
    output:
        store=temp("results/features/{dataset}/{model}.shards/{shard}.h5"),
        rejected=temp("results/features/{dataset}/{model}.shards/{shard}.rejected.csv"),
    log:
        "logs/features/{dataset}/{model}.shards/{shard}.log",
    benchmark:
        "benchmarks/features/{dataset}/{model}/{shard}.tsv"
    conda:
        "../envs/audioprobe.yaml"
    threads: extract_threads
    resources:
        gpu=model_needs_gpu,
        mem_mb=8000,
        runtime=240,
    params:
        extraction=config["extraction"],
        shard_size=SHARD_SIZE,
        pooling=lambda wildcards: lookup(
            dpath=f"models/{wildcards.model}/pooling",
            within=config,
            default=config["extraction"]["pooling"],
        ),
    script:
        "../scripts/extract.py"


rule merge_features:
    input:
        unpack(feature_shards),
    output:
        store="results/features/{dataset}/{model}.h5",
        rejected="results/features/{dataset}/{model}.rejected.csv",
    log:
        "logs/features/{dataset}/{model}.merge.log",
    benchmark:
        "benchmarks/merge/{dataset}/{model}.tsv"
    conda:
        "../envs/audioprobe.yaml"
    resources:
        mem_mb=8000,
        runtime=60,
    script:
        "../scripts/merge_features.py"
