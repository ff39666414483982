"""Per-word distillation for token classification (`train.distill` with `task: token_classification`): a real NER
teacher (the default encoder with a seeded, scaled token head, tags in another order, exported to ONNX by the export
step) teaches the real student through the Trainer on a tiny tagged split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from pipeline_lib.config import DistillSettings, PipelineConfig, load_config
from pipeline_lib.layout import SPLITS, RunDir, read_json
from pipeline_lib.registry.lineage import distill_tags
from pipeline_lib.runtime.predictor import OnnxPredictor
from pipeline_lib.steps.export import export
from pipeline_lib.steps.teacher import resolve_teacher, teacher_figures, teacher_word_logits
from pipeline_lib.steps.tokenize import tokenize
from pipeline_lib.steps.train import train
from pipeline_lib.task_types import task_for
from pipeline_lib.task_types.windows import run_windows
from pipeline_lib.training.distill import DistillError, PackedLabelCollator, distillation_loss, packed_token_labels
from pipeline_lib.training.modeling import load_classifier, load_tokenizer, resolve_model_source

STUDENT_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG"]
TEACHER_TAGS = ["B-ORG", "I-PER", "O", "I-ORG", "B-PER"]  # another order: its columns are mapped by name
SENTENCES = [
    ("Anna Berg joined Siemens today .", "B-PER I-PER O B-ORG O O"),
    ("Omar works at Fiat Chrysler", "B-PER O O B-ORG I-ORG"),
    ("Lena Kovac left Nokia", "B-PER I-PER O B-ORG"),
    ("The Germanization of Volkswagen worried Hans", "O O O B-ORG O B-PER"),
    ("Shares of Daimler rose", "O O B-ORG O"),
    ("Maria Lopez chairs Telefonica", "B-PER I-PER O B-ORG"),
    ("Analysts at Goldman Sachs agreed", "O O B-ORG I-ORG O"),
    ("Nobody expected that", "O O O"),
]


def frame() -> pd.DataFrame:
    rows = [(words.split(), tags.split(), words) for words, tags in SENTENCES]
    return pd.DataFrame(rows, columns=["tokens", "tags", "text"])


def config(*extra: str) -> PipelineConfig:
    base = [
        "task=token_classification",
        f"data.labels=[{', '.join(STUDENT_TAGS)}]",
        "paths.store=store",
        "train.batch_size=4",
        "train.learning_rate=1e-3",
        "train.epochs=4",
        "train.early_stopping_patience=0",
    ]
    return load_config(None, [*base, *extra])


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A teacher run directory: the default encoder with a seeded token head scaled up (firm opinions of its own,
    many against the gold tags), exported (fp32 graph)."""
    run = RunDir(tmp_path_factory.mktemp("ner-teacher") / "run")
    source = resolve_model_source("default")
    torch.manual_seed(5)
    model = load_classifier(source, TEACHER_TAGS, "token_classification")
    with torch.no_grad():
        model.classifier.weight.mul_(200)
    model.save_pretrained(run.model_dir)
    load_tokenizer(source).save_pretrained(run.model_dir)
    run.split_file("test").parent.mkdir(parents=True)
    frame().to_parquet(run.split_file("test"))
    cfg = load_config(
        None, ["task=token_classification", f"data.labels=[{', '.join(TEACHER_TAGS)}]", "export.select_runtime=false"]
    )
    export(cfg, run)
    return run.root


