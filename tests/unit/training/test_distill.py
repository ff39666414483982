"""Knowledge distillation (`train.distill`): a real teacher (the default encoder with a seeded head, exported to ONNX
by the export step) teaches the real student through the Trainer on a tiny split."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from pipeline_lib.config import DistillSettings, PipelineConfig
from pipeline_lib.layout import RunDir, read_json, write_json
from pipeline_lib.registry.lineage import distill_tags
from pipeline_lib.runtime.predictor import OnnxPredictor
from pipeline_lib.steps.cache import fingerprint
from pipeline_lib.steps.export import export
from pipeline_lib.steps.teacher import resolve_teacher, teacher_logits
from pipeline_lib.steps.train import train
from pipeline_lib.training.distill import DistillError, distillation_loss
from pipeline_lib.training.modeling import load_classifier, load_tokenizer, resolve_model_source
from tests.unit.tiny import ROWS, tiny_config, tokenized_run

STUDENT_LABELS = ["negative", "neutral", "positive"]
TEACHER_LABELS = ["positive", "negative", "neutral"]  # another order: its columns are mapped by name


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A teacher run directory: the default encoder with a seeded, scaled head (its own opinions, held firmly, some
    against the gold labels), exported (fp32 graph)."""
    run = RunDir(tmp_path_factory.mktemp("teacher") / "run")
    source = resolve_model_source("default")
    torch.manual_seed(3)
    model = load_classifier(source, TEACHER_LABELS)
    with torch.no_grad():  # a confident teacher: a fresh head's logits are near 0, its soft labels near uniform
        model.classifier.weight.mul_(200)
    model.save_pretrained(run.model_dir)
    load_tokenizer(source).save_pretrained(run.model_dir)
    run.split_file("test").parent.mkdir(parents=True)
    pd.DataFrame(ROWS, columns=["text", "label"]).to_parquet(run.split_file("test"))
    export(
        PipelineConfig.model_validate({"data": {"labels": TEACHER_LABELS}, "export": {"select_runtime": False}}), run
    )
    return run.root


