"""The label check (`data.label_issues`) with the real default encoder, scikit-learn and cleanlab: planted flips in
real Financial PhraseBank sentences are found, `drop` never touches the test split, `off` computes nothing, and the
messy inputs of other teams (other column names, multi-line fields) are checked the same way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline_lib.config import PipelineConfig
from pipeline_lib.data import label_issues
from pipeline_lib.layout import RunDir
from pipeline_lib.steps.validate import validate
from pipeline_lib.training.modeling import resolve_model_source

LABELS = ["negative", "neutral", "positive"]


def phrasebank(shared_data: Path, per_label: int) -> pd.DataFrame:
    """`per_label` AllAgree sentences of each label (the first ones: a fixed, real, nearly clean sample)."""
    lines = (shared_data / "financial_phrasebank" / "Sentences_AllAgree.txt").read_bytes().decode("iso-8859-1")
    rows = [line.rsplit("@", 1) for line in lines.splitlines() if "@" in line]
    frame = pd.DataFrame(rows, columns=["text", "label"]).drop_duplicates("text")
    return frame.groupby("label", group_keys=False).head(per_label).reset_index(drop=True)


def plant_flips(frame: pd.DataFrame, rows: np.ndarray, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    flipped = frame.copy()
    for i in rows:
        others = [label for label in LABELS if label != frame.at[i, "label"]]
        flipped.at[i, "label"] = others[rng.integers(len(others))]
    return flipped


def with_splits(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """An explicit split column: 70 % train, 15 % validation, 15 % test (seeded)."""
    draw = np.random.default_rng(seed).random(len(frame))
    return frame.assign(split=np.where(draw < 0.7, "train", np.where(draw < 0.85, "validation", "test")))


def cfg_for(path: Path, tmp_path: Path, **data: object) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "data": {"path": str(path), "labels": LABELS, **data},
            "paths": {"store": str(tmp_path / "store"), "read_roots": [str(tmp_path)], "write_roots": [str(tmp_path)]},
        }
    )


@pytest.mark.integration
def test_planted_flips_in_real_sentences_are_found(shared_data: Path, tmp_path: Path) -> None:
    clean = phrasebank(shared_data, 120).assign(split="train", row=lambda f: range(len(f)))
    planted = np.random.default_rng(11).choice(len(clean), size=18, replace=False)  # 5 %
    flipped = plant_flips(clean, planted)
    model = resolve_model_source("default")
    check = label_issues.find_label_issues(flipped, LABELS, model, tmp_path / "cache", seed=42)

    flagged = set(check.issues["row"])
    hits = flagged & set(planted.tolist())
    assert len(hits) >= 0.7 * len(planted), f"found {len(hits)} of {len(planted)} planted flips"
    assert len(flagged - hits) <= 0.5 * len(flagged), f"{len(flagged - hits)} false flags of {len(flagged)}"
    # the suggestion of a found flip is mostly its true label, and the most suspect rows come first
    truth = clean.set_index("row")["label"]
    found = check.issues[check.issues["row"].isin(hits)]
    assert (found["suggested"].to_numpy() == truth.loc[found["row"]].to_numpy()).mean() >= 0.7
    assert list(check.issues["score"]) == sorted(check.issues["score"])

    again = label_issues.find_label_issues(flipped, LABELS, model, tmp_path / "cache", seed=42)
    assert check.embeddings_cached == 0 and again.embeddings_cached == len(flipped)  # every text from the bank
    assert again.issues.equals(check.issues)
    grown = pd.concat([flipped, phrasebank(shared_data, 125).tail(5).assign(split="train", row=range(900, 905))])
    third = label_issues.find_label_issues(grown.reset_index(drop=True), LABELS, model, tmp_path / "cache", seed=42)
    assert third.embeddings_cached == len(flipped)  # a grown dataset embeds only its new rows


@pytest.mark.integration
def test_drop_never_touches_the_test_split(shared_data: Path, tmp_path: Path) -> None:
    frame = with_splits(phrasebank(shared_data, 90))
    train_rows = np.flatnonzero(frame["split"] == "train")[:12]
    test_rows = np.flatnonzero(frame["split"] == "test")[:4]
    flipped = plant_flips(frame, np.concatenate([train_rows, test_rows]))
    # another team's file: other column names, a multi-line text field
    flipped = flipped.rename(columns={"text": "headline", "label": "sentiment"})
    flipped.loc[0, "headline"] = flipped.loc[0, "headline"] + "\n(continued on page 2)"
    path = tmp_path / "news.csv"
    flipped.to_csv(path, index=False)
    columns = {"text_column": "headline", "label_column": "sentiment"}

    warned_run, dropped_run = RunDir(tmp_path / "warn"), RunDir(tmp_path / "drop")
    every_row = {"label_check": {"budget": None}}  # warn checks what its budget embeds; here: every row, as drop
    warned = validate(cfg_for(path, tmp_path, label_issues="warn", **columns, **every_row), warned_run)
    dropped = validate(cfg_for(path, tmp_path, label_issues="drop", **columns), dropped_run)

    issues = pd.read_parquet(dropped_run.label_issues)
    assert set(issues.columns) >= {"split", "row", "text", "label", "suggested", "score", "dropped"}
    assert warned.label_issues["flagged"] == dropped.label_issues["flagged"] == len(issues) > 0
    assert warned.label_issues["dropped"] == 0 and warned.rows["test"] == dropped.rows["test"]
    assert issues.loc[issues["split"] == "test", "dropped"].sum() == 0  # flagged in test: reported, kept
    assert (issues["split"] == "test").any(), "the planted test flips should be reported"
    for split in ("train", "validation"):
        gone = set(issues.loc[issues["dropped"] & (issues["split"] == split), "row"])
        kept = pd.read_parquet(dropped_run.split_file(split))
        assert gone.isdisjoint(kept["row"]) and len(kept) == warned.rows[split] - len(gone)
    cap = int(0.05 * (warned.rows["train"] + warned.rows["validation"]))
    assert 0 < dropped.label_issues["dropped"] <= cap == dropped.label_issues["drop_cap"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(warned_run.split_file("test")), pd.read_parquet(dropped_run.split_file("test"))
    )
    assert dropped.label_issues["dropped_keys_digest"]
    # the grouped report names the given → suggested pair, the place, and the option that changes it
    report = json.loads(dropped_run.validation_report.read_text())
    causes = [c for c in report["causes"] if c["rule"] == "label_issue"] or []
    warnings = [w for w in report["warnings"] if w["rule"] == "label_issue"]
    assert len(warnings) == len(issues) and all(w["file"] == str(path) for w in warnings)
    assert not causes  # warnings, not failures
    assert any("→" in w["value"] for w in warnings) and any("dropped" in w["message"] for w in warnings)


@pytest.mark.integration
def test_the_budget_bounds_one_run_and_later_runs_cover_the_rest(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = with_splits(phrasebank(shared_data, 90))
    train_rows = np.flatnonzero(frame["split"] == "train")
    flipped = plant_flips(frame, train_rows[:10])
    path = tmp_path / "news.csv"
    flipped.to_csv(path, index=False)
    embedded: list[int] = []
    real_embed = label_issues.embed
    monkeypatch.setattr(
        label_issues, "embed", lambda texts, *a, **k: embedded.append(len(texts)) or real_embed(texts, *a, **k)
    )

    allowance = 100  # rows one run may embed: budget x 3 forward passes x train rows x 1 epoch
    check = {"budget": (allowance + 0.5) / (3 * len(train_rows)), "min_rows": 50}
    cfg = cfg_for(path, tmp_path, label_check=check).model_copy(deep=True)
    cfg.train.epochs = 1
    runs = [validate(cfg, RunDir(tmp_path / f"warn{i}")).label_issues for i in range(3)]

    assert embedded == [allowance, allowance, len(frame) - 2 * allowance]
    assert [r["checked"] for r in runs] == [allowance, 2 * allowance, len(frame)]
    assert [r["unchecked"] for r in runs] == [len(frame) - allowance, len(frame) - 2 * allowance, 0]
    assert [r["embeddings_cached"] for r in runs] == [0, allowance, 2 * allowance]
    # the first run's rows are those whose texts' digests come first: a fixed sample, whatever the file's order
    first = sorted(flipped["text"], key=label_issues.text_digest)[:allowance]
    flagged_first = pd.read_parquet(RunDir(tmp_path / "warn0").label_issues)
    assert set(flagged_first["text"]) <= set(first)

    # once every row is in the bank, the flags are a full check's; drop checks every row in one run
    dropped = validate(cfg_for(path, tmp_path, label_issues="drop"), RunDir(tmp_path / "drop"))
    assert dropped.label_issues["checked"] == len(frame) and dropped.label_issues["embeddings_cached"] == len(frame)
    full = pd.read_parquet(RunDir(tmp_path / "drop").label_issues)
    last = pd.read_parquet(RunDir(tmp_path / "warn2").label_issues)
    assert list(last["text"]) == list(full["text"]) and len(last) > 0
    fresh = cfg_for(path, tmp_path, label_issues="drop").model_copy(deep=True)
    fresh.paths.store = str(tmp_path / "another-store")
    assert validate(fresh, RunDir(tmp_path / "drop2")).label_issues["checked"] == len(frame)
    assert embedded[-1] == len(frame)  # a store with an empty bank: drop embeds every row now


@pytest.mark.integration
def test_off_computes_no_embedding(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = with_splits(phrasebank(shared_data, 80))
    path = tmp_path / "x.csv"
    frame.to_csv(path, index=False)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the label check embedded texts with data.label_issues=off")

    monkeypatch.setattr(label_issues, "embed", refuse)
    cfg = cfg_for(path, tmp_path, label_issues="off")
    result = validate(cfg, RunDir(tmp_path / "run"))
    assert result.label_issues == {"status": "off (data.label_issues=off)"}
    assert not (cfg.paths.cache_dir / "embeddings").exists() and not RunDir(tmp_path / "run").label_issues.exists()


def test_too_few_rows_and_token_tasks_are_skipped_with_the_reason(tmp_path: Path) -> None:
    rows = [{"text": f"Sentence {i} about a {lb} quarter.", "label": lb} for i in range(20) for lb in LABELS]
    path = tmp_path / "x.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    result = validate(cfg_for(path, tmp_path), RunDir(tmp_path / "run"))
    assert result.label_issues["status"] == "skipped: 60 labelled rows < data.label_check.min_rows=200"


def test_out_of_sample_probabilities_cover_every_label_and_row() -> None:
    rng = np.random.default_rng(0)
    y = np.array([0] * 30 + [1] * 30 + [2] * 3)  # a rare class, fewer rows than folds
    features = rng.normal(size=(len(y), 8)) + np.eye(3)[y] @ rng.normal(size=(3, 8)) * 3
    probs = label_issues.out_of_sample_probabilities(features, y, 3, folds=5, seed=1)
    assert probs.shape == (63, 3) and np.allclose(probs.sum(1), 1.0)
    assert (probs.argmax(1) == y)[:60].mean() > 0.9


def test_yaml_off_and_on_mean_what_they_say(tmp_path: Path) -> None:
    from pipeline_lib.config import load_config

    config = tmp_path / "c.yaml"
    config.write_text("data:\n  label_issues: off\n")
    assert load_config(config).data.label_issues == "off"  # YAML 1.1 reads a bare off as false
    assert load_config(config, ["data.label_issues=on"]).data.label_issues == "warn"
    assert load_config(config, ["data.label_issues=drop"]).data.label_issues == "drop"


def test_bf16_embeddings_match_fp32_and_keep_a_bank_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a CPU with bf16 hardware the bank is embedded in bf16 (about 2x faster on AMX): the same vectors to 3
    decimals of cosine, in a bank of its own, so fp32 and bf16 vectors never mix."""
    texts = ["Operating profit rose to EUR 13.1 mn.", "The company will cut 120 jobs.", "The meeting is on Tuesday."]
    source = resolve_model_source("default")
    fp32 = label_issues.embed(texts, source, precision="fp32")
    bf16 = label_issues.embed(texts, source, precision="bf16")
    assert fp32.dtype == bf16.dtype == np.float32 and fp32.shape == bf16.shape
    halves = fp32.shape[1] // 2  # middle layer and last layer, each L2-normalised
    for part in (slice(0, halves), slice(halves, None)):
        assert (fp32[:, part] * bf16[:, part]).sum(1).min() > 0.999
    assert not np.array_equal(fp32, bf16)

    banks = tmp_path / "cache" / "embeddings"
    for precision in ("fp32", "bf16"):
        monkeypatch.setattr(label_issues, "embedding_precision", lambda p=precision: p)
        vectors, has, cached = label_issues.cached_embeddings(texts, source, tmp_path / "cache")
        assert has.all() and cached == 0  # each precision embeds into its own bank
        np.testing.assert_allclose(vectors, fp32 if precision == "fp32" else bf16, atol=1e-6)
    assert len(list(banks.glob("*.npz"))) == 2
    assert label_issues.encoder_key(source, 128) == label_issues.encoder_key(source, 128, "fp32")  # kept as it was
