"""The team files agree with each other and with the code: prefect.yaml's deployments name the retrain flow
with parameters it accepts, the work pool exists in the stack, CI triggers a deployment that exists."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
from pathlib import Path

import jsonpatch
import pytest
import yaml

from flows.retrain import retrain
from flows.schedule import check_cron
from flows.score import score
from flows.tune import tune
from pipeline_lib.config import load_config

REPO = Path(__file__).resolve().parents[2]


def load(path: str) -> dict:
    return yaml.safe_load((REPO / path).read_text())


def test_prefect_yaml_deploys_the_retrain_flow_with_valid_parameters():
    deployments = {d["name"]: d for d in load("prefect.yaml")["deployments"]}
    deployments.pop("daily")  # the trend flow's (test_prefect_yaml_deploys_the_trend_flow)
    assert set(deployments) == {"weekly", "on-data-change", "retrain-gpu", "search", "inbox"}
    inbox = deployments.pop("inbox")
    assert inbox["entrypoint"] == "flows/score.py:score" and inbox["work_pool"]["name"] == "tunepipe-process"
    assert set(inbox["parameters"]) <= set(inspect.signature(score.fn).parameters)
    load_config(REPO / inbox["parameters"]["config"], inbox["parameters"]["overrides"])
    search = deployments.pop("search")
    assert search["entrypoint"] == "flows/tune.py:tune" and search["work_pool"]["name"] == "tunepipe-process"
    assert set(search["parameters"]) <= set(inspect.signature(tune.fn).parameters)
    load_config(REPO / search["parameters"]["config"], search["parameters"]["overrides"])
    accepted = set(inspect.signature(retrain.fn).parameters)
    for deployment in deployments.values():
        assert deployment["entrypoint"] == "flows/retrain.py:retrain"
        assert set(deployment["parameters"]) <= accepted
        assert (REPO / deployment["parameters"]["config"]).is_file()
        load_config(REPO / deployment["parameters"]["config"], deployment["parameters"]["overrides"])
    assert {name: d["work_pool"]["name"] for name, d in deployments.items()} == {
        "weekly": "tunepipe-process",
        "on-data-change": "tunepipe-process",
        "retrain-gpu": "gpu-pool",
    }
    for schedule in deployments["weekly"]["schedules"]:
        check_cron(schedule["cron"])


def test_prefect_yaml_deploys_the_trend_flow():
    from flows.trend import trend

    daily = next(d for d in load("prefect.yaml")["deployments"] if d["name"] == "daily")
    assert daily["entrypoint"] == "flows/trend.py:trend" and daily["work_pool"]["name"] == "tunepipe-process"
    parameters = daily["parameters"]
    assert set(parameters) <= set(inspect.signature(trend.fn).parameters) and "scored" in parameters
    cfg = load_config(REPO / parameters["config"], parameters["overrides"])
    assert cfg.trend.notify_block == "custom-webhook/trend-alerts"
    for schedule in daily["schedules"]:
        check_cron(schedule["cron"])


def test_work_pool_template_is_a_process_template_with_string_env_defaults():
    from prefect.workers.process import ProcessWorker

    template = json.loads((REPO / "infra" / "work-pool-template.json").read_text())
    default = ProcessWorker.get_default_base_job_template()
    assert template["job_configuration"] == default["job_configuration"]
    assert set(template["variables"]["properties"]) == set(default["variables"]["properties"])
    env = template["variables"]["properties"]["env"]["default"]
    assert env and all(isinstance(v, str) for v in env.values())
    assert env["HF_HUB_OFFLINE"] == "1"


def test_compose_stack_has_the_services_and_the_worker_serves_the_pool():
    services = load("infra/docker-compose.yml")["services"]
    assert {"postgres", "minio", "mlflow", "prefect-server", "prefect-worker"} <= set(services)
    worker = " ".join(services["prefect-worker"]["command"])
    assert "--pool tunepipe-process" in worker and "infra/work-pool-template.json" in worker
    assert services["prefect-worker"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "--artifacts-destination=s3://mlflow/" in services["mlflow"]["command"]


def test_ci_tests_every_push_and_triggers_an_existing_deployment_on_data_changes():
    workflow = load(".github/workflows/ci.yml")
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on:` as True
    assert "push" in triggers
    steps = workflow["jobs"]["test"]["steps"]
    assert any(step.get("run") == ".ci/run" for step in steps)
    commands = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines() if line.startswith("make")]
    assert commands == ["make run", "make test"]  # the README's commands, in its order, on the clean clone
    retrain_job = workflow["jobs"]["retrain-on-new-data"]
    assert "refs/heads/main" in retrain_job["if"] and retrain_job["needs"] == "test"
    script = "\n".join(step.get("run", "") for step in retrain_job["steps"])
    assert "'*.dvc'" in script and "'dvc.lock'" in script
    deployed = re.search(r"prefect deployment run (\S+)", script).group(1)
    flow, name = deployed.split("/")
    assert flow == "retrain" and name in {d["name"] for d in load("prefect.yaml")["deployments"]}


# The GPU node pool: a Kubernetes work pool (infra/gpu-work-pool.json), its image, its entry point, prefect.yaml.

GPU_TEMPLATE = REPO / "infra" / "gpu-work-pool.json"
ENTRYPOINT = REPO / "infra" / "gpu-entrypoint.sh"
# The Job fields the Prefect Kubernetes worker requires, with these values (prefect-kubernetes validates each
# job manifest against this: a field missing or with another value is refused before any Job is created).
WORKER_REQUIRED_MANIFEST = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"labels": {}},
    "spec": {
        "template": {
            "spec": {
                "parallelism": 1,
                "completions": 1,
                "restartPolicy": "Never",
                "containers": [{"name": "prefect-job"}],
            }
        }
    },
}


def gpu_template() -> dict:
    return json.loads(GPU_TEMPLATE.read_text())


def rendered_gpu_job(job_variables: dict) -> dict:
    """The Job manifest a worker renders: the pool's variable defaults, overridden by the deployment's."""
    from prefect.utilities.templating import apply_values

    template = gpu_template()
    properties = template["variables"]["properties"]
    values = {name: spec["default"] for name, spec in properties.items() if spec.get("default") is not None}
    return apply_values(template["job_configuration"]["job_manifest"], {**values, **job_variables})


def gpu_deployment() -> dict:
    return next(d for d in load("prefect.yaml")["deployments"] if d["name"] == "retrain-gpu")


def test_gpu_work_pool_template_is_a_valid_kubernetes_base_job_template():
    from prefect.server.schemas.actions import validate_base_job_template
    from prefect.utilities.templating import find_placeholders

    template = gpu_template()
    validate_base_job_template(template)  # what the Prefect API runs on `work-pool create --base-job-template`
    properties = template["variables"]["properties"]
    used = {p.name for p in find_placeholders(json.dumps(template["job_configuration"]))}
    assert used and used <= set(properties), used - set(properties)
    assert {"job_manifest", "namespace", "env", "command", "stream_output"} <= set(template["job_configuration"])
    for name, spec in properties.items():
        assert "default" in spec and spec.get("title"), name
    patch = jsonpatch.make_patch(rendered_gpu_job({}), WORKER_REQUIRED_MANIFEST)  # the worker checks rendered Jobs
    assert [op for op in patch if op["op"] in ("add", "replace")] == []


def test_gpu_deployment_renders_a_job_that_requests_the_gpus_it_trains_on():
    deployment = gpu_deployment()
    job_variables = deployment["work_pool"]["job_variables"]
    job = rendered_gpu_job(job_variables)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    gpus = job_variables["gpus_per_node"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert container["resources"]["requests"]["nvidia.com/gpu"] == gpus
    cfg = load_config(REPO / deployment["parameters"]["config"], deployment["parameters"]["overrides"])
    assert cfg.train.num_processes == gpus  # one DDP process per requested GPU
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == job_variables["nnodes"] == cfg.train.nnodes
    assert pod["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    assert "persistentVolumeClaim" in volumes[mounts["/shared"]]
    assert all(isinstance(e.get("value", ""), str) for e in container["env"])  # Kubernetes takes strings only
    assert container["command"][0] == "/opt/tunepipe/infra/gpu-entrypoint.sh" and container["command"][-1] == "--"
    assert "--nproc-per-node=4" in container["command"] and "--nnodes=1" in container["command"]
    assert "args" not in container  # no command given: the worker fills in `prefect flow-run execute`
    k8s = list(yaml.safe_load_all((REPO / "infra" / "gpu-pool-k8s.yaml").read_text()))
    service = next(o for o in k8s if o["kind"] == "Service")
    claim = next(o for o in k8s if o["kind"] == "PersistentVolumeClaim")
    assert pod["subdomain"] == service["metadata"]["name"] and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    assert volumes[mounts["/shared"]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_gpu_image_installs_the_gpu_extra_and_never_the_cpu_onnxruntime():
    dockerfile = (REPO / "infra" / "gpu.Dockerfile").read_text()
    base = re.search(r"^ARG BASE=(\S+)", dockerfile, re.M).group(1)
    assert "cuda" in base and re.search(r"^FROM \$\{BASE\}", dockerfile, re.M)
    assert '".[gpu]"' in dockerfile and ".[cpu]" not in dockerfile
    assert "pip show -q onnxruntime" in dockerfile  # the build fails if the CPU wheel came in anyway
    assert "COPY infra infra" in dockerfile and os.access(ENTRYPOINT, os.X_OK)


def entrypoint(index: int, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {
        "PATH": os.environ["PATH"],
        "JOB_COMPLETION_INDEX": str(index),
        "JOB_NAME": "retrain-x7k2p",
        "RDZV_SUBDOMAIN": "tunepipe-rdzv",
        "TUNEPIPE_DRY_RUN": "1",
        **env,
    }
    command = [str(ENTRYPOINT), "--nnodes=2", "--nproc-per-node=4", "--rdzv-port=29400", *args]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=30)


def test_gpu_pod_zero_runs_the_flow_run_command(tmp_path: Path):
    done = entrypoint(0, f"--run-dir={tmp_path}", "--", "echo", "prefect", "flow-run", "execute")
    assert done.returncode == 0 and done.stdout.strip() == "prefect flow-run execute"


def test_gpu_peer_pods_join_rank_zeros_rendezvous_with_the_same_torchrun_command(tmp_path: Path):
    from pipeline_lib.layout import RunDir
    from pipeline_lib.training.distributed import torchrun_command

    run = RunDir(tmp_path / "20261123T101500Z-abc123")
    launch_config = run.root / "train" / "launch_config.yaml"  # where distributed.launch writes it on rank 0
    launch_config.parent.mkdir(parents=True)
    cfg = load_config(
        REPO / "configs" / "default.yaml",
        ["train.num_processes=4", "train.nnodes=2", "train.rdzv_endpoint=retrain-x7k2p-0.tunepipe-rdzv:29400"],
    )
    launch_config.write_text(cfg.to_yaml())
    done = entrypoint(1, f"--run-dir={run.root}", "--", "prefect", "flow-run", "execute")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["python", *torchrun_command(cfg, run, str(launch_config))[1:]]


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        ((), {}, 2, "needs the job variable run_dir"),
        (("--run-dir=/nonexistent/run",), {"TUNEPIPE_PEER_WAIT_SECONDS": "0"}, 1, "no /nonexistent/run/train"),
    ],
)
def test_gpu_peer_pod_fails_clearly_without_a_run_directory(tmp_path: Path, args, env, code, message):
    done = entrypoint(1, *args, "--", "prefect", "flow-run", "execute", **env)
    assert done.returncode == code and message in done.stderr