@pytest.fixture
def tokenized(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunDir:
    monkeypatch.chdir(tmp_path)  # the config's store is ./store
    return tokenized_run(tmp_path / "run", config())


def config(*extra: str) -> PipelineConfig:
    return tiny_config("train.epochs=4", "train.early_stopping_patience=0", *extra)


def teacher_labels_of(teacher: Path, texts: list[str]) -> np.ndarray:
    """The teacher's predicted label per text, as student label ids."""
    logits = OnnxPredictor.from_dir(teacher / "onnx").logits(texts)
    return np.array([STUDENT_LABELS.index(TEACHER_LABELS[i]) for i in logits.argmax(-1)])


def student_labels_of(run: RunDir, texts: list[str]) -> np.ndarray:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(run.model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(run.model_dir)
    with torch.inference_mode():
        return model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.argmax(-1).numpy()


def weights(run: RunDir) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run.model_dir / "model.safetensors")


def test_teacher_logits_are_computed_once_then_served_from_the_cache(teacher: Path, tmp_path: Path):
    cfg = config(f"train.distill.teacher={teacher}", f"paths.store={tmp_path / 'store'}")
    resolved = resolve_teacher(cfg)
    texts = [text for text, _ in ROWS]
    first, cached_first = teacher_logits(cfg, resolved, texts)
    second, cached_second = teacher_logits(cfg, resolved, texts)
    assert (cached_first, cached_second) == (False, True)
    np.testing.assert_array_equal(first, second)
    raw = OnnxPredictor.from_dir(teacher / "onnx").logits(texts)  # the teacher's own column order
    np.testing.assert_allclose(first, raw[:, [TEACHER_LABELS.index(label) for label in STUDENT_LABELS]], atol=1e-6)
    assert len(list((tmp_path / "store" / "cache" / "teacher-logits").glob("*.npy"))) == 1


def test_the_loss_is_alpha_ce_plus_scaled_kl_and_plain_ce_at_alpha_one():
    torch.manual_seed(0)
    student, teacher_logits_ = torch.randn(5, 3), torch.randn(5, 3)
    gold = torch.tensor([0, 2, 1, 1, 0])
    packed = torch.column_stack([gold.float(), teacher_logits_])
    outputs = {"logits": student}
    ce = F.cross_entropy(student, gold)
    assert torch.equal(distillation_loss(DistillSettings(teacher="t", alpha=1.0))(outputs, packed), ce)
    assert torch.equal(distillation_loss(DistillSettings(teacher="t", alpha=0.3))(outputs, gold), ce)  # validation
    t = 2.5
    p_teacher = F.softmax(teacher_logits_ / t, -1)
    kl = (p_teacher * (p_teacher.log() - F.log_softmax(student / t, -1))).sum(-1).mean() * t * t
    got = distillation_loss(DistillSettings(teacher="t", alpha=0.3, temperature=t))(outputs, packed)
    assert got.item() == pytest.approx((0.3 * ce + 0.7 * kl).item(), rel=1e-5)
    assert got.item() != pytest.approx(ce.item(), rel=1e-3)


def test_alpha_one_trains_exactly_the_plain_weights(teacher: Path, tokenized: RunDir, tmp_path: Path):
    train(config(), tokenized)
    plain = weights(tokenized)
    train(config(f"train.distill.teacher={teacher}", "train.distill.alpha=1"), tokenized)
    distilled = weights(tokenized)
    assert plain.keys() == distilled.keys()
    assert all(torch.equal(plain[name], distilled[name]) for name in plain)
    assert read_json(tokenized.train_summary)["distill"]["alpha"] == 1.0


@pytest.mark.parametrize(
    ("adaptation", "trains"),
    [
        (["train.lora.enabled=true"], r"attention\.self\.(query|value)\.|classifier\."),  # the adapters, merged
        (["train.freeze=top_k", "train.trainable_top_layers=1"], r"\.layer\.5\.|pooler\.|classifier\."),
    ],
    ids=["lora", "top_k"],
)
def test_the_soft_loss_reaches_what_lora_or_freezing_trains_and_nothing_they_keep(
    teacher: Path, tokenized: RunDir, adaptation: list[str], trains: str
):
    train(config(*adaptation), tokenized)
    plain = weights(tokenized)
    train(config(*adaptation, f"train.distill.teacher={teacher}", "train.distill.alpha=0"), tokenized)
    distilled = weights(tokenized)
    changed = {name for name in plain if not torch.equal(plain[name], distilled[name])}
    assert changed, "the teacher's loss changed no weight"
    assert all(re.search(trains, name) for name in changed), sorted(changed)
    assert read_json(tokenized.train_summary)["distill"]["alpha"] == 0.0


def test_distilling_raises_agreement_with_the_teacher(teacher: Path, tokenized: RunDir):
    texts = [text for text, _ in ROWS]
    wanted = teacher_labels_of(teacher, texts)
    gold = np.array([STUDENT_LABELS.index(label) for _, label in ROWS])
    assert (wanted != gold).any(), "the planted case needs a teacher that disagrees with some gold labels"
    train(config(), tokenized)
    plain = float((student_labels_of(tokenized, texts) == wanted).mean())
    train(config(f"train.distill.teacher={teacher}", "train.distill.alpha=0", "train.distill.temperature=1"), tokenized)
    distilled = float((student_labels_of(tokenized, texts) == wanted).mean())
    assert distilled > plain, (plain, distilled)
    record = read_json(tokenized.train_summary)["distill"]
    assert record["reference"] == str(teacher) and record["labels"] == TEACHER_LABELS
    tags = distill_tags(tokenized)
    assert tags["distill.teacher"] == str(teacher) and tags["distill.alpha"] == "0.0"
    assert tags["distill.teacher_digest"] == resolve_teacher(config(f"train.distill.teacher={teacher}")).digest


def test_a_search_trial_distils_over_the_study_base_splits(teacher: Path, tmp_path: Path, monkeypatch):
    """`tunepipe tune` with train.distill.alpha/temperature in its space: a trial's run directory holds links to the
    study's split files and tokenized data, so its train step finds the training texts the teacher labels."""
    from pipeline_lib.commands.tune import StudyDir

    monkeypatch.chdir(tmp_path)
    cfg = config(f"train.distill.teacher={teacher}", "train.distill.alpha=0.2", "train.epochs=1")
    folder = StudyDir(tmp_path / "study")
    tokenized_run(folder.base.root, cfg)
    before = folder.base.split_file("train").read_bytes()

    run = folder.new_trial(3)
    train(cfg, run)

    assert read_json(run.train_summary)["distill"]["alpha"] == 0.2
    assert run.split_file("train").read_bytes() == before and run.split_file("train").parent.is_symlink()
    assert folder.new_trial(3).root == run.root and not run.model_dir.exists()  # a rerun of the trial starts clean


def test_the_train_step_cache_key_names_the_teacher(teacher: Path, tokenized: RunDir):
    plain = fingerprint("train", config(), tokenized)
    distilled = fingerprint("train", config(f"train.distill.teacher={teacher}"), tokenized)
    assert plain.parts["teacher"] == "none" and distilled.parts["teacher"] != "none"
    assert plain.key != distilled.key


def test_a_teacher_with_other_labels_is_refused_naming_both(teacher: Path):
    cfg = config(f"train.distill.teacher={teacher}", "data.labels=[bad, good]")
    with pytest.raises(DistillError) as caught:
        resolve_teacher(cfg)
    message = str(caught.value)
    assert str(TEACHER_LABELS) in message and "['bad', 'good']" in message and "data.labels" in message


def test_without_data_labels_the_teacher_is_checked_against_the_labels_validate_inferred(
    teacher: Path, tokenized: RunDir
):
    """The default config names no labels: the early check passes, the train step's key checks the run's labels."""
    unset = config(f"train.distill.teacher={teacher}", "data.labels=null")
    assert resolve_teacher(unset).labels == TEACHER_LABELS  # before validate: nothing to compare yet
    write_json(tokenized.validation_report, {"labels": STUDENT_LABELS})
    assert fingerprint("train", unset, tokenized).parts["teacher"] != "none"
    write_json(tokenized.validation_report, {"labels": ["bad", "good"]})
    with pytest.raises(DistillError, match=r"differ from the student's \['bad', 'good'\]"):
        fingerprint("train", unset, tokenized)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [("nowhere-at-all", "NAME@ALIAS"), (".", "neither an ONNX folder")],
)
def test_a_teacher_that_is_not_there_is_one_clear_error(reference: str, expected: str, tmp_path: Path):
    with pytest.raises(DistillError, match=expected):
        resolve_teacher(config(f"train.distill.teacher={reference}", f"paths.store={tmp_path}"))


