from pipeline_lib.training.trainer import best_epoch, epoch_history


def test_epoch_history_merges_train_and_eval_rows():
    log = [
        {"loss": 1.0, "epoch": 1.0, "step": 10},
        {"eval_loss": 0.9, "eval_macro_f1": 0.5, "epoch": 1.0, "step": 10},
        {"loss": 0.7, "epoch": 2.0, "step": 20},
        {"eval_loss": 0.8, "eval_macro_f1": 0.7, "epoch": 2.0, "step": 20},
        {"train_runtime": 3.0, "epoch": 2.0},
    ]
    rows = epoch_history(log)
    assert rows == [
        {"epoch": 1.0, "train_loss": 1.0, "val_loss": 0.9, "val_macro_f1": 0.5},
        {"epoch": 2.0, "train_loss": 0.7, "val_loss": 0.8, "val_macro_f1": 0.7},
    ]
    assert best_epoch(rows, "macro_f1") == 2.0
    assert best_epoch(rows, "loss") == 2.0
    assert best_epoch([], "macro_f1") is None


def test_label_smoothing_reaches_the_trainers_loss(tmp_path):
    """`train.label_smoothing` is the Trainer's loss: (1 - ε)·NLL(gold) + ε·mean over classes of -log p."""
    import torch
    from transformers import Trainer

    from pipeline_lib.config import load_config
    from pipeline_lib.layout import RunDir
    from pipeline_lib.training.modeling import load_classifier, resolve_model_source
    from pipeline_lib.training.trainer import training_arguments

    torch.manual_seed(0)
    model = load_classifier(resolve_model_source("default"), ["negative", "neutral", "positive"]).eval()
    batch = {"input_ids": torch.tensor([[101, 2204, 102], [101, 2919, 102]]), "labels": torch.tensor([2, 0])}
    with torch.no_grad():
        log_p = torch.log_softmax(model(input_ids=batch["input_ids"]).logits, dim=-1)
    nll = -log_p.gather(1, batch["labels"][:, None]).mean()
    uniform = -log_p.mean()
    for epsilon in (0.0, 0.1):
        cfg = load_config(None, [f"train.label_smoothing={epsilon}", "train.precision=fp32"])
        args = training_arguments(cfg, RunDir(tmp_path / "run"), "fp32", "cpu")
        assert args.label_smoothing_factor == epsilon
        with torch.no_grad():
            loss = Trainer(model=model, args=args, eval_dataset=[batch]).compute_loss(model, dict(batch))
        assert torch.allclose(loss, (1 - epsilon) * nll + epsilon * uniform, atol=1e-5)


def test_label_smoothing_is_refused_beside_a_distillation_teacher():
    import pytest

    from pipeline_lib.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"train.label_smoothing=0.1 with train.distill.teacher.*label_smoothing=0"):
        load_config(None, ["train.label_smoothing=0.1", "train.distill.teacher=fpb@champion"])
