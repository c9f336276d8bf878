"""The config is validated before any job runs, with one clear message naming the problem: one
line that starts with ``config:`` and names the key, never a Python traceback."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest
import yaml

from audioprobe import config_docs
from audioprobe.settings import ExtractionSettings, ProtocolSettings, schema, section
from tests.conftest import REPO, copy_workflow, snakemake


@pytest.fixture()
def workflow(tmp_path):
    return copy_workflow(tmp_path)


def dry_run_with(workflow, config: dict):
    path = workflow / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake(workflow, "-n", "--cores", "1", "--configfile", str(path), check=False)
    assert result.returncode != 0
    return result.stdout + result.stderr


def config_error(output: str) -> str:
    """The one line of ``output`` that tells the user what is wrong with the config."""
    lines = [line for line in output.splitlines() if line.startswith("config:")]
    assert len(lines) == 1, output
    assert "Traceback" not in output, output
    return lines[0]


def base() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_shipped_config_dry_runs(workflow):
    result = snakemake(workflow, "-n", "--cores", "1")
    # extraction jobs are planned once the manifest checkpoint has run
    assert re.search(r"^manifest\s+1$", result.stdout, re.M)
    assert re.search(r"^fetch_model\s+3$", result.stdout, re.M)


def test_unknown_key_is_named(workflow):
    config = base()
    config["protocol"]["sedes"] = 3
    line = config_error(dry_run_with(workflow, config))
    assert line == "config: protocol: Additional properties are not allowed ('sedes' was unexpected)"


def test_wrong_type_is_named(workflow):
    config = base()
    config["protocol"]["seeds"] = "three"
    line = config_error(dry_run_with(workflow, config))
    assert line == "config: protocol.seeds: 'three' is not of type 'integer'"


def test_missing_dataset_root_is_named(workflow):
    config = base()
    config["datasets"]["esc"] = {"adapter": "esc50", "root": "/nowhere/ESC-50-master"}
    line = config_error(dry_run_with(workflow, config))
    assert line.startswith("config: datasets.esc.root does not exist: /nowhere/ESC-50-master ")


def test_unknown_adapter_is_named(workflow):
    config = base()
    config["datasets"]["demo"]["adapter"] = "esc-50"
    line = config_error(dry_run_with(workflow, config))
    assert line.startswith("config: datasets.demo.adapter: 'esc-50' is not one of ['custom', ")


@pytest.mark.parametrize("options, message", [
    ({"subsett": "esc10"}, "config: datasets.esc.options: unknown key 'subsett' for adapter "
                           "esc50; allowed keys: subset"),
    ({"subset": "esc-10"}, "config: datasets.esc.options: subset: 'esc-10' is not allowed for "
                           "adapter esc50; allowed: 'esc50', 'esc10'"),
])
def test_bad_adapter_option_is_named_before_any_job(workflow, options, message):
    (workflow / "esc").mkdir()
    config = base()
    config["datasets"]["esc"] = {"adapter": "esc50", "root": "esc", "options": options}
    assert config_error(dry_run_with(workflow, config)) == message


def test_every_schema_key_is_described():
    """Each key of config.schema.yaml says what it does: the configuration reference is made from it."""
    undocumented = [key for key, spec in config_docs.properties(schema()) if not spec.get("description")]
    assert undocumented == []
    assert len(list(config_docs.properties(schema()))) > 40


def test_configuration_reference_matches_the_schema():
    """config/README.md's table is the one generated from the schema (python -m audioprobe.config_docs)."""
    table = config_docs.written((REPO / "config" / "README.md").read_text())
    assert table == config_docs.section()
    assert "| `probes.<name>.hidden` | list of integer ≥ 1, ≤ 65536 | `[256, 256]` |" in table


def test_settings_have_one_field_per_schema_key():
    """A new extraction or protocol option is one schema entry and one settings field; every
    default comes from the schema."""
    for settings in (ExtractionSettings, ProtocolSettings):
        schema_keys = set(section(settings.SECTION)["properties"])
        assert {f.name for f in fields(settings)} == schema_keys
    extraction = ExtractionSettings.from_config({"batch_size": 4}, pooling="max")
    assert (extraction.batch_size, extraction.pooling, extraction.max_seconds) == (4, "max", 30)
    assert extraction.cpus == {"gpu": 8, "cpu": 2}
    protocol = ProtocolSettings.from_config()
    assert (protocol.seeds, protocol.learning_rates, protocol.patience) == (3, [0.001, 0.01], 5)


@pytest.mark.parametrize("cpus, on_gpu, workers, expected", [
    (8, True, "auto", (7, 1)),  # GPU: every CPU but one decodes
    (1, True, "auto", (1, 1)),
    (2, False, "auto", (0, 2)),  # CPU: no worker to share the model's two cores
    (4, False, "auto", (1, 3)),
    (8, False, 2, (2, 6)),  # a number is used as given; torch gets the rest
    (2, False, 4, (4, 1)),
])
def test_extraction_processes_split_the_jobs_cpus(cpus, on_gpu, workers, expected):
    settings = ExtractionSettings.from_config(num_workers=workers)
    assert settings.processes(cpus, on_gpu) == expected


def test_a_model_in_the_earlier_flat_form_re_runs_nothing_and_is_named_to_move(workflow):
    """fetch_model's card made from ``options: {capacity, hop_ms}`` is up to date for the same
    model written the earlier way (the family's options at the top level): the params are the
    same. The earlier form is read with a warning naming the keys to move."""
    config = base()
    config["models"] = {"crepe_tiny": config["models"]["crepe_tiny"]}
    assert config["models"]["crepe_tiny"] == {"family": "crepe",
                                              "options": {"capacity": "tiny", "hop_ms": 50}}
    (workflow / "new.yaml").write_text(yaml.safe_dump(config))
    card = "resources/models/crepe_tiny.json"
    snakemake(workflow, card, "--cores", "1", "--configfile", "new.yaml",
              "--replace-workflow-config")
    config["models"]["crepe_tiny"] = {"family": "crepe", "hop_ms": 50, "capacity": "tiny"}
    (workflow / "flat.yaml").write_text(yaml.safe_dump(config))
    again = snakemake(workflow, card, "-n", "--cores", "1", "--configfile", "flat.yaml",
                       "--replace-workflow-config")
    output = again.stdout + again.stderr
    assert "Nothing to be done" in output, output
    assert ("deprecated: models.crepe_tiny: capacity, hop_ms at the top level; move them under "
            "models.crepe_tiny.options") in output


def test_a_model_option_the_family_does_not_take_is_named_before_any_job(workflow):
    config = base()
    config["models"]["crepe_tiny"]["options"]["n_mels"] = 64
    line = config_error(dry_run_with(workflow, config))
    assert line == ("config: models.crepe_tiny: options: unknown key 'n_mels' for family crepe; "
                    "allowed keys: capacity, hop_ms")
