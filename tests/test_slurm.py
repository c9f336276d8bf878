"""The SLURM profile against a real SLURM: a one-node cluster on loopback (tests/slurm/).

The demo workflow runs twice from fresh copies of the repository: locally, and through
profiles/slurm with only its site lines (partition, account) edited. Every job of a
non-local rule must go through sbatch with the GPUs, CPUs, memory and time that the README's
table promises (not values read from the profile under test), and the summary table must be the
same as the local one. The whole test stops after TEST_BUDGET seconds, well under CI's limit.

Needs root and Debian's slurmctld, slurmd, slurm-client and munge (tests/slurm/install.sh);
skips with the reason otherwise. Set AUDIOPROBE_REQUIRE_SLURM=1 (CI) to make that a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from audioprobe.features.families import needs_gpu
from tests.conftest import HUBERT_DEMO, REPO, set_models
from tests.conftest import snakemake as run_snakemake
from tests.conftest import copy_workflow as copy_repo_workflow

sys.path.insert(0, str(Path(__file__).resolve().parent / "slurm"))
import cluster as slurm  # noqa: E402  (tests/slurm/cluster.py)

LOCALRULES = {"all", "demo_dataset", "download_dataset", "manifest", "fetch_model", "summary",
              "comparisons", "label_efficiency", "supplement"}
ACCOUNT = "audioprobe"
TEST_BUDGET = 1200  # seconds for both workflow runs and the rerun together; CI allows 90 minutes
# The profile is tested on the log-mel baseline and a small HuBERT: one CPU and one GPU job.
MODELS = {"logmel": yaml.safe_load((REPO / "config.yaml").read_text())["models"]["logmel"],
          "hubert_demo": HUBERT_DEMO}

pytestmark = pytest.mark.slow


def unavailable(reason: str):
    if os.environ.get("AUDIOPROBE_REQUIRE_SLURM") == "1":
        pytest.fail(f"SLURM test required (AUDIOPROBE_REQUIRE_SLURM=1) but: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def cluster():
    if os.geteuid() != 0:
        unavailable("the SLURM test cluster's daemons need root")
    missing = slurm.missing_binaries()
    if missing:
        unavailable(f"SLURM/munge not installed (missing {', '.join(missing)}); "
                    "run tests/slurm/install.sh")
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        unavailable("snakemake-executor-plugin-slurm is not installed (pip install -e .)")
    state = Path(tempfile.mkdtemp(prefix="apslurm-"))
    # No cgroups here, so memory is not enforced: the node can advertise what the profile asks
    # for (16 GB extract jobs) even on a small CI machine, as config_overrides allows.
    # CPUs likewise: the node offers at least the most CPUs any job is promised.
    cpus = max(slurm.CPUS, *(row["cpus"] for row in promised_requests().values()))
    test_cluster = slurm.Cluster(state, cpus=cpus, mem_mb=max(slurm._mem_total_mb(), 32768))
    try:
        test_cluster.start(timeout=60)
    except (slurm.ClusterUnavailable, subprocess.SubprocessError, OSError) as exc:
        test_cluster.stop()
        shutil.rmtree(state, ignore_errors=True)
        unavailable(f"SLURM test cluster did not start: {exc}")
    try:
        yield test_cluster
    finally:
        subprocess.run(["scancel", "--full", f"--partition={test_cluster.partition}"],
                       env=test_cluster.env, capture_output=True, timeout=30)
        test_cluster.stop()
        shutil.rmtree(state, ignore_errors=True)


def copy_workflow(dest: Path) -> Path:
    """The workflow with its profiles, on the models of MODELS and the linear and MLP probes
    (the label-efficiency and layer-similarity jobs included)."""
    folder = copy_repo_workflow(dest, extra=("profiles",))
    set_models(folder, MODELS)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["probes"] = {name: config["probes"][name] for name in ("linear", "mlp")}
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


def set_site(profile: Path, **values: str) -> None:
    """Fill in the profile's site settings, the one place a cluster user edits."""
    text = profile.read_text()
    for key, value in values.items():
        text, n = re.subn(rf'^(  {key}:) ""', rf"\1 {value}", text, flags=re.M)
        assert n == 1, f"{profile}: expected exactly one `  {key}: \"\"` site line, found {n}"
    profile.write_text(text)


def snakemake(*args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", *args]


def run(argv: list[str], cwd: Path, env: dict, log: Path, deadline: float) -> int:
    """Run ``argv`` with its output in ``log``; return its exit status."""
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return finish(proc, log, deadline)


def finish(proc: subprocess.Popen, log: Path, deadline: float) -> int:
    """Wait for ``proc`` until ``deadline`` (time.monotonic()); past it, kill it with its
    children and fail with the tail of its log."""
    try:
        return proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"{' '.join(proc.args[2:])} still running when the test's {TEST_BUDGET} s "
                    f"were up; killed. Its log ends:\n{tail(log)}", pytrace=False)


