rule fetch_model:
    output:
        card="resources/models/{model}.json",
    log:
        "logs/fetch_model/{model}.log",
    benchmark:
        "benchmarks/fetch_model/{model}.tsv"
    conda:
        "../envs/audioprobe.yaml"
    params:
        spec=lambda wildcards: config_of(f"models/{wildcards.model}"),
        checkpoint=checkpoint_state,
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
        "logs/extract_shard/{dataset}/{model}/{shard}.log",
    benchmark:
        "benchmarks/extract_shard/{dataset}/{model}/{shard}.tsv"
    conda:
        "../envs/audioprobe.yaml"
    threads: extract_threads
    resources:
        gpu=model_needs_gpu,
        mem_mb=8000,
        runtime=240,
    params:
        # only settings that change what is stored: a change re-extracts; the job reads the
        # runtime settings from the config (stored_extraction_settings)
        stored=stored_extraction_settings(),
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
        "logs/merge_features/{dataset}/{model}.log",
    benchmark:
        "benchmarks/merge_features/{dataset}/{model}.tsv"
    conda:
        "../envs/audioprobe.yaml"
    resources:
        mem_mb=8000,
        runtime=60,
    script:
        "../scripts/merge_features.py"
