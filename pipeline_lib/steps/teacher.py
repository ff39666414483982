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
from pipeline_lib.training.distill import DistillError, packed_labels

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
    """What the train step's cache key takes from the teacher: `none`, or its graph's digest and labels."""
    if not cfg.train.distill.teacher:
        return "none"
    teacher = resolve_teacher(cfg)
    return hashlib.sha256(f"{teacher.digest}|{teacher.labels}".encode()).hexdigest()[:16]


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


def with_teacher(cfg: PipelineConfig, train_split: Any, texts: list[str]) -> tuple[Any, dict[str, Any]]:
    """The tokenized training split with `labels` packed as `[gold, teacher logits...]`, and what to record."""
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
    return split, record


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
