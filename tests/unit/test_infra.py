"""The team files agree with each other and with the code: prefect.yaml's deployments name the retrain flow
with parameters it accepts, the work pool exists in the stack, CI triggers a deployment that exists."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import yaml

from flows.retrain import retrain
from flows.schedule import check_cron

REPO = Path(__file__).resolve().parents[2]


def load(path: str) -> dict:
    return yaml.safe_load((REPO / path).read_text())


def test_prefect_yaml_deploys_the_retrain_flow_with_valid_parameters():
    deployments = {d["name"]: d for d in load("prefect.yaml")["deployments"]}
    assert set(deployments) == {"weekly", "on-data-change"}
    accepted = set(inspect.signature(retrain.fn).parameters)
    for deployment in deployments.values():
        assert deployment["entrypoint"] == "flows/retrain.py:retrain"
        assert set(deployment["parameters"]) <= accepted
        assert (REPO / deployment["parameters"]["config"]).is_file()
        assert deployment["work_pool"]["name"] == "tunepipe-process"
    for schedule in deployments["weekly"]["schedules"]:
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
    retrain_job = workflow["jobs"]["retrain-on-new-data"]
    assert "refs/heads/main" in retrain_job["if"] and retrain_job["needs"] == "test"
    script = "\n".join(step.get("run", "") for step in retrain_job["steps"])
    assert "'*.dvc'" in script and "'dvc.lock'" in script
    deployed = re.search(r"prefect deployment run (\S+)", script).group(1)
    flow, name = deployed.split("/")
    assert flow == "retrain" and name in {d["name"] for d in load("prefect.yaml")["deployments"]}