@pytest.fixture
def tokenized(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunDir:
    monkeypatch.chdir(tmp_path)  # the config's store is ./store
    run = RunDir(tmp_path / "run")
    for split in SPLITS:
        run.split_file(split).parent.mkdir(parents=True, exist_ok=True)
        frame().to_parquet(run.split_file(split), index=False)
    tokenize(config(), run)
    return run


def sentences() -> list[list[str]]:
    return [words.split() for words, _ in SENTENCES]


def gold_ids() -> np.ndarray:
    return np.array([STUDENT_TAGS.index(tag) for _, tags in SENTENCES for tag in tags.split()])


def student_word_tags(run: RunDir) -> np.ndarray:
    """The trained student's tag id per word of SENTENCES (PyTorch, windowed like evaluation)."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    model = AutoModelForTokenClassification.from_pretrained(run.model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(run.model_dir)

    def forward(features: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return model(**{name: torch.from_numpy(array) for name, array in features.items()}).logits.numpy()

    per_word = run_windows(forward, tokenizer, tokenizer.model_input_names, 128, sentences(), 32, 8, outside=0)
    return np.concatenate(per_word).argmax(-1)


def weights(run: RunDir) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run.model_dir / "model.safetensors")


def test_teacher_word_logits_come_per_word_once_then_from_the_cache(teacher: Path, tmp_path: Path):
    cfg = config(f"train.distill.teacher={teacher}", f"paths.store={tmp_path / 'store'}")
    resolved = resolve_teacher(cfg)
    first, cached_first = teacher_word_logits(cfg, resolved, sentences())
    second, cached_second = teacher_word_logits(cfg, resolved, sentences())
    assert (cached_first, cached_second) == (False, True)
    assert [len(rows) for rows in first] == [len(words) for words in sentences()]
    raw = OnnxPredictor.from_dir(teacher / "onnx").logits([words for words, _ in SENTENCES])  # per word, its order
    order = [TEACHER_TAGS.index(tag) for tag in STUDENT_TAGS]
    np.testing.assert_allclose(np.concatenate(first), raw[:, order], atol=1e-5)
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(second))
    assert len(list((tmp_path / "store" / "cache" / "teacher-logits").glob("*.npy"))) == 1


def test_packed_labels_carry_the_teacher_at_each_words_first_subtoken_only():
    per_word = [np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32), np.array([[5.0, 6.0]], dtype=np.float32)]
    # sentence 0 in two windows (word 1 scored by the second), sentence 1 in one; -1: special or continuation piece
    labels = [[-100, 1, -100, -100], [-100, 0, -100], [-100, 1, -100, -100]]
    word_index = [[-1, 0, -1, -1], [-1, 1, -1], [-1, 0, -1, -1]]
    packed = packed_token_labels(labels, word_index, [0, 0, 1], per_word)
    assert packed[0][1] == [1.0, 1.0, 2.0] and packed[1][1] == [0.0, 3.0, 4.0] and packed[2][1] == [1.0, 5.0, 6.0]
    assert packed[0][0][0] == -100 and all(np.isnan(packed[0][0][1:]))
    with pytest.raises(DistillError, match="scored 1 words of training sentence 1"):
        packed_token_labels([[-100, 0]], [[-1, 1]], [1], per_word)


def test_the_collator_pads_packed_labels_and_the_loss_reads_taught_words_only():
    from transformers import DataCollatorForTokenClassification

    tokenizer = load_tokenizer(resolve_model_source("default"))
    collate = PackedLabelCollator(DataCollatorForTokenClassification(tokenizer))
    rows = [
        {"input_ids": [101, 7, 8, 102], "attention_mask": [1] * 4, "labels": [[-100, *[float("nan")] * 2]] * 4},
        {"input_ids": [101, 9, 102], "attention_mask": [1] * 3, "labels": [[-100, *[float("nan")] * 2]] * 3},
    ]
    rows[0]["labels"] = [rows[0]["labels"][0], [1.0, 0.5, 2.0], [0.0, 3.0, -1.0], rows[0]["labels"][0]]
    rows[1]["labels"] = [rows[1]["labels"][0], [1.0, -2.0, 1.0], rows[1]["labels"][0]]
    batch = collate(rows)
    assert batch["input_ids"].shape == (2, 4) and batch["labels"].shape == (2, 4, 3)
    assert batch["labels"][1, 3, 0] == -100 and torch.isnan(batch["labels"][1, 3, 1:]).all()  # padding
    plain = collate([{"input_ids": [101, 7, 102], "attention_mask": [1] * 3, "labels": [-100, 2, -100]}])
    assert plain["labels"].tolist() == [[-100, 2, -100]]  # validation batches: the task's own collator

    torch.manual_seed(0)
    student = torch.randn(2, 4, 2)
    taught = [(0, 1), (0, 2), (1, 1)]
    gold = torch.tensor([1, 0, 1])
    words = torch.stack([student[i, j] for i, j in taught])
    teacher = torch.stack([batch["labels"][i, j, 1:] for i, j in taught])
    t = 2.0
    ce = F.cross_entropy(words, gold)
    p_teacher = F.softmax(teacher / t, -1)
    kl = (p_teacher * (p_teacher.log() - F.log_softmax(words / t, -1))).sum(-1).mean() * t * t
    soft = distillation_loss(DistillSettings(teacher="t", alpha=0.25, temperature=t))
    got = soft({"logits": student}, batch["labels"])
    assert got.item() == pytest.approx((0.25 * ce + 0.75 * kl).item(), rel=1e-5)
    hard = distillation_loss(DistillSettings(teacher="t", alpha=1.0))({"logits": student}, batch["labels"])
    assert hard.item() == pytest.approx(ce.item(), rel=1e-6)


def test_alpha_one_trains_exactly_the_plain_weights(teacher: Path, tokenized: RunDir):
    train(config(), tokenized)
    plain = weights(tokenized)
    train(config(f"train.distill.teacher={teacher}", "train.distill.alpha=1"), tokenized)
    distilled = weights(tokenized)
    assert plain.keys() == distilled.keys()
    assert all(torch.equal(plain[name], distilled[name]) for name in plain)


def test_distilling_raises_word_agreement_with_the_teacher(teacher: Path, tokenized: RunDir):
    cfg = config(f"train.distill.teacher={teacher}", "train.distill.alpha=0", "train.distill.temperature=1")
    per_word, _ = teacher_word_logits(cfg, resolve_teacher(cfg), sentences())
    wanted = np.concatenate(per_word).argmax(-1)
    assert (wanted != gold_ids()).mean() > 0.3, "the planted case needs a teacher that disagrees with the gold tags"
    train(config(), tokenized)
    plain = float((student_word_tags(tokenized) == wanted).mean())
    train(cfg, tokenized)
    distilled = float((student_word_tags(tokenized) == wanted).mean())
    assert distilled > plain + 0.2, (plain, distilled)
    record = read_json(tokenized.train_summary)["distill"]
    assert record["labels"] == TEACHER_TAGS and record["logits_cached"] is True  # computed for `wanted` above
    assert record["teacher_train_agreement"] == pytest.approx(float((wanted == gold_ids()).mean()), abs=1e-6)
    assert distill_tags(tokenized)["distill.teacher"] == str(teacher)


def test_a_teacher_with_other_tags_is_refused_naming_both(teacher: Path):
    with pytest.raises(DistillError) as caught:
        resolve_teacher(config(f"train.distill.teacher={teacher}", "data.labels=[O, B-LOC, I-LOC]"))
    message = str(caught.value)
    assert str(TEACHER_TAGS) in message and "['O', 'B-LOC', 'I-LOC']" in message and "data.labels" in message


def test_unlabeled_texts_are_refused_for_token_classification(teacher: Path, tmp_path: Path):
    (tmp_path / "more.txt").write_text("Anna Berg left Fiat\n", encoding="utf-8")
    cfg = config(f"train.distill.teacher={teacher}", f"train.distill.unlabeled={tmp_path / 'more.txt'}")
    with pytest.raises(DistillError, match=r"remove train\.distill\.unlabeled for token classification"):
        resolve_teacher(cfg)


def test_the_gate_table_shows_the_ner_teacher_beside_its_student(teacher: Path, tmp_path: Path):
    cfg = config(f"train.distill.teacher={teacher}", f"paths.store={tmp_path / 'store'}")
    test = frame()
    gold = gold_ids()
    per_word, _ = teacher_word_logits(cfg, resolve_teacher(cfg), sentences())
    wanted = np.concatenate(per_word).argmax(-1)
    figures = teacher_figures(cfg, test, gold, gold)  # a student that is always right
    task = task_for("token_classification")
    assert figures["metric"] == "entity_f1" and figures["student_metric"] == 1.0 and figures["rows"] == len(test)
    expected = task.gate_metrics(test, gold, wanted, STUDENT_TAGS)["entity_f1"]
    assert figures["teacher_metric"] == pytest.approx(expected, abs=1e-6) and figures["teacher_metric"] < 1.0
    assert figures["agreement"] == pytest.approx(float((wanted == gold).mean()), abs=1e-6)