def tail(path: Path, n: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def jobs_in_log(text: str) -> dict[int, tuple[str, bool, str]]:
    """Snakemake job id -> (rule, local?, wildcards) from the job headers of a run log."""
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:\n)", text):
        head = re.match(r"(local)?(?:rule|checkpoint) (\w+):\n", block)
        jobid = re.search(r"^\s+jobid: (\d+)$", block, flags=re.M)
        if head and jobid:
            wildcards = re.search(r"^\s+wildcards: (.*)$", block, flags=re.M)
            jobs[int(jobid.group(1))] = (head.group(2), bool(head.group(1)),
                                         wildcards.group(1) if wildcards else "")
    return jobs


def promised_requests() -> dict[str, dict[str, int]]:
    """The README's table of what each SLURM job asks for: job -> gpus, cpus, mem_mb, runtime
    (minutes). Jobs whose request depends on the model are named `rule`, GPU models and
    `rule`, CPU models."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Running on a SLURM cluster"):]
    section = section[:section.index("\n## ")]
    header = "| job | GPUs | CPUs | memory | time |"
    assert header in section, f"README: no table starting {header!r} in the SLURM section"
    rows = {}
    for line in section[section.index(header):].splitlines()[2:]:
        if not line.startswith("|"):
            break
        job, gpus, cpus, memory, runtime = (cell.strip() for cell in line.strip("|").split("|"))
        rows[job.replace("`", "")] = {"gpus": int(gpus), "cpus": int(cpus),
                                      "mem_mb": in_units(memory, {"GB": 1000, "MB": 1}),
                                      "runtime": in_units(runtime, {"h": 60, "min": 1})}
    return rows


def in_units(text: str, units: dict[str, int]) -> int:
    """'16 GB' -> 16000 with units {'GB': 1000}."""
    value, unit = text.split()
    return round(float(value) * units[unit])


def promised(rule: str, wildcards: str) -> tuple[str, dict[str, int]]:
    """The README's row (name, request) for one job, from its rule and wildcards."""
    rows = promised_requests()
    if rule in rows:
        return rule, rows[rule]
    model = re.search(r"model=(\w+)", wildcards).group(1)
    job = f"{rule}, {'GPU models' if needs_gpu(MODELS[model]) else 'CPU models'}"
    assert job in rows, f"README's SLURM table has no row for {job}"
    return job, rows[job]


