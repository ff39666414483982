"""Safe model loading: safetensors only, never remote code, clear errors for bad sources."""

import contextlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from pipeline_lib.training.modeling import ModelSourceError, load_classifier, load_tokenizer, resolve_model_source

LABELS = ["negative", "neutral", "positive"]


def test_default_resolves_to_the_packaged_weights():
    source = Path(resolve_model_source("default"))
    assert (source / "model.safetensors").is_file() and (source / "tokenizer.json").is_file()
    assert load_tokenizer(str(source)).is_fast


def test_hub_ids_pass_through_and_missing_folders_are_named():
    assert resolve_model_source("bert-base-cased") == "bert-base-cased"
    with pytest.raises(ModelSourceError, match=r"\./no/such/model: no such folder"):
        resolve_model_source("./no/such/model")


def test_folder_without_config_is_refused(tmp_path: Path):
    with pytest.raises(ModelSourceError, match=r"no config\.json"):
        resolve_model_source(str(tmp_path))


def test_pickle_weights_are_never_loaded(tmp_path: Path):
    """A folder with only a pickled `pytorch_model.bin` (which could run code on load) is refused."""
    source = Path(resolve_model_source("default"))
    folder = tmp_path / "pickled"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copy(source / name, folder / name)
    torch.save({"bert.embeddings.word_embeddings.weight": torch.zeros(2, 2)}, folder / "pytorch_model.bin")
    with pytest.raises(ModelSourceError, match="safetensors"):
        load_classifier(str(folder), LABELS)


def test_remote_code_in_config_is_not_executed(tmp_path: Path):
    """A config that asks for custom code (auto_map) does not get it run: loading fails instead."""
    source = Path(resolve_model_source("default"))
    folder = tmp_path / "remote"
    shutil.copytree(source, folder)
    marker = tmp_path / "pwned"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    with contextlib.suppress(ModelSourceError, ValueError, OSError):
        load_classifier(str(folder), LABELS)
    assert not marker.exists()


def test_dropout_override_reaches_every_dropout_module_and_none_keeps_the_checkpoints():
    source = resolve_model_source("default")
    kept = load_classifier(source, LABELS)
    rates = {m.p for m in kept.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {0.1}  # all-MiniLM-L6-v2's own hidden and attention dropout
    changed = load_classifier(source, LABELS, dropout=0.0)
    assert {m.p for m in changed.modules() if isinstance(m, torch.nn.Dropout)} == {0.0}
    assert changed.config.attention_probs_dropout_prob == 0.0 and changed.config.classifier_dropout == 0.0
    torch.manual_seed(0)
    changed.train()
    batch = torch.tensor([[101, 2000, 2001, 2002, 102]])
    assert torch.equal(changed(input_ids=batch).logits, changed(input_ids=batch).logits)  # no random masks left
