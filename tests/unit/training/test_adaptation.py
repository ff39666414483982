import pytest
import torch

from pipeline_lib.config import load_config
from pipeline_lib.training.adaptation import encoder_layers, merged, prepare
from pipeline_lib.training.modeling import load_classifier, resolve_model_source

LABELS = ["negative", "neutral", "positive"]


@pytest.fixture(scope="module")
def source() -> str:
    return resolve_model_source("default")


def fresh(source: str):
    torch.manual_seed(0)
    return load_classifier(source, LABELS)


def trainable_names(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_full_fine_tuning_trains_everything(source):
    _, summary = prepare(fresh(source), load_config(None, ["train.freeze_embeddings=false"]).train, "x")
    assert summary.strategy == "none" and summary.trainable == summary.total


def test_the_classification_default_freezes_the_word_embeddings_and_the_ner_default_trains_them():
    assert load_config(None).train.freeze_embeddings
    assert not load_config(None, ["task=token_classification"]).train.freeze_embeddings


def test_head_only_trains_just_the_classifier(source):
    cfg = load_config(None, ["train.freeze=head_only"])
    model, summary = prepare(fresh(source), cfg.train, "sequence_classification")
    assert trainable_names(model) == {"classifier.weight", "classifier.bias"}
    assert summary.trainable == 384 * 3 + 3


def test_top_k_trains_the_top_layers_pooler_and_head(source):
    cfg = load_config(None, ["train.freeze=top_k", "train.trainable_top_layers=2"])
    model, _ = prepare(fresh(source), cfg.train, "sequence_classification")
    names = trainable_names(model)
    assert any(n.startswith("bert.encoder.layer.5.") for n in names)
    assert any(n.startswith("bert.encoder.layer.4.") for n in names)
    assert not any(n.startswith(("bert.encoder.layer.3.", "bert.embeddings.")) for n in names)
    assert {"classifier.weight", "bert.pooler.dense.weight"} <= names
    assert len(encoder_layers(model)) == 6


def test_top_k_beyond_the_encoder_is_refused(source):
    cfg = load_config(None, ["train.freeze=top_k", "train.trainable_top_layers=7"])
    with pytest.raises(ValueError, match="has 6"):
        prepare(fresh(source), cfg.train, "sequence_classification")


def test_lora_trains_adapters_and_head_then_merges_to_a_plain_model(source):
    cfg = load_config(None, ["train.lora.enabled=true", "train.lora.r=4"])
    model, summary = prepare(fresh(source), cfg.train, "sequence_classification")
    names = trainable_names(model)
    assert summary.strategy == "lora" and summary.fraction < 0.05
    assert any("lora_A" in n for n in names) and any("classifier" in n for n in names)
    # a trained adapter changes the output; the merged plain model reproduces the adapted one exactly
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    inputs = {"input_ids": torch.tensor([[101, 7592, 2088, 102]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    model.eval()
    with torch.no_grad():
        adapted = model(**inputs).logits
        plain = merged(model)
        assert type(plain).__name__ == "BertForSequenceClassification"
        assert torch.allclose(plain(**inputs).logits, adapted, atol=1e-5)


def test_lora_and_freezing_are_exclusive(source):
    cfg = load_config(None, ["train.lora.enabled=true", "train.freeze=head_only"])
    with pytest.raises(ValueError, match="exclusive"):
        prepare(fresh(source), cfg.train, "sequence_classification")


def test_frozen_word_embeddings_keep_their_pretrained_values_while_the_rest_trains(source):
    cfg = load_config(None, ["train.freeze_embeddings=true"])
    model, summary = prepare(fresh(source), cfg.train, "sequence_classification")
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"bert.embeddings.word_embeddings.weight"}
    assert summary.strategy == "embeddings_frozen"
    assert summary.total - summary.trainable == 30522 * 384
    before = model.get_input_embeddings().weight.detach().clone()
    position = model.bert.embeddings.position_embeddings.weight.detach().clone()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = {"input_ids": torch.tensor([[101, 2000, 2001, 102]]), "labels": torch.tensor([2])}
    model(**batch).loss.backward()
    optimizer.step()
    assert torch.equal(model.get_input_embeddings().weight, before)
    assert not torch.equal(model.bert.embeddings.position_embeddings.weight, position)


def test_freezing_embeddings_adds_nothing_to_a_strategy_that_already_freezes_them(source):
    cfg = load_config(None, ["train.freeze=head_only", "train.freeze_embeddings=true"])
    model, summary = prepare(fresh(source), cfg.train, "sequence_classification")
    assert summary.strategy == "head_only" and trainable_names(model) == {"classifier.weight", "classifier.bias"}


def test_frozen_bottom_layers_stop_backpropagation_above_them(source):
    cfg = load_config(None, ["train.frozen_bottom_layers=2"])
    model, summary = prepare(fresh(source), cfg.train, "sequence_classification")
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert summary.strategy == "bottom_2_frozen"
    below = ("bert.embeddings.", "bert.encoder.layer.0.", "bert.encoder.layer.1.")
    assert all(name.startswith(below) for name in frozen)
    assert any(name.startswith("bert.embeddings.position") for name in frozen)
    assert not any(name.startswith("bert.encoder.layer.2.") for name in frozen)
    # the same weights train as with train.freeze=top_k keeping the top 4 of the 6 layers
    top_k = load_config(None, ["train.freeze=top_k", "train.trainable_top_layers=4"]).train
    assert trainable_names(prepare(fresh(source), top_k, "sequence_classification")[0]) == trainable_names(model)

    graph: dict[int, bool] = {}  # layer → whether its output is in the autograd graph

    def record(index):
        def hook(module, inputs, output):
            hidden = output[0] if isinstance(output, tuple) else output
            graph[index] = hidden.requires_grad

        return hook

    for index, layer in enumerate(encoder_layers(model)):
        layer.register_forward_hook(record(index))
    model(input_ids=torch.tensor([[101, 2000, 2001, 102]]), labels=torch.tensor([2])).loss.backward()
    assert graph == {0: False, 1: False, 2: True, 3: True, 4: True, 5: True}  # backward stops above layer 1


def test_frozen_bottom_layers_must_leave_a_layer_to_train(source):
    cfg = load_config(None, ["train.frozen_bottom_layers=6"])
    with pytest.raises(ValueError, match="frozen_bottom_layers=6: the encoder has 6 layers"):
        prepare(fresh(source), cfg.train, "sequence_classification")


@pytest.mark.parametrize("strategy", ["train.freeze=top_k", "train.lora.enabled=true"])
def test_frozen_bottom_layers_are_refused_beside_a_strategy_that_picks_its_own_layers(strategy):
    with pytest.raises(ValueError, match=r"frozen_bottom_layers=1 with train\..*set train\.frozen_bottom_layers=0"):
        load_config(None, ["train.frozen_bottom_layers=1", strategy])
