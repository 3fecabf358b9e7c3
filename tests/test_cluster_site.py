"""The SLURM site file and the requests made from it (scratchlm.settings.cluster): every job fits a node."""

from __future__ import annotations

import pytest
import yaml

from scratchlm.settings import SettingsError
from scratchlm.settings.cluster import SITE_FILE, SITE_FILE_ENV, job_resources, load_slurm_site, site_file

SITE = {"account": "lm-lab", "partitions": {
    "cpu": {"name": "short", "cpus": 4, "mem_mb": 8000, "max_runtime": 120},
    "gpu": {"name": "a100", "cpus": 32, "mem_mb": 500000, "gpus": 4, "gpu_model": "a100"}}}


@pytest.fixture
def site(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(SITE))
    return load_slurm_site(path)


def test_requests_are_cut_down_to_one_node_of_the_partition(site):
    assert job_resources(site, "cpu", threads=8, mem_mb=64000, runtime=240) == {
        "slurm_partition": "short", "cpus_per_task": 4, "mem_mb": 8000, "runtime": 120, "slurm_account": "lm-lab"}
    small = job_resources(site, "cpu", threads=1, mem_mb=2000, runtime=20)
    assert (small["cpus_per_task"], small["mem_mb"], small["runtime"]) == (1, 2000, 20)


def test_gpu_jobs_are_one_task_on_one_node_or_one_agent_per_node(site):
    one_node = job_resources(site, "gpu", threads=8, mem_mb=64000, runtime=720, gpus=4)
    assert one_node == {"slurm_partition": "a100", "cpus_per_task": 8, "mem_mb": 64000, "runtime": 720,
                        "slurm_account": "lm-lab", "tasks_per_gpu": 0, "gpu": 4, "gpu_model": "a100"}
    # Several nodes: GPUs per node as a GRES (--gpus would count over the allocation), N tasks, and the
    # job's command run once in the batch script (the plugin's `mpi` shape), which starts srun itself.
    two_nodes = job_resources(site, "gpu", threads=8, mem_mb=64000, runtime=720, gpus=4, nodes=2)
    assert "gpu" not in two_nodes and two_nodes["gres"] == "gpu:a100:4"
    assert (two_nodes["nodes"], two_nodes["tasks"], two_nodes["mpi"], two_nodes["tasks_per_gpu"]) == (2, 2, "srun", 0)


def test_more_gpus_than_a_node_has_is_one_line(site):
    with pytest.raises(SettingsError, match=r"asks for 8 GPUs per node, but a node of partition 'a100' has 4"):
        job_resources(site, "gpu", threads=8, mem_mb=1000, runtime=10, gpus=8)


def test_a_site_without_gpus_refuses_gpu_jobs(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({"partitions": {"cpu": SITE["partitions"]["cpu"]}}))
    site = load_slurm_site(path)
    assert "slurm_account" not in job_resources(site, "cpu", threads=1, mem_mb=1, runtime=1)  # account: null
    with pytest.raises(SettingsError, match="no GPU partition"):
        job_resources(site, "gpu", threads=1, mem_mb=1, runtime=1, gpus=1)


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s["partitions"]["cpu"].pop("cpus"), r"site.yaml: partitions.cpu.cpus: required"),
    (lambda s: s["partitions"]["gpu"].update(gpus=-1), r"site.yaml: partitions.gpu.gpus: .*greater than or equal"),
    (lambda s: s.update(acount="x"), r"site.yaml: acount: unknown setting; allowed here: account, partitions"),
    (lambda s: s.update(account="a b"), r"site.yaml: account: .*pattern"),
])
def test_site_file_errors_are_one_line_naming_the_file_and_key(tmp_path, change, message):
    broken = yaml.safe_load(yaml.safe_dump(SITE))
    change(broken)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(broken))
    with pytest.raises(SettingsError, match=message) as error:
        load_slurm_site(path)
    assert "\n" not in str(error.value)


def test_the_shipped_site_file_loads_and_can_be_replaced(project_root, monkeypatch, tmp_path):
    monkeypatch.delenv(SITE_FILE_ENV, raising=False)
    assert site_file(project_root) == project_root / SITE_FILE
    shipped = load_slurm_site(site_file(project_root))
    assert shipped.account is None and shipped.partitions.gpu.gpus > 0
    monkeypatch.setenv(SITE_FILE_ENV, str(tmp_path / "mine.yaml"))
    assert site_file(project_root) == tmp_path / "mine.yaml"


def test_the_profile_leaves_job_sizes_to_the_rules(project_root):
    """The profile sets no resources: a rule's own values hold (generate's GPU follows its run), and a
    command-line --set-resources or --default-resources cannot drop a partition the profile set."""
    profile = yaml.safe_load((project_root / "workflow/profiles/slurm/config.yaml").read_text())
    assert not {"set-resources", "default-resources", "groups", "group-components"} & profile.keys()
    assert profile["slurm-status-command"] == "squeue"  # sacct hangs the workflow without accounting
