import csv
import math
from pathlib import Path

from snakemake.utils import validate


def validate_config():
    """Validate the config against the schema; report the first error in one line."""
    try:
        validate(config, schema="../config.schema.yaml")
    except WorkflowError as error:
        detail = error.__context__  # the jsonschema ValidationError
        if not hasattr(detail, "absolute_path"):
            raise
        where = ".".join(str(p) for p in detail.absolute_path) or "(top level)"
        raise WorkflowError(f"config: {where}: {detail.message}") from None


validate_config()


DATASETS = list(config["datasets"])
MODELS = list(config["models"])
PROBES = list(config["probes"])
SHARD_SIZE = config["extraction"]["shard_size"]


wildcard_constraints:
    dataset=r"[A-Za-z0-9_-]+",
    model=r"[A-Za-z0-9_-]+",
    probe=r"[A-Za-z0-9_-]+",
    shard=r"\d+",


def check_dataset_roots():
    """Stop before any job when a dataset root is missing and nothing would create it."""
    for name, spec in config["datasets"].items():
        root = Path(spec["root"])
        downloads = spec.get("download") is not None
        if not (spec.get("synthetic") or downloads or root.exists()):
            raise WorkflowError(
                f"config: datasets.{name}.root does not exist: {root} "
                "(give the dataset's folder, or a download: {url: ...} to fetch it)"
            )


check_dataset_roots()


def dataset_root_input(wildcards):
    """What the manifest rule needs before it can read a dataset's root.

    A dataset with ``download:`` always waits for its download flag, whether or not its root
    exists yet: the download job fetches into a missing root (renamed into place only when
    complete) and just writes the flag over a root already in place. The manifest's input set
    thus stays the same before and after the download, so a finished download does not make
    Snakemake rerun the manifest and everything after it.
    """
    spec = lookup(dpath=f"datasets/{wildcards.dataset}", within=config)
    if spec.get("synthetic"):
        return spec["root"]
    if spec.get("download") is not None:
        return f"resources/datasets/{wildcards.dataset}.downloaded"
    return []


def model_needs_gpu(wildcards):
    """Neural encoders run on the GPU; the log-mel baseline does not."""
    family = lookup(dpath=f"models/{wildcards.model}/family", within=config)
    return 0 if family == "logmel" else 1


def extract_threads(wildcards):
    """CPUs of an extraction job (extraction.cpus): enough decoding workers to feed a GPU for
    neural encoders, a small allocation for the CPU-only log-mel baseline."""
    cpus = config["extraction"]["cpus"]
    return cpus["gpu"] if model_needs_gpu(wildcards) else cpus["cpu"]


def shard_count(dataset):
    """Number of extraction shards of a dataset, known once its manifest exists."""
    manifest_csv = checkpoints.manifest.get(dataset=dataset).output.manifest
    with open(manifest_csv) as rows:
        clips = sum(1 for _ in csv.reader(rows)) - 1
    return max(1, math.ceil(clips / SHARD_SIZE))


def feature_shards(wildcards):
    """The shard stores and rejected tables that merge into one dataset x model store."""
    shards = expand(
        "results/features/{dataset}/{model}.shards/{shard}",
        dataset=wildcards.dataset,
        model=wildcards.model,
        shard=range(shard_count(wildcards.dataset)),
    )
    return {
        "shards": [f"{shard}.h5" for shard in shards],
        "rejected": [f"{shard}.rejected.csv" for shard in shards],
    }


def all_probe_runs():
    return expand(
        "results/probes/{dataset}/{model}/{probe}.csv",
        dataset=DATASETS,
        model=MODELS,
        probe=PROBES,
    )


def all_predictions():
    return expand(
        "results/predictions/{dataset}/{model}/{probe}.csv",
        dataset=DATASETS,
        model=MODELS,
        probe=PROBES,
    )


def all_stores():
    return expand(
        "results/features/{dataset}/{model}.h5", dataset=DATASETS, model=MODELS
    )


def report_inputs(wildcards):
    """The report's inputs besides the tables: rejected clips, manifests, model cards, and
    the benchmark file of every job this workflow runs (run time and cost sections).
    """
    benchmarks = [
        *expand("benchmarks/manifests/{dataset}.tsv", dataset=DATASETS),
        *expand("benchmarks/models/{model}.tsv", model=MODELS),
        *(
            f"benchmarks/features/{dataset}/{model}/{shard}.tsv"
            for dataset in DATASETS
            for model in MODELS
            for shard in range(shard_count(dataset))
        ),
        *expand(
            "benchmarks/merge/{dataset}/{model}.tsv", dataset=DATASETS, model=MODELS
        ),
        *expand(
            "benchmarks/probes/{dataset}/{model}/{probe}.tsv",
            dataset=DATASETS,
            model=MODELS,
            probe=PROBES,
        ),
        "benchmarks/tables/summary.tsv",
    ]
    for name, spec in config["datasets"].items():
        if spec.get("synthetic"):
            benchmarks.append("benchmarks/datasets/demo.tsv")
        elif spec.get("download") is not None:
            benchmarks.append(f"benchmarks/datasets/{name}.download.tsv")
    return {
        "rejected": expand(
            "results/features/{dataset}/{model}.rejected.csv",
            dataset=DATASETS,
            model=MODELS,
        ),
        "manifests": expand("results/manifests/{dataset}.csv", dataset=DATASETS),
        "cards": expand("resources/models/{model}.json", model=MODELS),
        "benchmarks": list(dict.fromkeys(benchmarks)),
    }
