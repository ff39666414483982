"""`dvc repro` of the project's dvc.yaml in a throw-away git + DVC repository (tiny slice, fast training):
a second repro re-runs nothing, a changed training parameter re-runs training and what follows it but not
validate/tokenize, and the registered model's lineage names the hashes dvc.lock records."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline_lib.config import load_config
from pipeline_lib.data.versions import SEED_DATASET, dvc_pointer_md5

from .conftest import FAST_RUN
from .repos import dvc, git_dvc_project
from .servers import child_env

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
DATA = "data/financial_sentiment.csv"
ALL_STAGES = ["validate", "tokenize", "train", "export", "evaluate", "gate", "register"]


def ran(output: str) -> list[str]:
    return [stage for stage in ALL_STAGES if f"Running stage '{stage}'" in output]


def lineage(project: Path, ref: str) -> dict:
    args = ["tunepipe", "lineage", ref, "--json", "--config", "params.yaml"]
    done = subprocess.run(args, cwd=project, env=child_env(), capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def lock(project: Path) -> dict:
    return yaml.safe_load((project / "dvc.lock").read_text())["stages"]


def locked_md5(project: Path, stage: str, path: str) -> str:
    return next(d["md5"] for d in lock(project)[stage]["deps"] if d["path"] == path)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repo's dvc.yaml, library and fast params over a 90-row slice, versioned with a local remote."""
    root = tmp_path_factory.mktemp("dvc-project")
    shutil.copy(REPO / "dvc.yaml", root)
    shutil.copy(REPO / ".dvcignore", root)
    shutil.copytree(REPO / "pipeline_lib", root / "pipeline_lib", ignore=shutil.ignore_patterns("__pycache__"))
    params = load_config(REPO / "configs" / "default.yaml", FAST_RUN)
    (root / "params.yaml").write_text(params.to_yaml())
    sample = pd.read_csv(SEED_DATASET).groupby("label", group_keys=False).head(30)
    return git_dvc_project(root, DATA, sample, ignore=".tunepipe/\n")


@pytest.fixture(scope="module")
def first_repro(project: Path) -> str:
    return dvc(project, "repro")


def test_first_repro_runs_every_stage_and_lineage_names_the_locked_hashes(project: Path, first_repro: str):
    assert ran(first_repro) == ALL_STAGES
    data_md5 = locked_md5(project, "validate", DATA)
    assert data_md5 == dvc_pointer_md5(project / DATA)
    info = lineage(project, "financial-sentiment@champion")
    assert info["version"] == "1"
    assert info["data"]["md5"] == data_md5 and info["data"]["dvc_md5"] == data_md5
    assert info["config_hash"] == load_config(project / "params.yaml").config_hash()
    assert info["config"]["train"] == lock(project)["train"]["params"]["params.yaml"]["train"]


def test_second_repro_reruns_nothing(project: Path, first_repro: str):
    assert "up to date" in dvc(project, "status")
    again = dvc(project, "repro")
    assert ran(again) == []
    assert all(f"'{stage}' didn't change" in again for stage in ALL_STAGES), again


def test_changed_training_parameter_reruns_training_not_validation(project: Path, first_repro: str):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["learning_rate"] = 2e-4
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = dvc(project, "status")
    assert "train:" in status and "validate:" not in status and "tokenize:" not in status

    output = dvc(project, "repro")

    assert ran(output) == ["train", "export", "evaluate", "gate", "register"], output
    assert lock(project)["train"]["params"]["params.yaml"]["train"]["learning_rate"] == 2e-4
    info = lineage(project, "financial-sentiment/2")
    assert info["data"]["md5"] == locked_md5(project, "validate", DATA)
    assert info["config"]["train"]["learning_rate"] == 2e-4
    assert info["config_hash"] == load_config(project / "params.yaml").config_hash()
    assert "up to date" in dvc(project, "status")