def test_a_teacher_of_another_task_is_refused_naming_both(teacher: Path):
    cfg = config(f"train.distill.teacher={teacher}", "task=token_classification", "data.labels=[O, B-ORG, I-ORG]")
    with pytest.raises(DistillError, match="a sequence_classification teacher cannot teach a token_classification"):
        resolve_teacher(cfg)


def test_the_gate_table_shows_the_teacher_beside_its_student(teacher: Path, tmp_path: Path):
    from pipeline_lib.gates.checks import GateResult
    from pipeline_lib.steps.teacher import teacher_figures

    cfg = config(
        f"train.distill.teacher={teacher}", f"paths.store={tmp_path / 'store'}", "gates.compare_metric=accuracy"
    )
    texts = [text for text, _ in ROWS]
    gold = np.array([STUDENT_LABELS.index(label) for _, label in ROWS])
    wanted = teacher_labels_of(teacher, texts)
    student = gold.copy()  # a student that is always right
    figures = teacher_figures(cfg, pd.DataFrame(ROWS, columns=["text", "label"]), gold, student)
    assert figures["teacher"] == str(teacher) and figures["rows"] == len(texts)
    assert figures["student_metric"] == 1.0
    assert figures["teacher_metric"] == pytest.approx(float((wanted == gold).mean()), abs=1e-6)
    assert figures["agreement"] == pytest.approx(float((wanted == student).mean()), abs=1e-6)
    table = GateResult(passed=True, teacher=figures).table()
    assert f"teacher {teacher}: accuracy" in table and "(this student 1.0000)" in table


def test_run_refuses_a_wrong_teacher_before_anything_starts(teacher: Path, tmp_path: Path, monkeypatch):
    from typer.testing import CliRunner

    from flows.cli import app

    monkeypatch.chdir(tmp_path)
    sets = ["--set", "data.labels=[bad, good]", "--set", f"train.distill.teacher={teacher}"]
    result = CliRunner().invoke(app, ["run", *sets])
    assert result.exit_code == 1
    assert "train.distill.teacher" in result.output and "['bad', 'good']" in result.output
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / ".tunepipe").exists()  # nothing started


