"""The task strategies: what differs between sequence classification and token classification (NER), in one
small object per task that the steps call, so that no step branches on `cfg.task` itself.

A strategy says how to read and check the data (validate), encode a split (tokenize), score logits (train,
evaluate), score an ONNX predictor (export parity, champion re-scoring in the gates) and which transformers auto
class holds the model. Beside the two strategies (`classification`, `ner`) live what only tasks need: metrics,
the paired bootstrap, sub-token windows and entity decoding. Strategies never call a step back.
"""

from __future__ import annotations

from functools import cache
from typing import Any

TASK_NAMES = ("sequence_classification", "token_classification")


@cache
def task_for(name: str) -> Any:
    """The strategy for `cfg.task` (imported on first use: a served model needs neither)."""
    if name == "sequence_classification":
        from pipeline_lib.task_types.classification import SequenceClassification

        return SequenceClassification()
    if name == "token_classification":
        from pipeline_lib.task_types.ner import TokenClassification

        return TokenClassification()
    raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASK_NAMES)}")
