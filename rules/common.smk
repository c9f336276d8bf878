import csv
import itertools
import math
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)  # the audioprobe package beside the Snakefile
from audioprobe.datasets import check_options
from audioprobe.errors import AudioprobeError, OptionError
from audioprobe.features.families import check as check_model, needs_gpu


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


def check_adapter_options():
    """Stop before any job when a dataset's options are not ones its adapter takes."""
    for name, spec in config["datasets"].items():
        try:
            check_options(spec["adapter"], spec.get("options"))
        except OptionError as error:
            raise WorkflowError(f"config: datasets.{name}.options: {error}") from None


check_adapter_options()


def check_models():
    """Stop before any job when a model's own code cannot serve (family hear or custom: the
    module, class or options), in one line naming the model."""
    for name, spec in config["models"].items():
        try:
            check_model(name, spec)
        except AudioprobeError as error:
            raise WorkflowError(f"config: models.{name}: {error}") from None


check_models()


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
    """Whether the model's family extracts on a GPU (neural encoders) or not (log-mel)."""
    return int(needs_gpu(lookup(dpath=f"models/{wildcards.model}", within=config)))


def stored_extraction_settings():
    """The extraction settings that change the stored features: a change reruns extraction.

    The model's own spec reaches the job through its card, pooling per model as a param of its
    own. The other (runtime) settings only change how fast the same features come: extraction
    jobs read them from the config, so a change reruns nothing.
    """
    return {
        key: config["extraction"][key]
        for key in ("precision", "max_seconds", "max_clip_seconds", "bad_audio")
    }


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


def all_manifests():
    return expand("results/manifests/{dataset}.csv", dataset=DATASETS)


def all_stores():
    return expand(
        "results/features/{dataset}/{model}.h5", dataset=DATASETS, model=MODELS
    )


def job_record(rule, **wildcards):
    """One job of ``rule``: its wildcards, benchmark file and log file."""
    proxy = getattr(rules, rule)
    return {
        "rule": rule,
        "job": "/".join(str(v) for v in wildcards.values()) or rule,
        "benchmark": expand(str(proxy.benchmark), **wildcards)[0],
        "log": expand(str(proxy.log[0]), **wildcards)[0],
    }


# The rules whose jobs workflow_jobs lists; a rule with a benchmark missing here stops the run.
REPORTED_RULES = {
    "demo_dataset",
    "download_dataset",
    "manifest",
    "fetch_model",
    "extract_shard",
    "merge_features",
    "probe",
    "summary",
    "comparisons",
    "report",
}


def workflow_jobs():
    """Every job this workflow runs before the report, in pipeline order."""
    unlisted = sorted(
        each.name
        for each in workflow.rules
        if each.benchmark and each.name not in REPORTED_RULES
    )
    if unlisted:
        raise WorkflowError(
            f"report: the jobs of rule(s) {', '.join(unlisted)} are not listed "
            "(add them to workflow_jobs in rules/common.smk)"
        )
    jobs = []
    for name, spec in config["datasets"].items():
        if spec.get("synthetic"):
            jobs.append(job_record("demo_dataset"))
        elif spec.get("download") is not None:
            jobs.append(job_record("download_dataset", dataset=name))
    jobs += [job_record("manifest", dataset=d) for d in DATASETS]
    jobs += [job_record("fetch_model", model=m) for m in MODELS]
    jobs += [
        job_record("extract_shard", dataset=d, model=m, shard=s)
        for d in DATASETS
        for m in MODELS
        for s in range(shard_count(d))
    ]
    jobs += [
        job_record("merge_features", dataset=d, model=m)
        for d in DATASETS
        for m in MODELS
    ]
    jobs += [
        job_record("probe", dataset=d, model=m, probe=p)
        for d in DATASETS
        for m in MODELS
        for p in PROBES
    ]
    jobs.append(job_record("summary"))
    jobs.append(job_record("comparisons"))
    return list({job["benchmark"]: job for job in jobs}.values())


def keyed(pattern, **values):
    """One record per combination of ``values`` (lists): the keys and the file they name."""
    names = list(values)
    return [
        dict(zip(names, combination))
        | {"path": expand(str(pattern), **dict(zip(names, combination)))[0]}
        for combination in itertools.product(*values.values())
    ]


def report_files(wildcards):
    """The report's inputs keyed by dataset, model and probe (and every job by rule), taken
    from the rules that write them.

    Manifest notes are optional: a dataset adapter may write none.
    """
    merged = rules.merge_features.output
    manifest = rules.manifest.output
    notes = getattr(manifest, "notes", None) or "results/manifests/{dataset}.notes.json"
    return {
        "predictions": keyed(
            rules.probe.output.predictions, dataset=DATASETS, model=MODELS, probe=PROBES
        ),
        "stores": keyed(merged.store, dataset=DATASETS, model=MODELS),
        "rejected": keyed(merged.rejected, dataset=DATASETS, model=MODELS),
        "manifests": keyed(manifest.manifest, dataset=DATASETS),
        "notes": keyed(notes, dataset=DATASETS),
        "cards": keyed(rules.fetch_model.output.card, model=MODELS),
        "jobs": workflow_jobs(),
    }


def report_inputs(wildcards):
    """The files of :func:`report_files` the report waits for: manifest notes only when the
    manifest rule writes them; logs, which no rule outputs, are read when present."""
    files = report_files(wildcards)
    inputs = {
        name: [record["path"] for record in files[name]]
        for name in ("predictions", "stores", "rejected", "manifests", "cards")
    }
    if hasattr(rules.manifest.output, "notes"):
        inputs["notes"] = [record["path"] for record in files["notes"]]
    return inputs | {"benchmarks": [job["benchmark"] for job in files["jobs"]]}
