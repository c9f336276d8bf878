"""The conda environments of the rules (envs/*.yaml) pin what pyproject.toml pins.

`--software-deployment-method conda` builds the jobs' environment from envs/*.yaml, a plain
install from pyproject.toml: both must give the same versions, or a cluster run could compute
different numbers from a local one.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
ENVS = sorted((REPO / "envs").glob("*.yaml"))

# Needed where Snakemake itself runs (the submit host), not inside the jobs' environment:
# Snakemake runs `script:` rules with its own package put on the script's sys.path.
DRIVER_ONLY = {"snakemake", "snakemake-executor-plugin-slurm"}


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def extras() -> list[str]:
    """The optional extras' requirements (model families' packages), the test extra aside."""
    optional = pyproject()["project"]["optional-dependencies"]
    return [line for name, lines in optional.items() if name != "test" for line in lines]


def pyproject_pins(with_extras: bool = False) -> dict[str, str]:
    pins = {}
    for line in [*pyproject()["project"]["dependencies"], *(extras() if with_extras else [])]:
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", \
            f"pyproject.toml: {line!r} is not pinned to one exact version"
        pins[canonicalize_name(req.name)] = specs[0].version
    return pins


def env_pins(path: Path) -> tuple[dict[str, str], list[str]]:
    """(pip pins by canonical name, conda dependency strings) of a conda environment file."""
    spec = yaml.safe_load(path.read_text())
    pins, conda = {}, []
    for dep in spec.get("dependencies", []):
        if isinstance(dep, dict):
            for line in dep.get("pip", []):
                req = Requirement(line)
                specs = list(req.specifier)
                assert len(specs) == 1 and specs[0].operator == "==", \
                    f"{path.name}: pip dependency {line!r} is not pinned to one exact version"
                name = canonicalize_name(req.name)
                assert name not in pins, f"{path.name}: {name} listed twice"
                pins[name] = specs[0].version
        else:
            conda.append(str(dep))
    return pins, conda


def test_there_are_environments():
    assert ENVS, "no envs/*.yaml"


def test_driver_only_packages_are_runtime_dependencies():
    # the exemption list must not outlive the dependencies it exempts
    assert DRIVER_ONLY <= set(pyproject_pins())


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_env_pins_match_pyproject(env):
    pins, _ = env_pins(env)
    project = pyproject_pins(with_extras=True)  # jobs of every family run in this environment
    differ = {name: (version, project[name]) for name, version in pins.items()
              if name in project and project[name] != version}
    assert not differ, f"{env.name} vs pyproject.toml (env, pyproject): {differ}"
    missing = sorted(set(project) - set(pins) - DRIVER_ONLY)
    assert not missing, f"{env.name} lacks (extras') dependencies of pyproject.toml: {missing}"


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_env_python_satisfies_requires_python(env):
    _, conda = env_pins(env)
    pythons = [d for d in conda if re.match(r"python\b", d)]
    assert len(pythons) == 1, f"{env.name}: expected one python dependency, got {pythons}"
    version = re.match(r"python\s*=*\s*([\d.]+)", pythons[0]).group(1)
    requires = SpecifierSet(pyproject()["project"]["requires-python"])
    assert requires.contains(version), f"{env.name}: python {version} vs requires {requires}"
