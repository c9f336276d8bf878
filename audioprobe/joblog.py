"""Send a Snakemake job's log messages, warnings and progress bars to its log file, headed by
the job's software versions and hardware (``run details``), which the report reads back; errors
meant for the user also reach the console, as one line."""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import TracebackType
from typing import TextIO

from audioprobe.errors import AudioprobeError

# Packages whose versions the results depend on.
SOFTWARE = ("audioprobe", "torch", "torchaudio", "transformers", "scikit-learn", "numpy",
            "pandas", "h5py", "snakemake")
RUN_DETAILS = "run details: "

log = logging.getLogger(__name__)


def to_file(path: str) -> None:
    """Redirect stderr (tqdm, warnings, tracebacks) to ``path``, log INFO messages there and
    start with this job's run details.

    An uncaught AudioprobeError (bad audio with ``bad_audio: fail``, a dataset layout, a
    checkpoint) is written as one line, ``audioprobe: <message>``, to the log and to the
    console the job was started from; any other error leaves its traceback in the log.
    """
    console = sys.stderr
    sys.stderr = open(path, "w", buffering=1)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    sys.excepthook = functools.partial(_report, console)
    log.info("%s%s", RUN_DETAILS, json.dumps(run_details(), sort_keys=True))


def _report(console: TextIO, kind: type[BaseException], error: BaseException,
            traceback: TracebackType | None) -> None:
    if not issubclass(kind, AudioprobeError):
        sys.__excepthook__(kind, error, traceback)
        return
    line = "audioprobe: " + " ".join(str(error).split())
    for stream in (sys.stderr, console):
        print(line, file=stream, flush=True)


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def gpu_names() -> list[str]:
    """Names of the GPUs this process sees through torch (when the job has imported it)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def run_details() -> dict:
    """Host, CPU, GPUs, Python and package versions of the running process."""
    return {
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": f"{cpu_name()} ({os.cpu_count()} logical cores)",
        "gpu": "; ".join(gpu_names()) or "none",
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in SOFTWARE},
    }


def read_run_details(path: str | Path) -> dict | None:
    """The run details a job logged at its start, or None when its log holds none."""
    try:
        with open(path, errors="replace") as lines:
            for line in lines:
                if RUN_DETAILS in line:
                    return json.loads(line.split(RUN_DETAILS, 1)[1])
    except (OSError, ValueError):
        return None
    return None
