"""A user's own data, right the first time: messy files this project never saw (other column names, quoted
multi-line tweets, near-duplicates, conflicting labels, mojibake, a rare third label; a tab-separated NER file with
lower-case entity types), through `tunepipe init` and `tunepipe run`, with no hand-written label list."""

from __future__ import annotations

import csv
import json
import random
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline_lib.data.keys import text_key

from .conftest import FAST_RUN
from .servers import child_env

pytestmark = pytest.mark.integration
AIRLINES = ["united", "AmericanAir", "SouthwestAir", "JetBlue", "Delta"]
GOOD = ["thanks for the upgrade", "great crew today", "smooth flight, on time", "love the new seats", "fast boarding"]
BAD = ["lost my bag again", "delayed three hours", "rude agent at the gate", "cancelled with no notice", "dirty cabin"]
FLAT = ["flying to Denver tomorrow", "what is the baggage limit?"]


def tunepipe(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["tunepipe", *args], cwd=cwd, env=child_env(), capture_output=True, text=True)
    if check:
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done


def sets(*extra: str) -> list[str]:
    return [arg for item in [*FAST_RUN, *extra] for arg in ("--set", item)]


def write_tweets(path: Path) -> dict[str, list[str]]:
    """About 160 tweets in the columns of a public airline-sentiment file, with the trouble real files have."""
    rng = random.Random(5)
    rows = []
    for i in range(150):
        label = "positive" if i % 2 else "negative"
        phrase = rng.choice(GOOD if label == "positive" else BAD)
        rows.append({"tweet_id": 5_000 + i, "airline_sentiment": label, "text": f"@{AIRLINES[i % 5]} {phrase} #{i}"})
    rows += [
        {"tweet_id": 6_000 + i, "airline_sentiment": "neutral", "text": f"@Delta {FLAT[i % 2]} ({i})"} for i in range(8)
    ]
    near = ["@united Thank You for the help", "@united thank you  for the help", "@UNITED Thank you for the help"]
    rows += [{"tweet_id": 7_000 + i, "airline_sentiment": "positive", "text": text} for i, text in enumerate(near)]
    rows.append({"tweet_id": 7_100, "airline_sentiment": "positive", "text": "@JetBlue see you in Boston, friends"})
    rows.append({"tweet_id": 7_101, "airline_sentiment": "negative", "text": "@JetBlue SEE YOU IN BOSTON,\t friends"})
    rows.append(
        {"tweet_id": 7_102, "airline_sentiment": "positive", "text": "@Delta boarding now\nwifi works\nsee you"}
    )
    rows.append({"tweet_id": 7_200, "airline_sentiment": "negative", "text": "@SouthwestAir donâ€™t ever lose my bag"})
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["tweet_id", "airline_sentiment", "text"], quoting=csv.QUOTE_NONNUMERIC)
        writer.writeheader()
        writer.writerows(rows)
    return {"near": near}


