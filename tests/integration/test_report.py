"""The model card and HTML report logged with a registered version; the HTML renders in headless Chromium."""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from pathlib import Path

import mlflow
import pytest
from PIL import Image  # a matplotlib dependency

from pipeline_lib.config import load_config
from pipeline_lib.layout import new_run
from pipeline_lib.registry import store
from pipeline_lib.steps import STEPS, run_step

from .conftest import overrides

pytestmark = pytest.mark.integration
NAME = "financial-sentiment"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        pytest.skip("headless Chromium is not installed (apt-get install -y chromium)")
    return found


@pytest.fixture(scope="module")
def reports(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Register one version (two training steps) and download its logged report artifacts."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workspace)
        cfg = load_config(None, overrides("train.max_steps=2"))
        run = new_run(cfg.paths.artifacts)
        for name in STEPS:
            run_step(name, cfg, run)
        version = store.resolve(store.connect(cfg), store.ModelRef(NAME, version="1"))
        target = tmp_path_factory.mktemp("report")
        folder = mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path="report", dst_path=target)
    return {"html": Path(folder) / "report.html", "card": Path(folder) / "model_card.md"}


def test_model_card_has_metrics_with_ci_and_gate_table(reports: dict[str, Path]):
    card = reports["card"].read_text()
    assert card.startswith("# Model card: financial-sentiment v1")
    assert "| macro_f1 |" in card and "95% bootstrap CI" in card
    assert "| beats_champion | PASS | no champion yet" in card
    assert "alias `@champion`" in card


def test_html_report_renders_in_headless_chromium(reports: dict[str, Path]):
    browser = chromium()
    html = reports["html"]
    with tempfile.TemporaryDirectory() as profile:
        shot = Path(profile) / "shot.png"
        common = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1200,2000"]
        subprocess.run([*common, f"--screenshot={shot}", html.as_uri()], check=True, capture_output=True, timeout=120)
        dom = subprocess.run(
            [*common, "--dump-dom", html.as_uri()], check=True, capture_output=True, text=True, timeout=120
        ).stdout
        png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    with Image.open(io.BytesIO(png)) as img:
        assert img.size == (1200, 2000)
        colours = img.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colours is not None and len(colours) > 50, "the screenshot is blank"
    assert "financial-sentiment v1" in dom
    assert 'id="gates"' in dom and "beats_champion" in dom and "no champion yet" in dom
    assert 'id="confusion"' in dom and 'id="curves"' in dom and "data:image/png;base64," in dom
    assert 'id="gx"' in dom and ">PASS<" in dom