def test_unlabeled_rows_get_the_soft_loss_only():
    torch.manual_seed(1)
    student, teacher_logits_ = torch.randn(4, 3), torch.randn(4, 3)
    gold = torch.tensor([2, -100, 0, -100])  # rows 1 and 3: from train.distill.unlabeled
    packed = torch.column_stack([gold.float(), teacher_logits_])
    settings = DistillSettings(teacher="t", alpha=0.4, temperature=2.0)
    p_teacher = F.softmax(teacher_logits_ / 2.0, -1)
    kl = (p_teacher * (p_teacher.log() - F.log_softmax(student / 2.0, -1))).sum(-1).mean() * 4.0
    ce_known = F.cross_entropy(student[[0, 2]], gold[[0, 2]])
    got = distillation_loss(settings)({"logits": student}, packed)
    assert got.item() == pytest.approx((0.4 * ce_known + 0.6 * kl).item(), rel=1e-5)
    only_unlabeled = torch.column_stack([torch.full((4,), -100.0), teacher_logits_])
    got = distillation_loss(settings)({"logits": student}, only_unlabeled)
    assert torch.isfinite(got) and got.item() == pytest.approx((0.6 * kl).item(), rel=1e-5)


def test_unlabeled_texts_are_read_from_another_teams_file_without_the_runs_texts(tmp_path: Path):
    from pipeline_lib.steps.teacher import unlabeled_texts

    in_test = ROWS[0][0]
    frame = pd.DataFrame(
        {
            "headline": [
                "Nokia shares slide after the profit warning.",
                f"  {in_test.upper()}  ",  # a run's text, other case and spacing: would leak
                "",
                "Quarterly sales rose\nacross every region.",  # a multi-line field
                "Nokia shares slide after the profit warning.",  # repeated
            ],
            "id": range(5),
        }
    )
    path = tmp_path / "news.csv"
    frame.to_csv(path, index=False)
    cfg = config(f"train.distill.unlabeled={path}", "data.text_column=headline")
    kept, counts = unlabeled_texts(cfg, [text for text, _ in ROWS])
    assert kept == ["Nokia shares slide after the profit warning.", "Quarterly sales rose\nacross every region."]
    assert counts == {"rows": 5, "used": 2, "empty": 1, "in_the_splits": 1, "repeated": 1}
    with pytest.raises(DistillError, match=r"no column 'text'.*data.text_column"):
        unlabeled_texts(config(f"train.distill.unlabeled={path}"), [])
    with pytest.raises(DistillError, match="no such file"):
        unlabeled_texts(config(f"train.distill.unlabeled={tmp_path / 'missing.txt'}"), [])


def test_the_student_learns_the_teacher_on_unlabeled_texts(teacher: Path, tokenized: RunDir, tmp_path: Path):
    extra = [
        "The board cut the dividend after a weak year.",
        "Orders for the new vessels doubled.",
        "The company kept its outlook unchanged.",
        "Losses widened in the third quarter.",
        "Net sales grew by a fifth.",
        "The annual meeting is held in Espoo.",
    ] * 2  # each twice: used once
    path = tmp_path / "extra.txt"
    path.write_text("\n".join(extra) + "\n", encoding="utf-8")
    base = (f"train.distill.teacher={teacher}", "train.distill.alpha=0", "train.distill.temperature=1")
    with_extra = config(*base, f"train.distill.unlabeled={path}", "train.epochs=10")
    assert fingerprint("train", with_extra, tokenized).key != fingerprint("train", config(*base), tokenized).key
    train(with_extra, tokenized)
    record = read_json(tokenized.train_summary)["distill"]["unlabeled"]
    assert record["used"] == 6 and record["repeated"] == 6 and record["logits_cached"] is False
    assert distill_tags(tokenized)["distill.unlabeled_texts"] == "6"
    texts = extra[:6]
    wanted = teacher_labels_of(teacher, texts)
    learned = float((student_labels_of(tokenized, texts) == wanted).mean())
    train(config("train.epochs=10"), tokenized)
    plain = float((student_labels_of(tokenized, texts) == wanted).mean())
    assert learned > plain, (plain, learned)  # here: 4 of 6 against 2 of 6