def write_tagged(path: Path) -> None:
    """Tab-separated token/tag lines, blank lines between tweets, ten lower-case entity types (WNUT-style)."""
    kinds = ["person", "location", "company", "product", "group", "facility", "movie", "musicartist", "sportsteam"]
    kinds.append("tvshow")
    rng = random.Random(11)
    sentences = []
    for i in range(120):
        kind = kinds[i % len(kinds)]
        name = [f"Name{i}", f"Part{i % 7}"][: 1 + i % 2]
        words = ["so", "excited", "about", *name, "tonight", f"#{i}"]
        tags = ["O", "O", "O", f"B-{kind}", *([f"I-{kind}"] * (len(name) - 1)), "O", "O"]
        if rng.random() < 0.3:
            words, tags = ["@user", *words], ["O", *tags]
        sentences.append("\n".join(f"{w}\t{t}" for w, t in zip(words, tags, strict=True)))
    path.write_text("\n\n".join(sentences) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("own-data")
    (root / "incoming").mkdir()
    return root


def test_a_raw_config_fails_once_per_cause_naming_the_option_that_fixes_it(project: Path):
    near = write_tweets(project / "incoming" / "tweets.csv")["near"]
    raw = ["--set", "data.path=incoming/tweets.csv", "--set", "data.label_column=airline_sentiment", *sets()]
    failed = tunepipe(project, "run", *raw, check=False)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    output = failed.stderr[failed.stderr.rindex("error: data validation failed") :]  # the CLI's own message
    causes = [line.strip() for line in output.splitlines() if re.match(r"\s+\d+ .*\[\w+\], e\.g\.", line)]
    rules = [re.search(r"\[(\w+)\]", line).group(1) for line in causes]
    assert "conflicting_labels" in rules and len(rules) == len(set(rules)), causes  # one line per cause
    assert "fix: set data.drop_conflicting=true" in output
    if "text_unique_in_split" in rules:  # the near-duplicates share a split, so they repeat in it
        assert "fix: set data.drop_duplicates=true" in output
    assert all(text_key(t) == text_key(near[0]) for t in near)


def test_init_then_run_registers_a_champion_from_a_messy_csv(project: Path):
    written = tunepipe(project, "init", "incoming/tweets.csv", "-o", "configs/tweets.yaml")
    config = yaml.safe_load((project / "configs" / "tweets.yaml").read_text())
    data = config["data"]
    assert (data["text_column"], data["label_column"]) == ("text", "airline_sentiment")
    assert data["drop_duplicates"] and data["drop_conflicting"] and data["fix_text"] and "labels" not in data
    assert "data.drop_conflicting" in written.stdout and "labels: negative" in written.stdout

    progress = ["--set", "output.progress_interval_s=0.05", "--set", "output.progress_bar=never"]
    run = tunepipe(project, "run", "--config", "configs/tweets.yaml", *sets(), *progress)
    output = run.stdout + run.stderr
    assert re.search(r"labels \(inferred from the training split\): negative, neutral, positive", output), output
    steps = [line for line in output.splitlines() if re.search(r"training: \d+/\d+ steps", line)]
    assert steps and all("samples/s" in line and "ETA" in line and "epoch" in line for line in steps[:-1]), output
    lineage = json.loads(tunepipe(project, "lineage", "tweets@champion", "--json", *sets()).stdout)
    assert lineage["config"]["data"]["inferred_labels"] == ["negative", "neutral", "positive"]
    run_dir = next((project / "artifacts" / "runs").glob("*/register/result.json")).parents[1]
    frames = {s: pd.read_parquet(run_dir / "data" / f"{s}.parquet") for s in ("train", "validation", "test")}
    owners = pd.concat(f.assign(split=s) for s, f in frames.items()).assign(key=lambda f: f["text"].map(text_key))
    assert (owners.groupby("key")["split"].nunique() == 1).all()  # near-duplicates never straddle splits
    assert not owners["text"].str.contains("â€™").any()  # the mojibake was repaired
    assert any("\n" in text for text in owners["text"])  # the multi-line tweet arrived whole
    report = json.loads((run_dir / "validation" / "report.json").read_text())
    assert report["labels_inferred"] and report["fixed_texts"] >= 1


def test_init_then_run_registers_an_ner_champion_from_a_tab_separated_file(project: Path):
    write_tagged(project / "incoming" / "wnut.tsv")
    written = tunepipe(project, "init", "incoming/wnut.tsv", "-o", "configs/wnut.yaml", "--name", "wnut-ner")
    config = yaml.safe_load((project / "configs" / "wnut.yaml").read_text())
    assert config["task"] == "token_classification" and config["data"]["format"] == "conll"
    assert "labels" not in config["data"] and "person" in written.stdout
    run = tunepipe(project, "run", "--config", "configs/wnut.yaml", *sets())
    assert "wnut-ner v1 promoted to champion" in run.stdout, run.stdout[-3000:]
    lineage = json.loads(tunepipe(project, "lineage", "wnut-ner@champion", "--json", *sets()).stdout)
    labels = lineage["config"]["data"]["inferred_labels"]
    assert labels[0] == "O" and {"B-person", "I-person", "B-tvshow"} <= set(labels) and len(labels) == 21
    assert lineage["config"]["gates"]["compare_metric"] == "entity_f1"  # not the classification defaults
