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
