"""Where the demo's time goes: its wall time and the CPU time of every process, by job.

Clones the repository's committed HEAD into a scratch folder, runs the README's demo command
there (``snakemake --cores 8 --resources gpu=1``) and accounts the CPU time (user + system)
of each Python process it starts: every process reports its own and its waited-for children's
(``getrusage``) when it exits, through a ``sitecustomize`` module put on ``PYTHONPATH`` for
the run only. A job's CPU time is its script process's with its children (the report's Jupyter
kernel and the kernel's PDF/SVG writers); Snakemake's is its own process's; "other" is what
Snakemake's children spent that no process reported: the interpreters' start before the hook
is imported and their teardown after it reports (about 0.7 s for a process that imported
torch), and the shells that start the jobs. Snakemake's benchmark files sample the job's
processes now and then, so they miss part of a short job's CPU time; this does not.

    python bench/demo_time.py [--snakemake .venv/bin/snakemake] [--keep] [-- SNAKEMAKE_ARGS]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

HOOK = """\
import atexit, os, resource, sys

def _account():
    own = resource.getrusage(resource.RUSAGE_SELF)
    waited = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open({log!r}, "a") as log:
        log.write(f"{{os.getpid()}}\\t{{own.ru_utime + own.ru_stime:.3f}}\\t"
                  f"{{waited.ru_utime + waited.ru_stime:.3f}}\\t{{' '.join(sys.argv)}}\\n")

atexit.register(_account)
"""

SCRIPT = re.compile(r"\.snakemake/scripts/tmp[^.]+\.(\w+)\.py")


def job_of(command: str) -> str | None:
    """The script a process ran (``probe``, ``extract``, ...), "snakemake" for Snakemake
    itself, or None for a process counted in its parent's children (the report's kernel)."""
    found = SCRIPT.search(command)
    if found:
        return found.group(1)
    if re.search(r"(^|/)snakemake(\s|$)", command):
        return "snakemake"
    return None


def run(snakemake: str, keep: bool, extra: list[str]) -> None:
    folder = Path(tempfile.mkdtemp(prefix="audioprobe-demo-"))
    try:
        subprocess.run(["git", "clone", "-q", str(REPO), str(folder / "demo")], check=True)
        hook = folder / "hook"
        hook.mkdir()
        log = folder / "usage.tsv"
        (hook / "sitecustomize.py").write_text(HOOK.format(log=str(log)))
        env = os.environ | {"PYTHONPATH": os.pathsep.join(
            filter(None, [str(hook), os.environ.get("PYTHONPATH")]))}
        load = os.getloadavg()[0]
        start = time.perf_counter()
        subprocess.run([str(Path(snakemake).resolve()), "--cores", "8", "--resources", "gpu=1",
                        "--quiet", *extra], cwd=folder / "demo", env=env, check=True)
        wall = time.perf_counter() - start
        report(log, wall, load)
    finally:
        if keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder)


def report(log: Path, wall: float, load: float) -> None:
    """Print the run's wall time, its CPU time and the CPU time of each kind of job, "other"
    being what Snakemake's children spent that no process reported."""
    jobs: dict[str, list[float]] = defaultdict(list)
    own_time = children = 0.0
    for line in log.read_text().splitlines():
        _, own, waited, command = line.split("\t", 3)
        name = job_of(command)
        if name == "snakemake":  # its children are the jobs and what no process reported
            own_time, children = float(own), float(waited)
        elif name:
            jobs[name].append(float(own) + float(waited))
    count, in_jobs = sum(map(len, jobs.values())), sum(map(sum, jobs.values()))
    jobs["Snakemake itself"].append(own_time)
    jobs["other"].append(max(children - in_jobs, 0.0))
    print(f"demo: {wall:.1f} s wall, {own_time + max(children, in_jobs):.1f} CPU-s in {count} "
          f"jobs and Snakemake (1-minute load average {load:.2f} at start)\n")
    print("| job | count | CPU-s each | CPU-s in all |\n|---|---|---|---|")
    for name, times in sorted(jobs.items(), key=lambda kv: -sum(kv[1])):
        each = (f"{min(times):.1f}" if len(times) == 1 or max(times) - min(times) < 0.05
                else f"{min(times):.1f}-{max(times):.1f}")
        print(f"| {name} | {len(times)} | {each} | {sum(times):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snakemake", default=str(REPO / ".venv" / "bin" / "snakemake"),
                        help="the snakemake executable (default: the repository's .venv)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("extra", nargs="*", help="more arguments for snakemake (after --)")
    args = parser.parse_args()
    run(args.snakemake, args.keep, args.extra)


if __name__ == "__main__":
    main()
