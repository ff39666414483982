"""Knowledge distillation's loss (`train.distill`): the student learns from a teacher's soft labels as well as from
the gold ones. The teacher's logits travel in the training split's `labels` column, so the Trainer's own data path
carries them: per text `[gold, teacher logits...]` (`packed_labels`, sequence classification), per sub-token the same
at each word's first sub-token and `[-100, NaN...]` elsewhere (`packed_token_labels`, token classification: per-word
distillation, batched by `PackedLabelCollator`). `distillation_loss` (the Trainer's `compute_loss_func`) computes

    alpha · CE(gold) + (1 − alpha) · T² · KL(softmax(teacher / T) ‖ softmax(student / T))

per batch over the texts (or taught words) of the batch (validation batches, with plain labels, get CE alone; rows
of `train.distill.unlabeled`, gold `UNLABELED`, only the KL term). `alpha: 1` is the plain loss, to the last bit.
Where the teacher and its logits come from: `steps.teacher`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline_lib.config import DistillSettings
from pipeline_lib.task_types.windows import IGNORE  # a sub-token no loss sees (continuation pieces, specials, padding)

UNLABELED = IGNORE  # the gold label id of a row the teacher alone labels (`train.distill.unlabeled`)


class DistillError(ValueError):
    """A teacher that cannot teach this student: not found, another task, other labels, other rows."""


def packed_labels(gold: list[int], logits: np.ndarray) -> list[list[float]]:
    """The training split's `labels` column when distilling: the gold label id, then the teacher's logits."""
    if len(gold) != len(logits):
        raise DistillError(f"the teacher scored {len(logits)} texts for {len(gold)} training rows")
    return np.column_stack([np.asarray(gold, dtype=np.float32), logits.astype(np.float32)]).tolist()


def packed_token_labels(
    labels: list[list[int]],
    word_index: list[list[int]],
    sentence: list[int],
    per_word: list[np.ndarray],
) -> list[list[list[float]]]:
    """A token-classification training split's `labels` column when distilling: per window and sub-token, the gold
    tag id and, at a word's first sub-token (`word_index` >= 0), the teacher's logits for that word of its sentence
    (`per_word[sentence]`); other sub-tokens `[-100, NaN...]`, which neither loss term sees."""
    n_labels = int(per_word[0].shape[-1]) if per_word else 0
    untaught = [float("nan")] * n_labels
    packed = []
    for gold, positions, owner in zip(labels, word_index, sentence, strict=True):
        words = per_word[owner]
        rows = []
        for tag, word in zip(gold, positions, strict=True):
            if word >= 0 and word >= len(words):
                raise DistillError(
                    f"the teacher scored {len(words)} words of training sentence {owner}, not {word + 1}"
                )
            rows.append([float(tag), *(words[word].tolist() if word >= 0 else untaught)])
        packed.append(rows)
    return packed


class PackedLabelCollator:
    """The task's collator for training batches whose `labels` are packed per sub-token (`packed_token_labels`): the
    inputs are collated by `base`, the labels padded to the batch's width with `[-100, NaN...]` into one float
    tensor (batch, sequence, 1 + labels). Batches with plain labels (validation) go to `base` whole."""

    def __init__(self, base: Any) -> None:
        self.base = base

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        labels = [feature.get("labels") for feature in features]
        if not labels or labels[0] is None or not labels[0] or not isinstance(labels[0][0], list | tuple):
            return self.base(features)
        batch = self.base([{k: v for k, v in feature.items() if k != "labels"} for feature in features])
        width, depth = batch["input_ids"].shape[1], len(labels[0][0])
        packed = torch.full((len(features), width, depth), float("nan"))
        packed[..., 0] = IGNORE
        left = getattr(getattr(self.base, "tokenizer", None), "padding_side", "right") == "left"
        for row, rows in enumerate(labels):
            values = torch.tensor(rows, dtype=torch.float32).reshape(len(rows), depth)
            start = width - len(rows) if left else 0
            packed[row, start : start + len(rows)] = values
        batch["labels"] = packed
        return batch


def distillation_loss(settings: DistillSettings) -> Callable[..., Any]:
    """The Trainer's `compute_loss_func`: packed labels in training batches (per text `[gold, teacher logits...]`,
    token classification the same per sub-token), plain label ids in validation batches (CE alone)."""
    import torch
    import torch.nn.functional as F

    alpha, temperature = settings.alpha, settings.temperature

    def loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        n_labels = logits.shape[-1]
        if labels.dim() < logits.dim():  # plain label ids: a validation batch
            return F.cross_entropy(logits.view(-1, n_labels), labels.view(-1))
        if logits.dim() > 2:  # token classification: every sub-token a row
            return token_loss(logits.reshape(-1, n_labels), labels.reshape(-1, labels.shape[-1]))
        gold = labels[:, 0].long()
        known = gold != UNLABELED  # rows of `train.distill.unlabeled` carry the teacher's logits only
        if bool(known.all()):
            hard = F.cross_entropy(logits.view(-1, n_labels), gold.view(-1))
        else:
            hard = F.cross_entropy(logits[known], gold[known]) if bool(known.any()) else logits.sum() * 0.0
        if alpha >= 1.0:
            return hard
        return alpha * hard + (1.0 - alpha) * soft_loss(logits, labels[:, 1:])

    def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        gold = labels[:, 0].long()
        known = gold != IGNORE
        # the token model's own loss (transformers' ForTokenClassification): a sum over the gold words, divided by
        # their count, in fp32
        hard = F.cross_entropy(logits.float(), gold, ignore_index=IGNORE, reduction="sum") / known.sum().clamp(min=1)
        if alpha >= 1.0:
            return hard
        taught = ~torch.isnan(labels[:, 1])
        soft = soft_loss(logits[taught], labels[taught, 1:]) if bool(taught.any()) else logits.sum() * 0.0
        return alpha * hard + (1.0 - alpha) * soft

    def soft_loss(logits: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return F.kl_div(
            F.log_softmax(logits / temperature, dim=-1),
            F.log_softmax(teacher.to(logits.dtype) / temperature, dim=-1),
            reduction="batchmean",
            log_target=True,
        ) * (temperature**2)

    return loss
