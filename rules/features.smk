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
        spec=lookup(dpath="models/{model}", within=config),
        checkpoint=checkpoint_state,
    script:
        "../scripts/fetch_model.py"


rule extract_shard:
    input:
        manifest=rules.manifest.output.manifest,
        card=rules.fetch_model.output.card,
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
    # what a job needs on any executor, here only (profiles hold site settings): a retry
    # (the SLURM profile's retries) asks for twice the memory
    resources:
        gpu=model_needs_gpu,
        mem_mb=lambda wildcards, attempt: 16000 * attempt,
        runtime=240,
    params:
        # only settings that change what is stored: a change re-extracts; the job reads the
        # runtime settings from the config (stored_extraction_settings)
        stored=stored_extraction_settings(),
        shard_size=SHARD_SIZE,
        audio=audio_state,
        pooling=lookup(
            dpath="models/{model}/pooling",
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
        # one layer of every shard in memory at a time
        mem_mb=lambda wildcards, attempt: 16000 * attempt,
        runtime=60,
    script:
        "../scripts/merge_features.py"
