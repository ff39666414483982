"""The teacher of a distilled run (`train.distill.teacher`): a registered model (`NAME@ALIAS`, `NAME/VERSION`), a
run directory or an ONNX folder, checked against the student's task and labels, and its logits for the training and
test texts from its verified ONNX graph (the path `predict` and `score` use: no pickle, any tokenizer, since logits
are per text, or per word for token classification), once per (teacher graph, texts), kept under
`paths.cache/teacher-logits/`. The loss is `training.distill`'s."""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline_lib.config import PipelineConfig
from pipeline_lib.data.versions import file_md5
from pipeline_lib.layout import read_json
from pipeline_lib.runtime.predictor import META_FILE
from pipeline_lib.training.distill import UNLABELED, DistillError, packed_labels, packed_token_labels

TASKS = ("sequence_classification", "token_classification")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Teacher:
    """The teacher as resolved: its ONNX folder, the graph it serves, that graph's digest and its labels."""

    reference: str
    folder: Path
    graph: str
    digest: str
    labels: list[str]
    name: str | None = None  # registered teachers: name and version
    version: str | None = None

    def describe(self) -> dict[str, Any]:
        return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(self).items()}


def resolve_teacher(cfg: PipelineConfig) -> Teacher:
    """The teacher `train.distill.teacher` names, checked against the student's task and labels."""
    reference = cfg.train.distill.teacher
    if not reference:
        raise DistillError("train.distill.teacher is not set")
    folder, name, version = _teacher_folder(cfg, reference)
    meta = read_json(folder / META_FILE)
    task = meta.get("task", "sequence_classification")
    if task != cfg.task or task not in TASKS:
        raise DistillError(
            f"train.distill.teacher {reference}: a {task} teacher cannot teach a {cfg.task} student (the task "
            "setting); distil from a model trained for the same task on the same labels"
        )
    if cfg.train.distill.unlabeled and cfg.task != "sequence_classification":
        raise DistillError(
            f"train.distill.unlabeled {cfg.train.distill.unlabeled}: extra unlabeled texts are built for sequence "
            "classification; remove train.distill.unlabeled for token classification (the teacher still teaches "
            "every word of the training split)"
        )
    teacher_labels = [str(label) for label in meta["labels"]]
    # a config without data.labels knows its labels once validate has inferred them: the train step checks then
    student_labels = cfg.data.labels or cfg.data.inferred_labels
    if student_labels and sorted(teacher_labels) != sorted(student_labels):
        raise DistillError(
            f"train.distill.teacher {reference}: its labels {teacher_labels} differ from the student's "
            f"{student_labels} (data.labels); distil from a teacher trained on the same labels"
        )
    graph = meta.get("graph", "model.onnx")
    return Teacher(reference, folder, graph, file_md5(folder / graph), teacher_labels, name, version)


def _teacher_folder(cfg: PipelineConfig, reference: str) -> tuple[Path, str | None, str | None]:
    """An ONNX folder, a run directory (its `onnx/`), or a registry reference resolved to its verified copy."""
    path = Path(reference).expanduser()
    for candidate in (path, path / "onnx"):
        if (candidate / META_FILE).is_file():
            return candidate, None, None
    if path.exists():
        raise DistillError(
            f"train.distill.teacher {reference}: neither an ONNX folder (with {META_FILE}) nor a run directory "
            "with an onnx/ folder; give a run directory, an exported ONNX folder, NAME@ALIAS or NAME/VERSION"
        )
    if "@" not in reference and "/" not in reference:
        raise DistillError(
            f"train.distill.teacher {reference}: no such folder, and not a registry reference; give NAME@ALIAS "
            "(e.g. financial-sentiment-mpnet@champion), NAME/VERSION, a run directory or an ONNX folder"
        )
    from pipeline_lib.registry.fast_lookup import local_model

    try:
        found = local_model(cfg, reference)
    except Exception as exc:  # the registry's own errors name what is missing
        raise DistillError(f"train.distill.teacher {reference}: {exc}") from exc
    return found.folder, found.registered.name, str(found.registered.version)


def teacher_fingerprint(cfg: PipelineConfig) -> str:
    """What the train step's cache key takes from the teacher: `none`, or its graph's digest and labels (and the
    unlabeled file's bytes and text column, when given)."""
    if not cfg.train.distill.teacher:
        return "none"
    teacher = resolve_teacher(cfg)
    extra = cfg.train.distill.unlabeled
    unlabeled = f"{file_md5(Path(extra))}|{cfg.data.text_column}" if extra and Path(extra).is_file() else str(extra)
    return hashlib.sha256(f"{teacher.digest}|{teacher.labels}|{unlabeled}".encode()).hexdigest()[:16]


