"""The teacher of a distilled run (`train.distill.teacher`): a registered model (`NAME@ALIAS`, `NAME/VERSION`), a
run directory or an ONNX folder, checked against the student's task and labels, and its logits for the training and
test texts from its verified ONNX graph (the path `predict` and `score` use: no pickle, any tokenizer, since logits
are per text), once per (teacher graph, texts), kept under `paths.cache/teacher-logits/`. The loss is
`training.distill`'s."""

from __future__ import annotations

import hashlib
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
from pipeline_lib.training.distill import UNLABELED, DistillError, packed_labels

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
    if task != "sequence_classification" or cfg.task != "sequence_classification":
        raise DistillError(
            f"train.distill.teacher {reference}: distillation is built for sequence classification only (teacher: "
            f"{task}, student: {cfg.task}); remove train.distill for token classification"
        )
    teacher_labels = [str(label) for label in meta["labels"]]
    student_labels = cfg.data.label_names
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
    digest = hashlib.sha256("\n".join(texts).encode("utf-8", "surrogatepass")).hexdigest()
    key = hashlib.sha256(f"{teacher.digest}|{teacher.graph}|{digest}".encode()).hexdigest()[:24]
    path = cfg.paths.cache_dir / "teacher-logits" / f"{key}.npy"
    if path.is_file():
        logits, cached = np.load(path), True
    else:
        from pipeline_lib.runtime.predictor import OnnxPredictor

        logits, cached = OnnxPredictor.from_dir(teacher.folder).logits(texts).astype(np.float32), False
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
        np.save(staged, logits)
        staged.replace(path)
    order = [teacher.labels.index(label) for label in (cfg.data.label_names or teacher.labels)]
    return logits[:, order], cached


def with_teacher(
    cfg: PipelineConfig,
    train_split: Any,
    texts: list[str],
    tokenizer: Any = None,
    split_texts: list[str] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The tokenized training split with `labels` packed as `[gold, teacher logits...]`, and what to record. With
    `train.distill.unlabeled`, its texts (not in `split_texts`: every split's) are tokenized with `tokenizer` and
    appended with gold `UNLABELED` and the teacher's logits."""
    teacher = resolve_teacher(cfg)
    logits, cached = teacher_logits(cfg, teacher, texts)
    gold = list(train_split["labels"])
    packed = packed_labels(gold, logits)
    agreement = float((logits.argmax(-1) == np.asarray(gold)).mean()) if gold else 0.0
    log.info(
        "distilling from %s (%s): %d teacher logits %s; teacher agrees with the gold labels on %.1f%% of training rows",
        teacher.reference,
        teacher.graph,
        len(packed),
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
        split, record["unlabeled"] = with_unlabeled(cfg, teacher, split, tokenizer, split_texts or texts)
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


def teacher_figures(cfg: PipelineConfig, texts: list[str], y_true: np.ndarray, student_pred: np.ndarray) -> dict:
    """The teacher beside its student on the same test rows: each one's `gates.compare_metric` and how often they
    agree (the teacher scored through its ONNX graph, its test logits cached like its training ones)."""
    from pipeline_lib.task_types.metrics import classification_metrics, flat_metrics

    teacher = resolve_teacher(cfg)
    logits, _ = teacher_logits(cfg, teacher, texts)
    labels, metric = cfg.data.label_names, cfg.gates.compare_metric
    teacher_pred = logits.argmax(-1)
    named = f"{teacher.name}/{teacher.version}" if teacher.name else teacher.reference
    return {
        "teacher": named,
        "metric": metric,
        "teacher_metric": round(flat_metrics(classification_metrics(y_true, teacher_pred, labels))[metric], 6),
        "student_metric": round(flat_metrics(classification_metrics(y_true, student_pred, labels))[metric], 6),
        "agreement": round(float((teacher_pred == student_pred).mean()), 6),
        "rows": len(texts),
    }
