"""A default run prints no library deprecation warnings: a user reads them as something they did wrong.

pyproject's pytest `filterwarnings` hides DeprecationWarning and FutureWarning inside the test process, so the run
is a subprocess with Python's own warning filters, as a user's `tunepipe run` is, and its whole output is read."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from . import conftest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
# the default config on the tiny sample, every step run (no shared step cache) and the serving runtime chosen by
# measurement as by default; only the training is cut short and the floors dropped
TINY_DEFAULT_RUN = [
    "data.path=data/sample.csv",
    "train.max_steps=4",
    "gates.floors={}",
    "gates.latency_samples=10",
    *conftest.PRIVATE_CACHE,
]
DEPRECATED = re.compile(r"DeprecationWarning|FutureWarning|PendingDeprecationWarning|deprecated", re.I)


def test_a_default_run_prints_no_deprecation_warning(workspace: Path):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = str(REPO)
    sets = [arg for item in TINY_DEFAULT_RUN for arg in ("--set", item)]
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", *sets], cwd=workspace, env=env, capture_output=True, text=True
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    assert "financial-sentiment" in output  # it ran to registration
    flagged = [line for line in output.splitlines() if DEPRECATED.search(line)]
    assert not flagged, "\n".join(flagged)
