"""The config is validated before any job runs, with one clear message naming the problem."""

from __future__ import annotations

import re

import pytest
import yaml

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


def base() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_shipped_config_dry_runs(workflow):
    result = snakemake(workflow, "-n", "--cores", "1")
    # extraction jobs are planned once the manifest checkpoint has run
    assert re.search(r"^manifest\s+1$", result.stdout, re.M)
    assert re.search(r"^fetch_model\s+2$", result.stdout, re.M)


def test_unknown_key_is_named(workflow):
    config = base()
    config["protocol"]["sedes"] = 3
    output = dry_run_with(workflow, config)
    assert "sedes" in output


def test_wrong_type_is_named(workflow):
    config = base()
    config["protocol"]["seeds"] = "three"
    output = dry_run_with(workflow, config)
    assert "config: protocol.seeds: 'three' is not of type 'integer'" in output


def test_missing_dataset_root_is_named(workflow):
    config = base()
    config["datasets"]["esc"] = {"adapter": "esc50", "root": "/nowhere/ESC-50-master"}
    output = dry_run_with(workflow, config)
    assert "datasets.esc.root does not exist: /nowhere/ESC-50-master" in output


def test_unknown_adapter_is_named(workflow):
    config = base()
    config["datasets"]["demo"]["adapter"] = "esc-50"
    output = dry_run_with(workflow, config)
    assert "esc-50" in output


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
    output = dry_run_with(workflow, config)
    assert message in output
    assert "Traceback" not in output and "TypeError" not in output