def read_unlabeled(path: Path, text_column: str) -> list[str]:
    """The texts of `train.distill.unlabeled`: a .txt file's lines, or the `text_column` of a table."""
    import pandas as pd

    readers = {
        ".csv": pd.read_csv,
        ".tsv": lambda p: pd.read_csv(p, sep="\t"),
        ".jsonl": lambda p: pd.read_json(p, lines=True),
        ".parquet": pd.read_parquet,
    }
    where = f"train.distill.unlabeled {path}"
    if not path.is_file():
        raise DistillError(f"{where}: no such file; give a .txt (one text per line), .csv, .tsv, .jsonl or .parquet")
    if path.suffix.lower() == ".txt":
        try:
            return path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise DistillError(f"{where}: byte {exc.start} is not UTF-8; save the file as UTF-8") from exc
    if path.suffix.lower() not in readers:
        raise DistillError(f"{where}: unknown format {path.suffix!r}; give a .txt, .csv, .tsv, .jsonl or .parquet")
    try:
        frame = readers[path.suffix.lower()](path)
    except Exception as exc:  # the reader's own message names the line
        raise DistillError(f"{where}: unreadable as {path.suffix}: {exc}") from exc
    if text_column not in frame.columns:
        raise DistillError(
            f"{where}: no column {text_column!r} (columns: {', '.join(map(str, frame.columns))}); set "
            "data.text_column to the column that holds the texts"
        )
    return frame[text_column].fillna("").astype(str).tolist()  # a missing text counts as an empty one


def unlabeled_texts(cfg: PipelineConfig, split_texts: list[str]) -> tuple[list[str], dict[str, int]]:
    """`train.distill.unlabeled`'s texts the student may learn from: stripped, each once, none empty and none whose
    key (`data.keys.text_key`) is a text of the run's splits (a test or validation text would leak; a training one
    is taught already). Returns them and how many rows each rule left out."""
    from pipeline_lib.data.keys import text_key

    raw = read_unlabeled(Path(cfg.train.distill.unlabeled or ""), cfg.data.text_column)
    in_splits, seen = {text_key(text) for text in split_texts}, set()
    kept: list[str] = []
    left_out = {"empty": 0, "in_the_splits": 0, "repeated": 0}
    for text in (t.strip() for t in raw):
        key = text_key(text) if text else ""
        rule = "empty" if not text else "in_the_splits" if key in in_splits else "repeated" if key in seen else None
        if rule:
            left_out[rule] += 1
            continue
        seen.add(key)
        kept.append(text)
    return kept, {"rows": len(raw), "used": len(kept), **left_out}


def teacher_logits(cfg: PipelineConfig, teacher: Teacher, texts: list[str]) -> tuple[np.ndarray, bool]:
    """The teacher's logits for `texts`, columns in the student's label order (`data.label_names`), and whether
    they came from the cache (one file per teacher graph and texts, written atomically)."""
    from pipeline_lib.runtime.predictor import OnnxPredictor

    content = "\n".join(texts)
    return _cached(cfg, teacher, content, lambda: OnnxPredictor.from_dir(teacher.folder).logits(texts))


def teacher_word_logits(
    cfg: PipelineConfig, teacher: Teacher, sentences: list[list[str]]
) -> tuple[list[np.ndarray], bool]:
    """Token classification: the teacher's logits per word of each sentence (one array per sentence, columns in
    the student's label order), through its ONNX graph at its own max_length and stride, cached like
    `teacher_logits`. The tokenizers may differ: each model reads the words its own way, the logits are per word."""
    from pipeline_lib.runtime.predictor import OnnxPredictor
    from pipeline_lib.task_types.windows import sentence_logits

    content = "\n".join("\x1f".join(words) for words in sentences)  # words joined by a separator no word holds
    flat, cached = _cached(
        cfg, teacher, f"words\n{content}", lambda: sentence_logits(OnnxPredictor.from_dir(teacher.folder), sentences)
    )
    bounds = np.cumsum([0, *(len(words) for words in sentences)])
    if len(flat) != bounds[-1]:
        raise DistillError(f"the teacher scored {len(flat)} words of {len(sentences)} sentences with {bounds[-1]}")
    return [flat[start:end] for start, end in itertools.pairwise(bounds)], cached


def _cached(cfg: PipelineConfig, teacher: Teacher, content: str, compute: Any) -> tuple[np.ndarray, bool]:
    """`compute()`'s logits (texts or words by rows, the teacher's label order) from the cache, or computed and kept
    there, keyed by the teacher's graph and `content`; returned in the student's label order."""
    digest = hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()
    key = hashlib.sha256(f"{teacher.digest}|{teacher.graph}|{digest}".encode()).hexdigest()[:24]
    path = cfg.paths.cache_dir / "teacher-logits" / f"{key}.npy"
    if path.is_file():
        logits, cached = np.load(path), True
    else:
        logits, cached = np.asarray(compute(), dtype=np.float32), False
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
        np.save(staged, logits)
        staged.replace(path)
    order = [teacher.labels.index(label) for label in (cfg.data.label_names or teacher.labels)]
    return logits[:, order], cached


