"""Knowledge distillation's loss (`train.distill`, sequence classification): the student learns from a teacher's
soft labels as well as from the gold ones. The teacher's logits travel in the training split's `labels` column,
`[gold, teacher logits...]` (`packed_labels`), so the Trainer's own data path carries them, and
`distillation_loss` (the Trainer's `compute_loss_func`) computes

    alpha · CE(gold) + (1 − alpha) · T² · KL(softmax(teacher / T) ‖ softmax(student / T))

per batch (validation batches, with plain labels, get CE alone; rows of `train.distill.unlabeled`, gold
`UNLABELED`, only the KL term). `alpha: 1` is the plain loss, to the last bit.
Where the teacher and its logits come from: `steps.teacher`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline_lib.config import DistillSettings

UNLABELED = -100  # the gold label id of a row the teacher alone labels (`train.distill.unlabeled`)


class DistillError(ValueError):
    """A teacher that cannot teach this student: not found, another task, other labels, other rows."""


def packed_labels(gold: list[int], logits: np.ndarray) -> list[list[float]]:
    """The training split's `labels` column when distilling: the gold label id, then the teacher's logits."""
    if len(gold) != len(logits):
        raise DistillError(f"the teacher scored {len(logits)} texts for {len(gold)} training rows")
    return np.column_stack([np.asarray(gold, dtype=np.float32), logits.astype(np.float32)]).tolist()


def distillation_loss(settings: DistillSettings) -> Callable[..., Any]:
    """The Trainer's `compute_loss_func`: labels `[gold, teacher logits...]` per row in training batches, plain
    label ids in validation batches (CE alone)."""
    import torch
    import torch.nn.functional as F

    alpha, temperature = settings.alpha, settings.temperature

    def loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        if labels.dim() == 1:
            return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))
        gold = labels[:, 0].long()
        known = gold != UNLABELED  # rows of `train.distill.unlabeled` carry the teacher's logits only
        if bool(known.all()):
            hard = F.cross_entropy(logits.view(-1, logits.shape[-1]), gold.view(-1))
        else:
            hard = F.cross_entropy(logits[known], gold[known]) if bool(known.any()) else logits.sum() * 0.0
        if alpha >= 1.0:
            return hard
        teacher = labels[:, 1:].to(logits.dtype)
        soft = F.kl_div(
            F.log_softmax(logits / temperature, dim=-1),
            F.log_softmax(teacher / temperature, dim=-1),
            reduction="batchmean",
            log_target=True,
        ) * (temperature**2)
        return alpha * hard + (1.0 - alpha) * soft

    return loss
