"""Start-up cost: planning the workflow and the jobs that need no torch never import it.

torch takes seconds to import on a loaded CPU, and every job is a new Python process: the
manifest, the model cards of weight-free models, the tables and the planning (dry run) itself
run without it (README, "Where the demo's time goes").
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import yaml

from tests.conftest import REPO, copy_workflow

# The scripts whose jobs need no torch (extraction, probes and the report's kernel do).
TORCH_FREE_SCRIPTS = ("summary.py", "comparisons.py", "fetch_model.py", "manifest.py",
                      "demo_dataset.py", "download_dataset.py")


def module_imports(path) -> str:
    """The module-level imports of the Python file ``path``, as source."""
    tree = ast.parse(path.read_text())
    nodes = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    return "\n".join(ast.unparse(node) for node in nodes)


def modules_after(code: str, cwd=REPO) -> set[str]:
    """The modules a fresh interpreter has imported after running ``code``."""
    code += "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                         check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_jobs_that_need_no_torch_never_import_it(tmp_path):
    imports = "\n".join(module_imports(REPO / "scripts" / name) for name in TORCH_FREE_SCRIPTS)
    # what those jobs then ask of the model families: the demo's model cards (log-mel, and
    # CREPE's, which hash a weights file), every family's GPU need and whether it is a
    # baseline (the comparisons pair models on it)
    calls = f"""
from pathlib import Path
from audioprobe.features import families
from audioprobe.features.families import FAMILIES, check, fetch, is_baseline, needs_gpu
card = fetch("logmel", {{"family": "logmel"}}, Path({str(tmp_path)!r}))
assert card["model_id"] == "logmel"
for random in (False, True):
    fetch("c", {{"family": "crepe", "capacity": "tiny", "random_weights": random}}, Path("."))
for name in FAMILIES:
    needs_gpu({{"family": name}})
    is_baseline({{"family": name}})
for spec in ({{"family": "transformers", "checkpoint": "facebook/hubert-base-ls960"}},
             {{"family": "crepe", "capacity": "tiny"}}, {{"family": "logmel"}}):
    check("m", spec)
"""
    loaded = modules_after(imports + calls)
    assert "audioprobe.tables" in loaded and "audioprobe.datasets" in loaded  # it ran
    assert "torch" not in loaded
    assert "sklearn" not in modules_after("import audioprobe.datasets")  # planning imports it


def test_planning_the_study_imports_no_torch(tmp_path):
    """A dry run of config/study.yaml (HuBERT, its random control, log-mel) plans every job
    without importing torch (or scikit-learn): the Snakefile asks the family registry."""
    workflow = copy_workflow(tmp_path)
    study = REPO / "config" / "study.yaml"
    for spec in yaml.safe_load(study.read_text())["datasets"].values():
        if "download" not in spec:
            (workflow / spec["root"]).mkdir(parents=True, exist_ok=True)
    code = f"""
import atexit, json, sys
atexit.register(lambda: print("MODULES", json.dumps(sorted(sys.modules))))
from snakemake.cli import main
sys.argv = ["snakemake", "-n", "--cores", "1", "--configfile", {str(study)!r},
            "--replace-workflow-config"]
main()
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=workflow, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "probe" in out.stdout  # it planned the jobs
    line = next(line for line in out.stdout.splitlines() if line.startswith("MODULES "))
    loaded = set(json.loads(line.removeprefix("MODULES ")))
    assert "torch" not in loaded and "sklearn" not in loaded


def test_training_probes_never_imports_torch_dynamo():
    """A probe job trains with Adam without importing torch._dynamo (which any torch.optim
    optimizer's constructor imports: seconds of every probe job's start-up on two cores)."""
    code = """
import numpy as np, torch
from audioprobe.probes.train import Architecture, Member, fit_predict
rng = np.random.default_rng(0)
x, y = rng.standard_normal((1, 40, 8)), np.arange(40) % 2
fit = fit_predict(x, y, x, y, x, n_classes=2, arch=Architecture(hidden=[4]),
                  members=[[Member(0.01, 0.1, 0), Member(0.001, 0.0, 0)]], max_epochs=3,
                  patience=1, batch_size=16, device=torch.device("cpu"))
assert fit.test_proba.shape == (2, 40, 2)
"""
    loaded = modules_after(code)
    assert "audioprobe.probes.train" in loaded and "torch" in loaded  # it ran
    assert "torch._dynamo" not in loaded


def test_the_report_page_imports_torch_only_to_play_error_clips():
    """Every module the page imports, the error-audio one included, loads without torch: only
    listening to error clips (``report.error_clips``, off by default) decodes audio with it."""
    loaded = modules_after(module_imports(REPO / "report" / "page.py"))
    assert "audioprobe.report.error_audio" in loaded and "audioprobe.report.layers" in loaded
    assert "torch" not in loaded