def with_teacher(
    cfg: PipelineConfig,
    train_split: Any,
    train_frame: Any,
    tokenizer: Any = None,
    split_texts: list[str] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The tokenized training split with `labels` packed with the teacher's logits (per text, or per word for token
    classification: `training.distill`), and what to record. `train_frame` is the training split's file (its
    `text`, or `tokens` per sentence). With `train.distill.unlabeled`, its texts (not in `split_texts`: every
    split's) are tokenized with `tokenizer` and appended with gold `UNLABELED` and the teacher's logits."""
    teacher = resolve_teacher(cfg)
    if cfg.task == "token_classification":
        sentences = [[str(word) for word in words] for words in train_frame["tokens"]]
        per_word, cached = teacher_word_logits(cfg, teacher, sentences)
        packed = packed_token_labels(
            list(train_split["labels"]), list(train_split["word_index"]), list(train_split["sentence"]), per_word
        )
        index = {tag: i for i, tag in enumerate(cfg.data.label_names)}
        gold = np.array([index[tag] for tags in train_frame["tags"] for tag in tags], dtype=np.int64)
        taught = np.concatenate(per_word).argmax(-1) if per_word else np.zeros(0, dtype=np.int64)
        unit = "words"
    else:
        texts = train_frame["text"].astype(str).tolist()
        logits, cached = teacher_logits(cfg, teacher, texts)
        gold = np.asarray(train_split["labels"])
        packed, taught, unit = packed_labels(gold.tolist(), logits), logits.argmax(-1), "rows"
    agreement = float((taught == gold).mean()) if len(gold) else 0.0
    log.info(
        "distilling from %s (%s): teacher logits for %d training %s %s; the teacher agrees with the gold labels on "
        "%.1f%% of them",
        teacher.reference,
        teacher.graph,
        len(gold),
        unit,
        "from the cache" if cached else "computed",
        100 * agreement,
    )
    split = train_split.remove_columns("labels").add_column("labels", packed)
    settings = cfg.train.distill
    record = {
        **teacher.describe(),
        "alpha": settings.alpha,
        "temperature": settings.temperature,
        "logits_cached": cached,
        "teacher_train_agreement": round(agreement, 6),
    }
    if settings.unlabeled:
        known = split_texts if split_texts is not None else list(map(str, train_frame["text"]))
        split, record["unlabeled"] = with_unlabeled(cfg, teacher, split, tokenizer, known)
    return split, record


def with_unlabeled(
    cfg: PipelineConfig, teacher: Teacher, split: Any, tokenizer: Any, split_texts: list[str]
) -> tuple[Any, dict[str, Any]]:
    """`split` with the rows of `train.distill.unlabeled` appended: tokenized as the training split was, gold
    `UNLABELED`, the teacher's logits (cached like the training texts')."""
    from datasets import Dataset, concatenate_datasets

    extra, counts = unlabeled_texts(cfg, split_texts)
    log.info(
        "distilling on %d unlabeled texts of %s (%d rows: %d empty, %d also in the run's splits, %d repeated)",
        counts["used"],
        cfg.train.distill.unlabeled,
        counts["rows"],
        counts["empty"],
        counts["in_the_splits"],
        counts["repeated"],
    )
    if not extra:
        return split, {**counts, "logits_cached": False}
    logits, cached = teacher_logits(cfg, teacher, extra)
    encoded = tokenizer(extra, truncation=True, max_length=cfg.model.max_length)
    columns: dict[str, Any] = {}
    for name in split.column_names:
        if name == "labels":
            columns[name] = packed_labels([UNLABELED] * len(extra), logits)
        elif name == "length":
            columns[name] = [len(ids) for ids in encoded["input_ids"]]
        elif name in encoded:
            columns[name] = encoded[name]
        else:
            raise DistillError(f"train.distill.unlabeled: the training split's column {name!r} has no counterpart")
    added = Dataset.from_dict(columns).cast(split.features)
    return concatenate_datasets([split, added]), {**counts, "logits_cached": cached}


def teacher_figures(cfg: PipelineConfig, test: Any, y_true: np.ndarray, student_pred: np.ndarray) -> dict:
    """The teacher beside its student on the same test split: each one's `gates.compare_metric` and how often they
    agree (per text, or per word for token classification; the teacher scored through its ONNX graph, its test
    logits cached like its training ones)."""
    from pipeline_lib.task_types import task_for

    teacher = resolve_teacher(cfg)
    if cfg.task == "token_classification":
        per_word, _ = teacher_word_logits(cfg, teacher, [[str(w) for w in words] for words in test["tokens"]])
        logits = np.concatenate(per_word) if per_word else np.zeros((0, len(teacher.labels)), dtype=np.float32)
    else:
        logits, _ = teacher_logits(cfg, teacher, test["text"].astype(str).tolist())
    task, labels, metric = task_for(cfg.task), list(cfg.data.label_names), cfg.gates.compare_metric
    teacher_pred = logits.argmax(-1)
    named = f"{teacher.name}/{teacher.version}" if teacher.name else teacher.reference
    return {
        "teacher": named,
        "metric": metric,
        "teacher_metric": round(task.gate_metrics(test, y_true, teacher_pred, labels)[metric], 6),
        "student_metric": round(task.gate_metrics(test, y_true, student_pred, labels)[metric], 6),
        "agreement": round(float((teacher_pred == student_pred).mean()), 6),
        "rows": len(test),
    }
