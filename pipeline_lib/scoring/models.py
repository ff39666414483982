"""The models of a scoring run: each `--model` reference resolved once to a version and its verified local ONNX
folder (`registry.fast_lookup`, no MLflow when the copy is there), and the columns it adds to a chunk."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline_lib.config import PipelineConfig
from pipeline_lib.registry.errors import RegistryError
from pipeline_lib.registry.fast_lookup import local_model
from pipeline_lib.registry.store import ModelRef, folder_digest

PREFIX_SEPARATOR = "__"


@dataclass
class ScoringModel:
    """One resolved model: what it is, where its ONNX folder is, and the prefix of its columns."""

    reference: str  # as given: NAME@ALIAS or NAME/VERSION
    name: str
    version: str
    digest: str
    folder: Path
    prefix: str  # "" for the first model, "NAME__" for the others
    task: str
    labels: list[str]
    _predictor: Any = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "name": self.name,
            "version": self.version,
            "onnx_sha256": self.digest,
            "prefix": self.prefix,
            "task": self.task,
            "labels": self.labels,
        }

    @property
    def key(self) -> tuple[str, str, str]:
        return self.name, self.version, self.digest

    def output_names(self) -> list[str]:
        """The columns this model adds, in order."""
        if self.task == "token_classification":
            scored = ["entities"]
        else:
            scored = ["label", *(f"p_{label}" for label in self.labels)]
        return [self.prefix + name for name in (*scored, "model", "version", "onnx_sha256")]

    def predictor(self, num_threads: int | None = None) -> Any:
        if self._predictor is None:
            from pipeline_lib.runtime.predictor import OnnxPredictor

            self._predictor = OnnxPredictor.from_dir(self.folder, num_threads=num_threads)
        return self._predictor


def resolve(cfg: PipelineConfig, references: list[str]) -> list[ScoringModel]:
    """Each reference's version and verified ONNX folder; the first model's columns unprefixed, the others'
    prefixed `NAME__`. Two references to one registered name are refused (their columns would collide)."""
    if not references:
        raise RegistryError("no model to score with: give --model NAME@ALIAS (repeat it for more models)")
    names = [ModelRef.parse(ref).name for ref in references]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise RegistryError(
            f"--model names {', '.join(twice)} more than once: each further model's columns are prefixed with its "
            "registered name, so give each registered model once"
        )
    models = []
    for position, reference in enumerate(references):
        found = local_model(cfg, reference)
        meta = json.loads((found.folder / "tunepipe.json").read_text(encoding="utf-8"))
        digest = found.registered.digest or folder_digest(found.folder)
        models.append(
            ScoringModel(
                reference=reference,
                name=found.registered.name,
                version=str(found.registered.version),
                digest=digest,
                folder=found.folder,
                prefix="" if position == 0 else f"{found.registered.name}{PREFIX_SEPARATOR}",
                task=meta["task"],
                labels=list(meta["labels"]),
            )
        )
    return models


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def predicted_columns(model: ScoringModel, texts: list[str], batch_size: int, num_threads: int | None) -> dict:
    """label and p_<label> (or entities) for `texts`, unprefixed, from the model's ONNX predictor."""
    predictor = model.predictor(num_threads)
    if model.task == "token_classification":
        rows = predictor.predict(texts, batch_size=batch_size)
        return {"entities": pa.array([json.dumps(row["entities"]) for row in rows], pa.string())}
    logits = predictor.logits(texts, batch_size=batch_size)
    return classification_columns(model.labels, logits)


def classification_columns(labels: list[str], logits: np.ndarray) -> dict[str, pa.Array]:
    probabilities = softmax(logits.astype(np.float64))
    columns: dict[str, pa.Array] = {"label": pa.array(np.asarray(labels, dtype=object)[probabilities.argmax(axis=1)])}
    for i, label in enumerate(labels):
        columns[f"p_{label}"] = pa.array(probabilities[:, i].astype(np.float32))
    return columns


def identity_columns(model: ScoringModel, rows: int) -> dict[str, pa.Array]:
    """model, version and onnx_sha256, the same on every row (Parquet dictionary-encodes them on disk)."""
    return {
        name: pa.array([value] * rows, pa.string())
        for name, value in (("model", model.name), ("version", model.version), ("onnx_sha256", model.digest))
    }
