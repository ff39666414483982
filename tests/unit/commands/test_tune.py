"""When the scheduled retrain searches again: the data versions counted since the last study, on a real MLflow store
with bare registered versions and a real Optuna study in sqlite storage."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_lib.commands.tune import retune_decision
from pipeline_lib.config import load_config
from pipeline_lib.data.versions import file_md5
from pipeline_lib.training import tuning

from ..stores import store_with_versions

NAME = "retuned"


def tag(client, version: str, study: str, searched_on: str, trained_on: str) -> None:
    """What registration tags on a version trained with a study's values (`registry.lineage.tuning_tags`)."""
    for key, value in {"tune.study": study, "tune.data_md5": searched_on, "data.md5": trained_on}.items():
        client.set_model_version_tag(NAME, version, key, value)


def test_the_retrain_searches_again_every_k_new_data_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(tuning.STORAGE_ENV, raising=False)
    _, client, _ = store_with_versions(tmp_path, monkeypatch, NAME, 3)
    data = tmp_path / "data.csv"
    data.write_text("text,label\na,x\n")
    first = file_md5(data)

    def decide(every: int):
        sets = [f"paths.store={tmp_path / 'store'}", f"registry.model_name={NAME}", f"data.path={data}"]
        return retune_decision(load_config(None, [*sets, f"tune.retune_every={every}"]))

    off = decide(0)
    assert not off.retune and off.study is None
    never = decide(1)
    assert (
        never.retune and never.study == f"{NAME}-{first[:8]}" and "no version of retuned was tuned yet" in never.reason
    )

    tag(client, "1", "s1", first, first)
    missing = decide(1)
    assert missing.retune and "no study 's1'" in missing.reason
    tuning.open_study(load_config(None, [f"paths.store={tmp_path / 'store'}", "tune.study=s1"]))
    same = decide(1)
    assert not same.retune and same.study == "s1" and same.versions_since == 0

    data.write_text("text,label\na,x\nb,y\n")  # a new data version
    second = file_md5(data)
    assert decide(1).retune and decide(1).versions_since == 1 and decide(1).study == f"{NAME}-{second[:8]}"
    waiting = decide(2)
    assert (
        not waiting.retune and waiting.study == "s1" and "1 of 2 new data version(s) since study s1" in waiting.reason
    )

    tag(client, "2", "s1", first, second)  # trained with s1's values
    data.write_text("text,label\na,x\nb,y\nc,z\n")
    due = decide(2)
    assert due.retune and due.versions_since == 2 and "2 new data version(s) since study s1" in due.reason

    tag(client, "3", "s2", file_md5(data), file_md5(data))  # searched again
    tuning.open_study(load_config(None, [f"paths.store={tmp_path / 'store'}", "tune.study=s2"]))
    latest = decide(2)
    assert not latest.retune and latest.study == "s2" and latest.versions_since == 0
