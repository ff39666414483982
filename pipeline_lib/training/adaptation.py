"""What fine-tuning may change: full, head only, the top-k encoder layers, or LoRA adapters (merged before export)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pipeline_lib.config import TrainConfig


@dataclass
class TrainableSummary:
    strategy: str
    trainable: int
    total: int

    @property
    def fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fraction": round(self.fraction, 6)}


def encoder_layers(model: Any) -> list[Any]:
    """The transformer blocks of the encoder under the task head (BERT `encoder.layer`, MPNet, DistilBERT ...)."""
    import torch

    base = getattr(model, model.base_model_prefix, model)
    for name in ("encoder.layer", "transformer.layer", "encoder.layers", "layers"):
        node = base
        for part in name.split("."):
            node = getattr(node, part, None)
        if isinstance(node, torch.nn.ModuleList):
            return list(node)
    raise ValueError(f"{type(model).__name__}: cannot find the encoder's layer list for train.freeze=top_k")


def apply_freezing(model: Any, train: TrainConfig) -> Any:
    """Freeze what the strategy keeps fixed; the task head always trains."""
    if train.freeze == "none":
        if train.frozen_bottom_layers:
            freeze_bottom(model, train.frozen_bottom_layers)
        elif train.freeze_embeddings:
            model.get_input_embeddings().weight.requires_grad = False
        return model
    base = getattr(model, model.base_model_prefix)
    for param in base.parameters():
        param.requires_grad = False
    if train.freeze == "top_k":
        layers = encoder_layers(model)
        if not 1 <= train.trainable_top_layers <= len(layers):
            raise ValueError(f"train.trainable_top_layers={train.trainable_top_layers}: the encoder has {len(layers)}")
        for layer in layers[-train.trainable_top_layers :]:
            for param in layer.parameters():
                param.requires_grad = True
        pooler = getattr(base, "pooler", None)
        if pooler is not None:
            for param in pooler.parameters():
                param.requires_grad = True
    return model


def freeze_bottom(model: Any, count: int) -> None:
    """Keep every embedding and the encoder's bottom `count` layers as pretrained: nothing below the first trained
    layer needs a gradient, so backpropagation stops there (a shorter backward pass, not only fewer updates)."""
    layers = encoder_layers(model)
    if count >= len(layers):
        raise ValueError(
            f"train.frozen_bottom_layers={count}: the encoder has {len(layers)} layers and at least one must train "
            "(train.freeze=head_only trains the task head alone)"
        )
    base = getattr(model, model.base_model_prefix)
    embeddings = getattr(base, "embeddings", None)
    if embeddings is None:  # an architecture without an embeddings block: at least its input embedding matrix
        embeddings = model.get_input_embeddings()
    for module in (embeddings, *layers[:count]):
        for param in module.parameters():
            param.requires_grad = False


def apply_lora(model: Any, train: TrainConfig, task: str) -> Any:
    """Wrap the model with LoRA adapters (peft); the task head is trained in full."""
    from peft import LoraConfig, TaskType, get_peft_model

    lora = train.lora
    config = LoraConfig(
        task_type=TaskType.TOKEN_CLS if task == "token_classification" else TaskType.SEQ_CLS,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
    )
    return get_peft_model(model, config)


def prepare(model: Any, train: TrainConfig, task: str) -> tuple[Any, TrainableSummary]:
    """Apply the configured strategy and report how much of the model will train."""
    if train.lora.enabled and train.freeze != "none":
        raise ValueError("train.lora.enabled and train.freeze are exclusive: LoRA already freezes the encoder")
    model = apply_lora(model, train, task) if train.lora.enabled else apply_freezing(model, train)
    strategy = "lora" if train.lora.enabled else train.freeze
    if strategy == "none" and train.frozen_bottom_layers:
        strategy = f"bottom_{train.frozen_bottom_layers}_frozen"
    elif strategy == "none" and train.freeze_embeddings:
        strategy = "embeddings_frozen"
    params = list(model.parameters())
    summary = TrainableSummary(
        strategy=strategy,
        trainable=sum(p.numel() for p in params if p.requires_grad),
        total=sum(p.numel() for p in params),
    )
    return model, summary


def merged(model: Any) -> Any:
    """A plain transformers model to save and export: LoRA adapters folded into the weights."""
    from peft import PeftModel

    return model.merge_and_unload() if isinstance(model, PeftModel) else model
