"""Shared fixtures: a finished run of the demo workflow, and tiny models for unit tests."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

# Unit tests train tiny models, for which intra-op threads only add contention.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "rules", "scripts", "report", "config.yaml",
                  "config.schema.yaml", "envs", "audioprobe")


def copy_workflow(dest: Path, extra: tuple[str, ...] = ()) -> Path:
    """Copy the workflow (not its results), and the ``extra`` top-level paths, into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in (*WORKFLOW_FILES, *extra):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


# A small random-weight HuBERT built from a transformers config: a cheap neural model that asks
# for a GPU, for tests that need the transformers path or a GPU job end to end (the demo's CREPE
# tiny runs on CPUs).
HUBERT_DEMO = {
    "family": "transformers",
    "random_weights": True,
    "options": {"architecture": {
        "model_type": "hubert", "hidden_size": 64, "num_hidden_layers": 4,
        "num_attention_heads": 4, "intermediate_size": 128, "conv_dim": [32] * 7,
        "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4}},
}


def set_models(folder: Path, models: dict) -> None:
    """Replace the models of the copied workflow's config.yaml."""
    import yaml

    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["models"] = models
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


# Every Snakemake run in the suite stops after this many seconds (CI stops a whole job at 90
# minutes); the demo workflow takes under a minute on two cores.
SNAKEMAKE_TIMEOUT = 600


def tail(text: str, lines: int = 60) -> str:
    """The last ``lines`` lines of ``text``."""
    return "\n".join(text.splitlines()[-lines:])


def snakemake(folder: Path, *args: str, check: bool = True, timeout: float = SNAKEMAKE_TIMEOUT,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run snakemake in ``folder`` with this interpreter. A run that goes past ``timeout``
    seconds is killed with its jobs, and the test fails with the tail of its output."""
    argv = [sys.executable, "-m", "snakemake", *args]
    with subprocess.Popen(argv, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, start_new_session=True, env=env) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            pytest.fail(f"snakemake {' '.join(args)} ran past {timeout:.0f} s and was killed:\n"
                        f"{tail(stdout + stderr)}", pytrace=False)
    result = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The demo workflow, run to completion once per test session."""
    folder = copy_workflow(tmp_path_factory.mktemp("demo"))
    snakemake(folder, "--cores", "2", "--resources", "gpu=1")
    return folder


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves files without logging each request."""

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serve ``tmp_path/served`` on 127.0.0.1 (an ephemeral port); yield (folder, base url)."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")  # inherited by snakemake subprocesses
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(QuietHandler, directory=str(served))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
