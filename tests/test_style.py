"""The workflow follows the catalog's conventions: snakefmt-formatted and lint-clean."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO, copy_workflow, snakemake


def test_snakefmt_check():
    files = ["Snakefile", *sorted(str(p.relative_to(REPO)) for p in (REPO / "rules").glob("*.smk"))]
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *files], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakemake_lint(tmp_path):
    result = snakemake(copy_workflow(tmp_path), "--lint", "--cores", "1", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def rule_blocks() -> dict[str, str]:
    """Every rule and checkpoint of rules/*.smk: name -> its text."""
    text = "\n".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    blocks = re.split(r"^(?:rule|checkpoint) (\w+):\n", text, flags=re.M)[1:]
    return dict(zip(blocks[::2], blocks[1::2]))


def test_every_rule_has_log_benchmark_and_conda():
    blocks = rule_blocks()
    assert "manifest" in blocks and "extract_shard" in blocks  # checkpoints too
    for name, block in blocks.items():
        for directive in ("log:", "conda:", "benchmark:"):
            assert f"    {directive}" in block, f"rule {name} has no {directive}"


def test_paths_are_written_once():
    """Each output path is written in its rule only: other rules and helpers refer to it as
    rules.<rule>.output (the paths of the planning's own files aside)."""
    blocks = rule_blocks()
    for name, block in blocks.items():
        section = block.split("    output:\n", 1)[1] if "    output:\n" in block else ""
        for path in re.findall(r'"((?:results|resources)/[^"]+)"', section):
            elsewhere = [other for other, text in blocks.items() if other != name and path in text]
            assert not elsewhere, f"{path} (rule {name}) written again in {elsewhere}"


def test_params_take_config_entries_without_lambdas():
    """Config entries reach params through lookup(dpath=..., within=config), not lambdas."""
    for name, block in rule_blocks().items():
        assert "lambda wildcards: lookup" not in block and "config_of" not in block, name
