import csv
import functools
import hashlib
import importlib.util
import itertools
import json
import math
import os
import re
import sys
from pathlib import Path

import yaml
from snakemake.logging import logger
from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)  # the audioprobe package beside the Snakefile
from audioprobe.datasets import check_options
from audioprobe.errors import AudioprobeError, OptionError
from audioprobe.features.families import (
    FAMILIES,
    check as check_model,
    is_single_layer,
    needs_gpu,
    spec_of,
)
from audioprobe.manifest import (
    file_states,
    fingerprint as manifest_fingerprint,
    read as read_manifest,
)


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


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise WorkflowError(
                    f"config: {key}: given twice in one mapping "
                    f"({Path(node.start_mark.name).name}, line {key_node.start_mark.line + 1}); "
                    "the first would be dropped without a word"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def check_duplicate_keys():
    """Stop when a config file gives a key twice in one mapping (e.g. two ``models:`` blocks)."""
    for path in dict.fromkeys(map(str, workflow.configfiles)):
        if Path(path).is_file():
            with open(path) as text:
                yaml.load(text, Loader=UniqueKeyLoader)


PROBE_OPTIONS = ("hidden", "dropout", "batch_norm")


def check_probe_options():
    """Stop when a linear or weighted probe is given mlp options it would ignore (run before
    the schema fills in their defaults)."""
    probes = config.get("probes")
    for name, spec in (probes.items() if isinstance(probes, dict) else ()):
        if isinstance(spec, dict) and spec.get("kind") in ("linear", "weighted"):
            for key in PROBE_OPTIONS:
                if key in spec:
                    raise WorkflowError(
                        f"config: probes.{name}.{key}: only an mlp probe takes {key}; a "
                        f"{spec['kind']} probe would ignore it"
                    )


def read_model_entries():
    """Replace each model's config entry by the spec the families read (``spec_of``: the
    family's options beside the generic keys), checking the options against the family's
    before the schema fills in defaults. Family options at the top level (the earlier form)
    are still read, with a warning naming the keys to move under ``options``."""
    models = config.get("models")
    for name, entry in models.items() if isinstance(models, dict) else ():
        if not (
            isinstance(entry, dict)
            and entry.get("family") in FAMILIES
            and isinstance(entry.get("options", {}), dict)
        ):
            continue  # the schema names what is wrong
        try:
            spec, top = spec_of(entry)
        except OptionError as error:
            raise WorkflowError(f"config: models.{name}: {error}") from None
        if top:
            logger.warning(
                f"deprecated: models.{name}: {', '.join(top)} at the top level; move "
                f"{'it' if len(top) == 1 else 'them'} under models.{name}.options"
            )
        models[name] = spec


def canonical(value):
    """``value`` with the keys of every mapping in it sorted: a param's value, and so whether
    Snakemake sees it changed, then depends on the config's values and never on the order of
    its keys (a config rewritten by a YAML dumper re-runs nothing)."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


check_duplicate_keys()
check_probe_options()
read_model_entries()
validate_config()
# Sorted in place once, defaults filled in: the rules hand jobs entries of it (``lookup``).
config.update(canonical(config))


# In name order: what the jobs get (and the report shows) never depends on the config's key order.
DATASETS = sorted(config["datasets"])
MODELS = sorted(config["models"])
PROBES = sorted(config["probes"])
SHARD_SIZE = config["extraction"]["shard_size"]


def label_efficiency_probes():
    """The probes trained on fractions of the training clips: those named under
    label_efficiency.probes, by default every linear probe."""
    named = config["label_efficiency"]["probes"]
    if named is None:
        return [p for p in PROBES if config["probes"][p]["kind"] == "linear"]
    unknown = sorted(set(named) - set(PROBES))
    if unknown:
        raise WorkflowError(
            f"config: label_efficiency.probes: {', '.join(unknown)} is not a probe "
            f"(probes: {', '.join(PROBES)})"
        )
    return sorted(set(named))


LABEL_EFFICIENCY_PROBES = label_efficiency_probes()


def probe_runs(probes):
    """(model, probe) of every probe job of ``probes``: every model with each of them, but a
    weighted probe on a model whose family has a single layer (log-mel), where a learned mix
    of one layer would be the linear probe again."""
    return [
        (model, probe)
        for model in MODELS
        for probe in probes
        if not (
            config["probes"][probe]["kind"] == "weighted"
            and is_single_layer(config["models"][model])
        )
    ]


PROBE_RUNS = probe_runs(PROBES)
LABEL_EFFICIENCY_RUNS = probe_runs(LABEL_EFFICIENCY_PROBES)


def probe_records(pattern, runs=PROBE_RUNS):
    """``pattern`` for every dataset and (model, probe) of ``runs``: one record each, with
    its keys and the file they name."""
    return [
        {
            "dataset": dataset,
            "model": model,
            "probe": probe,
            "path": expand(str(pattern), dataset=dataset, model=model, probe=probe)[0],
        }
        for dataset in DATASETS
        for model, probe in runs
    ]


def probe_files(pattern, runs=PROBE_RUNS):
    """The files of :func:`probe_records`."""
    return [record["path"] for record in probe_records(pattern, runs)]


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


def dataset_source_stamp(name):
    """A file whose modification time tells Snakemake that dataset ``name`` changed since its
    manifest was read (an input of the manifest rule, so a newer one re-runs it).

    The manifest job records the fingerprint of what it read (``manifest.fingerprint``: the
    CSV or the root's files, and the audio files it lists) in the notes; here, before any job,
    the data's fingerprint now is compared with it and the stamp rewritten when they differ. A
    stamp, not a param, because a root a job downloads or generates only exists after the
    workflow has been planned.
    """
    stamp = Path(f"resources/datasets/{name}.source")
    notes = Path(f"results/manifests/{name}.notes.json")
    manifest_csv = Path(f"results/manifests/{name}.csv")
    recorded = None
    if notes.is_file() and manifest_csv.is_file():
        recorded = json.loads(notes.read_text()).get("fingerprint")
    if recorded is not None:
        listed = read_manifest(manifest_csv)["path"]
        now = manifest_fingerprint(config["datasets"][name]["root"], listed)
        if now != recorded:
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.write_text(f"{now}\n")
    if not stamp.exists():  # nothing known to have changed: older than any manifest
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(f"{recorded or ''}\n")
        os.utime(stamp, (0, 0))
    return str(stamp)


DATASET_SOURCES = {name: dataset_source_stamp(name) for name in DATASETS}


def user_code_source(spec):
    """The source file of a ``hear`` or ``custom`` model's module (already imported by
    ``check_models``), or None."""
    name = spec.get("module") or spec.get("class", "").partition(":")[0]
    if spec["family"] not in ("hear", "custom") or not name:
        return None
    found = importlib.util.find_spec(name)
    return Path(found.origin) if found and found.has_location else None


def checkpoint_state(wildcards):
    """Name, size and modification time of the files of a model's local checkpoint or weights
    (a file or a folder) and of its own module's source (families hear, custom), cheap to read
    before every run: a param of fetch_model, so weights or code changed in place are fetched
    (hashed) anew and everything after re-runs. "" for a hub id or none."""
    spec = config["models"][wildcards.model]
    code = user_code_source(spec)
    state = []
    if code:
        stat = code.stat()
        state.append(f"code:{code}:{stat.st_size}:{stat.st_mtime_ns}")
    for key in ("checkpoint", "weights"):
        path = Path(spec[key]).expanduser() if spec.get(key) else None
        if path is None or not path.exists():
            continue
        files = (
            [path]
            if path.is_file()
            else sorted(f for f in path.rglob("*") if f.is_file())
        )
        state += [
            f"{key}:{f.relative_to(path) if f != path else f.name}:"
            f"{f.stat().st_size}:{f.stat().st_mtime_ns}"
            for f in files
        ]
    return hashlib.sha256("\n".join(state).encode()).hexdigest()[:16] if state else ""


def set_aside_unreadable_stores(stores):
    """Move a finished feature store of ``stores`` that no longer reads (truncated,
    overwritten, a disk error) to ``{store}.unreadable``, so that it is built again instead of
    failing every probe job after it, and nothing is deleted (planning, a dry run included, is
    where this is known). A store is renamed into place only when complete, so one that does
    not open was damaged since.
    """
    stores = [Path(store) for store in stores if Path(store).is_file()]
    if not stores:
        return
    import h5py  # only where there are stores to read: planning a fresh run needs none

    for store in stores:
        try:
            with h5py.File(store, "r") as f:
                readable = bool(f.attrs.get("complete")) and "features" in f
                reason = "not marked complete"
        except OSError as error:
            readable, reason = False, " ".join(str(error).split())
        if not readable:
            aside = store.with_name(f"{store.name}.unreadable")
            logger.warning(
                f"{store} is unreadable ({reason}): moved to {aside}, to be built again "
                "(delete it once you no longer need it)"
            )
            store.replace(aside)


def model_needs_gpu(wildcards):
    """Whether the model's family extracts on a GPU (neural encoders) or not (log-mel)."""
    return int(needs_gpu(lookup(dpath=f"models/{wildcards.model}", within=config)))


STORED_EXTRACTION_SETTINGS = (
    "bad_audio",
    "max_clip_seconds",
    "max_seconds",
    "precision",
)


def stored_extraction_settings():
    """The extraction settings that change the stored features: a change reruns extraction.

    The model's own spec reaches the job through its card, pooling per model as a param of its
    own. The other (runtime) settings only change how fast the same features come: extraction
    jobs read them from the config, so a change reruns nothing.
    """
    return {key: config["extraction"][key] for key in STORED_EXTRACTION_SETTINGS}


def report_config():
    """What the report reads of the config: every section but the extraction's runtime
    settings, which change how fast the features come and nothing the report shows."""
    sections = (
        "datasets",
        "models",
        "probes",
        "protocol",
        "label_efficiency",
        "report",
    )
    extraction = {
        key: config["extraction"][key]
        for key in (*STORED_EXTRACTION_SETTINGS, "pooling", "shard_size")
    }
    return {key: config.get(key, {}) for key in sections} | {"extraction": extraction}


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


@functools.lru_cache
def listed_audio_state(manifest_csv, modified):
    """A hash of the path, size and modification time of every audio file a manifest (as
    written at ``modified``) lists."""
    with open(manifest_csv) as rows:
        paths = {row["path"] for row in csv.DictReader(rows)}
    return hashlib.sha256("".join(file_states(paths)).encode()).hexdigest()[:16]


def audio_state(wildcards):
    """What a dataset's audio files are now: a param of extract_shard, so an audio file
    overwritten or touched in place re-extracts the dataset (the manifest job then writes the
    same rows, which Snakemake does not count as a change); other files of its root do not.
    """
    manifest_csv = checkpoints.manifest.get(dataset=wildcards.dataset).output.manifest
    return listed_audio_state(manifest_csv, os.stat(manifest_csv).st_mtime_ns)


def feature_shards(wildcards):
    """The shard stores and rejected tables that merge into one dataset x model store."""
    shards = rules.extract_shard.output
    values = {
        "dataset": wildcards.dataset,
        "model": wildcards.model,
        "shard": range(shard_count(wildcards.dataset)),
    }
    return {
        "shards": expand(shards.store, **values),
        "rejected": expand(shards.rejected, **values),
    }


def wildcard_values(name, chosen):
    """The values wildcard ``name`` takes in this config (a dataset's shards: once ``chosen``
    names the dataset)."""
    if name == "shard":
        return range(shard_count(chosen["dataset"]))
    return {"dataset": DATASETS, "model": MODELS, "probe": PROBES}[name]


def label_efficiency_files(kind):
    """The fraction ``kind`` (runs or predictions) of every dataset, model and
    label-efficiency probe (none when every fraction is 1: the probe jobs have those).
    """
    if all(f >= 1 for f in config["label_efficiency"]["fractions"]):
        return []
    return probe_files(
        getattr(rules.label_efficiency_probe.output, kind), LABEL_EFFICIENCY_RUNS
    )


def label_efficiency_full(kind):
    """The probe jobs' own ``kind`` (runs or predictions: fraction 1) of the label-efficiency
    probes."""
    return probe_files(getattr(rules.probe.output, kind), LABEL_EFFICIENCY_RUNS)


def label_efficiency_keys():
    """The label-efficiency table's predictions (the probe jobs' own, fraction 1, and the
    fraction jobs') and manifests, keyed by dataset, model and probe (in records)."""
    fractions = (
        []
        if all(f >= 1 for f in config["label_efficiency"]["fractions"])
        else LABEL_EFFICIENCY_RUNS
    )
    return {
        "predictions": probe_records(
            rules.probe.output.predictions, LABEL_EFFICIENCY_RUNS
        ),
        "fraction_predictions": probe_records(
            rules.label_efficiency_probe.output.predictions, fractions
        ),
        "manifests": keyed(rules.manifest.output.manifest, dataset=DATASETS),
    }


def combinations(names, chosen=None):
    """Every combination of values of the wildcards ``names``, in order (after ``chosen``)."""
    chosen = chosen or {}
    if not names:
        yield chosen
        return
    for value in wildcard_values(names[0], chosen):
        yield from combinations(names[1:], chosen | {names[0]: value})


def workflow_jobs():
    """Every job of the rules with a benchmark but the report, in pipeline order (that of the
    rules, then of their wildcards' values), each with its rule, wildcards, benchmark file and
    log file. A rule added with a benchmark is listed without more ado. A job this config does
    not run (no dataset to download) leaves no benchmark file, and the report skips it.
    """
    jobs = []
    for each in workflow.rules:
        if not each.benchmark or each.name == "report":
            continue
        proxy = getattr(rules, each.name)  # its patterns as written
        benchmark, log = str(proxy.benchmark), str(proxy.log[0])
        names = list(dict.fromkeys(re.findall(r"{(\w+)", benchmark)))
        for values in combinations(names):
            jobs.append(
                {
                    "rule": each.name,
                    "job": "/".join(str(v) for v in values.values()) or each.name,
                    "wildcards": {key: str(value) for key, value in values.items()},
                    "benchmark": expand(benchmark, **values)[0],
                    "log": expand(log, **values)[0],
                }
            )
    return jobs


def keyed(pattern, **values):
    """One record per combination of ``values`` (lists): the keys and the file they name."""
    names = list(values)
    return [
        dict(zip(names, combination))
        | {"path": expand(str(pattern), **dict(zip(names, combination)))[0]}
        for combination in itertools.product(*values.values())
    ]


def table_keys():
    """The predictions and manifests of the summary and comparisons, keyed by dataset, model
    and probe (the inputs of the same names, in records)."""
    return {
        "predictions": probe_records(rules.probe.output.predictions),
        "manifests": keyed(rules.manifest.output.manifest, dataset=DATASETS),
    }


def report_files(wildcards):
    """The report's inputs keyed by dataset, model and probe (and every job by rule), taken
    from the rules that write them.

    Manifest notes are optional: a dataset adapter may write none.
    """
    merged = rules.merge_features.output
    manifest = rules.manifest.output
    notes = getattr(manifest, "notes", None) or "results/manifests/{dataset}.notes.json"
    return {
        "predictions": probe_records(rules.probe.output.predictions),
        "curves": probe_records(rules.probe.output.curves),
        "layer_weights": probe_records(rules.probe.output.layer_weights),
        "stores": keyed(merged.store, dataset=DATASETS, model=MODELS),
        "similarity": keyed(rules.layer_similarity.output.table, dataset=DATASETS),
        "rejected": keyed(merged.rejected, dataset=DATASETS, model=MODELS),
        "manifests": keyed(manifest.manifest, dataset=DATASETS),
        "notes": keyed(notes, dataset=DATASETS),
        "cards": keyed(rules.fetch_model.output.card, model=MODELS),
        "jobs": workflow_jobs(),
    }


def report_inputs(wildcards):
    """The files of :func:`report_files` the report waits for: manifest notes only when the
    manifest rule writes them. Every job is upstream of the report, so the benchmarks and
    logs of the jobs that ran are there when it runs; it reads them without waiting for them.
    """
    files = report_files(wildcards)
    inputs = {
        name: [record["path"] for record in files[name]]
        for name in (
            "predictions",
            "curves",
            "layer_weights",
            "similarity",
            "stores",
            "rejected",
            "manifests",
            "cards",
        )
    }
    if hasattr(rules.manifest.output, "notes"):
        inputs["notes"] = [record["path"] for record in files["notes"]]
    return inputs