def test_slurm_profile_resources(tmp_path):
    """Without a cluster: in a dry run, every job that goes to SLURM asks for the GPUs, CPUs,
    memory and time of its row in the README's table, and every row is used."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    workdir = copy_workflow(tmp_path / "wf")
    # Extraction jobs are planned from the manifest (a checkpoint): make it first, locally.
    run_snakemake(workdir, "results/manifests/demo.csv", "--cores", "1")
    # --cores only caps threads in a dry run: a high value leaves every request as it is.
    result = run_snakemake(
        workdir, "--workflow-profile", "profiles/slurm", "--dry-run", "--nocolor",
        "--cores", "256", env={k: v for k, v in os.environ.items() if not k.startswith("SLURM_")})
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:\n)", result.stdout):
        head = re.match(r"(local)?(?:rule|checkpoint) (\w+):\n", block)
        res = re.search(r"^\s+resources: (.*)$", block, flags=re.M)
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, flags=re.M)
        if head and res:
            key = (head.group(2), wildcards.group(1) if wildcards else "")
            jobs[key] = dict(item.split("=", 1) for item in res.group(1).split(", "))
    assert ("extract_shard", "dataset=demo, model=hubert_demo, shard=0") in jobs
    assert ("extract_shard", "dataset=demo, model=logmel, shard=0") in jobs
    used = set()
    for (rule, wildcards), res in jobs.items():
        if rule in LOCALRULES:
            continue
        row, want = promised(rule, wildcards)
        used.add(row)
        got = {"gpus": int(res.get("gpu", 0)), "cpus": int(res["cpus_per_task"]),
               "mem_mb": int(res["mem_mb"]), "runtime": int(res["runtime"])}
        assert got == want, (rule, wildcards, got, want)
    assert used == set(promised_requests()), "a README row matches no job"


def test_demo_workflow_through_slurm(cluster, tmp_path):
    started = time.monotonic()
    deadline = started + TEST_BUDGET
    local_dir = copy_workflow(tmp_path / "local")
    slurm_dir = copy_workflow(tmp_path / "slurm")
    set_site(slurm_dir / "profiles/slurm/config.yaml",
             slurm_partition=cluster.partition, slurm_account=ACCOUNT)

    # The local reference run (profiles/default) goes on while the cluster works.
    local_log = tmp_path / "local.log"
    with open(local_log, "w") as out:
        local = subprocess.Popen(snakemake("--cores", "2", "results/tables/summary.csv"),
                                 cwd=local_dir, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        slurm_log = tmp_path / "slurm.log"
        argv = snakemake(
            "--workflow-profile", "profiles/slurm",
            # quicker status polling than a real cluster needs, and keep every job's log
            "--slurm-init-seconds-before-status-checks", "5",
            "--slurm-keep-successful-logs",
            "--verbose",  # logs each sbatch call
        )
        returncode = run(argv, slurm_dir, cluster.env, slurm_log, deadline)
        assert returncode == 0, f"SLURM run failed:\n{tail(slurm_log)}\n{cluster.logs()}"
        local_rc = finish(local, local_log, deadline)
    finally:
        if local.poll() is None:
            os.killpg(local.pid, signal.SIGKILL)
            local.wait()
    assert local_rc == 0, f"local run failed:\n{tail(local_log)}"
    text = slurm_log.read_text()

    # -- every non-local job went through sbatch, and no local one did ---------------------
    jobs = jobs_in_log(text)
    submitted = {int(j): int(s) for j, s in
                 re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", text)}
    remote = {j for j, (rule, local_job, _) in jobs.items() if not local_job}
    assert {rule for rule, local_job, _ in jobs.values() if local_job} <= LOCALRULES
    assert {jobs[j][0] for j in remote} == {"extract_shard", "merge_features", "probe",
                                            "label_efficiency_probe", "layer_similarity",
                                            "report"}
    # 2 x (extract shard, merge), 2 x 2 probes, 2 linear probes on fractions, similarity, report
    assert len(remote) == 12, jobs
    assert set(submitted) == remote, f"submitted {submitted}, non-local jobs {remote}"
    assert all(not jobs[j][1] for j in submitted)

    # -- SLURM ran them: slurmctld remembers each job id, completed, where the profile said --
    records = {int(r["JobId"]): r for r in cluster.jobs()}
    for jobid, slurm_id in submitted.items():
        record = records.get(slurm_id)
        assert record is not None, f"SLURM job {slurm_id} ({jobs[jobid]}) unknown to slurmctld"
        assert record["JobState"] == "COMPLETED", record
        assert record["Partition"] == cluster.partition
        assert record["Account"] == ACCOUNT
        assert record["Comment"].startswith(f"rule_{jobs[jobid][0]}")

    # -- the sbatch requests: what the README promises -------------------------------------
    calls = {}
    for call in re.findall(r"^sbatch call: (sbatch .*)$", text, flags=re.M):
        comment = re.search(r"--comment (\S+)", call).group(1)
        calls[comment] = call.split(" --wrap=")[0]
    assert len(calls) == len(remote), sorted(calls)
    by_comment = {r["Comment"]: r for r in records.values()}
    for jobid, slurm_id in submitted.items():
        rule, _, wildcards = jobs[jobid]
        record = records[slurm_id]
        call = calls[record["Comment"]]
        row, want = promised(rule, wildcards)
        assert f" --mem {want['mem_mb']}" in call, (row, want, call)
        assert f" -t {want['runtime']}" in call, (row, want, call)
        assert f" --cpus-per-task={want['cpus']}" in call, (row, want, call)
        assert f" -p {cluster.partition}" in call and f" -A {ACCOUNT}" in call, call
        # ... and what slurmctld made of them
        assert record["TRES"].startswith(f"cpu={want['cpus']},mem={want['mem_mb']}M"), record
        if want["gpus"]:
            assert re.search(rf" (--gpus={want['gpus']}|--gres=gpu:{want['gpus']})\b", call)
            assert record.get("TresPerJob") == f"gres:gpu:{want['gpus']}", record
        else:
            assert "--gpus" not in call and "--gres" not in call, (row, call)
            assert "gpu" not in record.get("TresPerJob", ""), record
    gpu_job, cpu_job = (by_comment[c] for c in ("rule_extract_shard_wildcards_demo_hubert_demo_0",
                                                "rule_extract_shard_wildcards_demo_logmel_0"))

    # -- the GPU job sees exactly the one GPU it was given, the CPU job none -----------------
    slurm_logs = slurm_dir / ".snakemake/slurm_logs/rule_extract_shard"
    gpu_env = (slurm_logs / "demo_hubert_demo_0" / f"{gpu_job['JobId']}.log").read_text()
    cpu_env = (slurm_logs / "demo_logmel_0" / f"{cpu_job['JobId']}.log").read_text()
    assert "'CUDA_VISIBLE_DEVICES': '0'" in gpu_env
    assert "CUDA_VISIBLE_DEVICES" not in cpu_env

    # -- same numbers as the local run ------------------------------------------------------
    # The workflow is deterministic on CPU (fixed seeds, same thread counts), so the summary
    # must match exactly; check_exact compares the floats bit for bit as read back from CSV.
    local_summary = pd.read_csv(local_dir / "results/tables/summary.csv")
    slurm_summary = pd.read_csv(slurm_dir / "results/tables/summary.csv")
    pd.testing.assert_frame_equal(slurm_summary, local_summary, check_exact=True)
    assert (slurm_dir / "results/report/report.html").stat().st_size > 0

    # -- resuming: the same command again finds nothing to do, and submits nothing ----------
    again = run(snakemake("--workflow-profile", "profiles/slurm"), slurm_dir, cluster.env,
                tmp_path / "again.log", deadline)
    again_text = (tmp_path / "again.log").read_text()
    assert again == 0, tail(tmp_path / "again.log")
    assert "Nothing to be done" in again_text and "has been submitted" not in again_text

    print(f"SLURM test: {time.monotonic() - started:.0f} s")
