"""Two retrain runs at once on the same model name: exactly one champion and a consistent ledger."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_lib.config import load_config
from pipeline_lib.registry import ledger, store

from .conftest import cli_sets, overrides

pytestmark = pytest.mark.integration
NAME = "concurrent-test"


def test_two_concurrent_runs_leave_one_champion_and_a_consistent_ledger(in_workspace: Path):
    command = [sys.executable, "-m", "flows.cli", "run", "--force", *cli_sets(f"registry.model_name={NAME}")]
    env = {**os.environ}
    procs = [
        subprocess.Popen(command, cwd=in_workspace, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=600)[0].decode() for proc in procs]
    tails = "\n".join(
        f"--- run {i} exited {p.returncode}:\n{out[-3000:]}"
        for i, (p, out) in enumerate(zip(procs, outputs, strict=True))
    )
    assert [proc.returncode for proc in procs] == [0, 0], tails

    client = store.connect(load_config(None, overrides()))
    versions = client.search_model_versions(f"name='{NAME}'")
    assert len(versions) == 2
    aliases = {str(v.version): client.get_model_version(NAME, v.version).aliases for v in versions}
    holders = [version for version, names in aliases.items() if "champion" in names]
    assert len(holders) == 1, aliases
    records = ledger.read(client, NAME)
    promotions = [r for r in records if r["action"] == "promote"]
    refusals = [r for r in records if r["action"] == "refuse"]
    assert len(promotions) == 1 and len(refusals) == 1
    assert promotions[0]["version"] == holders[0] and promotions[0]["previous_champion"] is None
    assert refusals[0]["version"] != holders[0]
