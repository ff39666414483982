"""The search's pieces on real Optuna studies in sqlite storage (no training): the search space and its errors,
seeded and conditional suggestions, the baseline trial, the trial reporter and its pruning, recovery of trials whose
worker died, the storage URL, layered configs and the overlay's place outside the config hash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from transformers import TrainerControl, TrainerState

from pipeline_lib.config import ConfigError, load_config, with_layer
from pipeline_lib.roots import RootError, confine
from pipeline_lib.training import tuning

SPACE = (
    "tune.space={train.learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}, "
    "train.adaptation: {choices: [full, lora]}, train.lora.r: {choices: [4, 8]}, train.epochs: {low: 1, high: 3, "
    "type: int}}"
)


def config(tmp_path: Path, *extra: str):
    return load_config(None, [f"paths.store={tmp_path / 'store'}", *extra])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("tune.space={train.learning_rat: {low: 1.0e-5, high: 1.0e-4}}", r"no such field; did you mean train\.learn"),
        ("tune.space={model.max_length: {choices: [32, 64]}}", r"only train\.\* fields are searched"),
        ("tune.space={train.epochs: {low: 4, high: 2}}", r"tune\.space\.train\.epochs: .*low \(4\) must be below"),
        ("tune.space={train.learning_rate: {low: 0, high: 1.0e-3, log: true}}", r"log-uniform range needs low > 0"),
        ("tune.space={train.warmup_ratio: {low: 0.0, high: 1.5}}", r"train\.warmup_ratio=1\.5: Input should be less"),
        ("tune.space={train.freeze: {choices: [none, top_k]}}", r"search it as train\.adaptation"),
        ("tune.space={train.adaptation: {choices: [full, lorra]}}", r"'lorra' is not one of full, head_only"),
        ("tune.space={train.batch_size: {choices: []}}", r"choices must be a non-empty list"),
        ("tune.space={train.batch_size: {low: 8}}", r"needs low and high"),
        ("tune.space={}", r"needs at least one parameter"),
        ("tune.enqueue=[{train.learning_rate: 0.5}]", r"enqueue\[0\]\.train\.learning_rate=0\.5 lies outside"),
        ("tune.enqueue=[{train.seed: 3}]", r"enqueue\[0\]\.train\.seed: not in tune\.space"),
        ("tune.study=has space", r"tune\.study"),
    ],
)
def test_bad_search_settings_name_the_field_and_the_fix(override: str, message: str):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_each_task_has_its_own_default_space_and_a_given_space_replaces_it():
    classification = load_config(None).tune.space
    ner = load_config(None, ["task=token_classification"]).tune.space
    assert classification["train.learning_rate"].high == 2e-4 and ner["train.learning_rate"].high == 3e-4
    assert ner["train.batch_size"].choices == [16, 32] and classification["train.batch_size"].choices == [8, 16, 32]
    given = load_config(None, ["task=token_classification", "tune.space={train.weight_decay: {low: 0, high: 0.1}}"])
    assert list(given.tune.space) == ["train.weight_decay"]


def test_how_to_search_is_not_part_of_the_config_hash_but_the_values_found_are():
    base = load_config(None)
    same = load_config(None, ["tune.trials=3", "tune.pruner=hyperband", SPACE, "tune.retune_every=2"])
    assert same.config_hash() == base.config_hash()
    assert load_config(None, ["train.learning_rate=1.0e-4"]).config_hash() != base.config_hash()


def test_config_files_layer_sections_field_by_field_and_replace_values(tmp_path: Path):
    base, overlay = tmp_path / "base.yaml", tmp_path / "tuned.yaml"
    base.write_text("train: {epochs: 7, seed: 3}\ngates: {floors: {accuracy: 0.6, macro_f1: 0.5}}\n")
    overlay.write_text(
        "train: {learning_rate: 1.0e-4, lora: {r: 4}}\ngates: {floors: {macro_f1: 0.7}}\n"
        "tune: {space: {train.seed: {low: 1, high: 9}}}\n"
    )
    cfg = load_config([base, overlay], ["train.seed=5"])
    assert (cfg.train.epochs, cfg.train.learning_rate, cfg.train.seed, cfg.train.lora.r) == (7, 1e-4, 5, 4)
    assert cfg.gates.floors == {"macro_f1": 0.7}  # a mapping value is replaced whole, as a --set would
    assert list(cfg.tune.space) == ["train.seed"]
    with pytest.raises(ConfigError, match="config file not found"):
        load_config([base, tmp_path / "missing.yaml"])


def test_suggestions_are_seeded_and_draw_lora_settings_only_for_lora(tmp_path: Path):
    def draws(store: Path) -> list[dict]:
        cfg = config(store, SPACE, "tune.startup_trials=3", "tune.sampler_seed=7")
        study = tuning.open_study(cfg)
        rows = []
        for _ in range(5):
            trial = study.ask()
            rows.append(tuning.suggest(trial, cfg))
            study.tell(trial, 0.5)
        return rows

    first, again = draws(tmp_path / "a"), draws(tmp_path / "b")
    assert first == again
    for params in first:
        assert ("train.lora.r" in params) == (params["train.adaptation"] == "lora")
        assert isinstance(params["train.epochs"], int) and 1e-5 <= params["train.learning_rate"] <= 1e-3
    lora = {"train.adaptation": "lora", "train.lora.r": 4, "train.epochs": 2}
    assert tuning.overlay_of(lora) == {
        "train": {"freeze": "none", "lora": {"enabled": True, "r": 4}, "frozen_bottom_layers": 0, "epochs": 2}
    }
    # a base that freezes its bottom layers still runs a LoRA trial (the two exclude each other)
    trial_cfg = tuning.trial_config(config(tmp_path, "train.frozen_bottom_layers=1"), lora, parallel=2)
    assert trial_cfg.train.lora.enabled and trial_cfg.train.lora.r == 4 and trial_cfg.train.epochs == 2
    assert trial_cfg.train.frozen_bottom_layers == 0
    assert trial_cfg.train.num_threads == max(1, (os.cpu_count() or 1) // 2) and not trial_cfg.train.resume


def test_the_baseline_is_the_base_configs_values_that_lie_in_the_space(tmp_path: Path):
    cfg = config(tmp_path, "train.epochs=8", "train.batch_size=16", "train.learning_rate=5.0e-5")
    assert tuning.baseline(cfg) == {
        "train.learning_rate": 5e-5,
        "train.batch_size": 16,
        "train.warmup_ratio": 0.1,
        "train.weight_decay": 0.01,
    }  # epochs 8 lies outside the default 2..6: the sampler draws it
    lora = config(tmp_path, SPACE, "train.lora.enabled=true", "train.lora.r=8", "train.epochs=2")
    assert tuning.baseline(lora) == {
        "train.learning_rate": 5e-5,
        "train.adaptation": "lora",
        "train.lora.r": 8,
        "train.epochs": 2,
    }


def test_the_reporter_reports_each_validation_pass_and_stops_a_trial_the_pruner_prunes(tmp_path: Path):
    cfg = config(tmp_path, "tune.pruner_startup_trials=1", "tune.pruner_warmup_epochs=0")
    study = tuning.open_study(cfg)
    good = study.ask()
    for step, value in enumerate((0.6, 0.8), 1):
        good.report(value, step)
    study.tell(good, 0.8)

    logged = []
    trial = study.ask()
    callback = tuning.reporter(trial, "macro_f1", lambda step, metrics: logged.append((step, metrics)))
    control = TrainerControl()
    callback.on_evaluate(None, TrainerState(), control, metrics={"eval_macro_f1": 0.2, "eval_loss": 1.1})
    assert control.should_training_stop and callback.pruned_at == 1
    assert logged == [(1, {"macro_f1": 0.2, "loss": 1.1})]
    assert study.get_trials(deepcopy=False)[trial.number].intermediate_values == {1: 0.2}

    better = study.ask()
    control = TrainerControl()
    tuning.reporter(better, "macro_f1").on_evaluate(None, TrainerState(), control, metrics={"eval_macro_f1": 0.7})
    assert not control.should_training_stop
    with pytest.raises(tuning.TuneError, match="no entity_f1"):
        tuning.reporter(better, "entity_f1").on_evaluate(None, TrainerState(), control, metrics={"eval_loss": 1.0})


def test_trials_of_a_dead_local_worker_are_failed_and_queued_again(tmp_path: Path):
    cfg = config(tmp_path)
    study = tuning.open_study(cfg)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan, alive = study.ask(), study.ask()
    params = tuning.suggest(orphan, cfg)
    tuning.suggest(alive, cfg)
    orphan.set_user_attr("worker", f"{tuning.worker_id().rpartition(':')[0]}:{dead.stdout.strip()}")
    alive.set_user_attr("worker", tuning.worker_id())

    assert tuning.recover_dead_trials(study) == [orphan.number]
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states == {0: TrialState.FAIL, 1: TrialState.RUNNING, 2: TrialState.WAITING}
    retry = study.get_trials(deepcopy=False)[2]
    assert retry.params == params and retry.system_attrs["failed_trial"] == orphan.number


def test_storage_is_sqlite_beside_the_store_unless_configured_and_its_password_is_masked(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(tuning.STORAGE_ENV, raising=False)
    cfg = config(tmp_path)
    assert tuning.storage_url(cfg) == f"sqlite:///{(tmp_path / 'store').resolve() / 'optuna.db'}"
    monkeypatch.setenv(tuning.STORAGE_ENV, "postgresql://tp:secret@db:5432/optuna")
    assert tuning.storage_url(cfg).startswith("postgresql://")
    assert tuning.masked(tuning.storage_url(cfg)) == "postgresql://tp:***@db:5432/optuna"
    assert tuning.storage_url(config(tmp_path, "tune.storage=sqlite:///x.db")) == "sqlite:///x.db"
    with pytest.raises(RootError, match=r"tune\.storage: .* is outside the roots allowed for writing"):
        confine(load_config(None, ["tune.storage=sqlite:////elsewhere/optuna.db"]), base=tmp_path)


def test_a_study_keeps_what_it_searched_on(tmp_path: Path):
    cfg = config(tmp_path)
    assert tuning.search_key(cfg) == tuning.search_key(config(tmp_path, "train.learning_rate=1.0e-3", "tune.trials=3"))
    assert tuning.search_key(cfg) != tuning.search_key(config(tmp_path, "train.seed=1"))
    assert tuning.search_key(cfg) != tuning.search_key(config(tmp_path, "model.max_length=64"))
    with pytest.raises(tuning.TuneError, match="no study 'nope'"):
        tuning.open_study(config(tmp_path, "tune.study=nope"), create=False)
    with pytest.raises(ConfigError, match=r"train\.num_processes/nnodes > 1 is not searched"):
        tuning.check_searchable(config(tmp_path, "train.num_processes=2"))


def test_the_overlay_of_the_best_trial_names_its_study_and_trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cfg = config(tmp_path, "tune.study=demo", "tune.space={train.learning_rate: {low: 1.0e-5, high: 1.0e-3}}")
    study = tuning.open_study(cfg)
    with pytest.raises(tuning.TuneError, match="has no complete trial yet"):
        tuning.best_layer(study, cfg)
    study.set_user_attr("data_md5", "abc123")
    for lr, value in ((1e-4, 0.7), (3e-5, 0.75)):
        study.enqueue_trial({"train.learning_rate": lr})
        trial = study.ask()
        tuning.suggest(trial, cfg)
        study.tell(trial, value)
    layer = tuning.best_layer(study, cfg)
    assert layer["train"]["learning_rate"] == 3e-5
    origin = layer["tune"]["origin"]
    assert (origin["study"], origin["trial"], origin["value"], origin["data_md5"]) == ("demo", 1, 0.75, "abc123")
    path = tmp_path / "configs" / "tuned" / "demo.yaml"
    tuning.write_overlay(tuning.overlay_text(layer, ["base.yaml"], path), path)
    assert f"tunepipe run --config base.yaml --config {path}" in path.read_text()
    monkeypatch.chdir(tmp_path)  # files inside the working directory are named relative to it
    shown = tuning.overlay_text(layer, [str(tmp_path / "configs" / "base.yaml")], path)
    command = next(line for line in shown.splitlines() if "tunepipe run" in line)
    assert command == "#   tunepipe run --config configs/base.yaml --config configs/tuned/demo.yaml"
    assert tuning.run_command([], path) == "tunepipe run --config configs/tuned/demo.yaml"  # no base: none invented
    assert "--config BASE.yaml --config" in tuning.overlay_text(layer, [], path)  # the file's header shows where
    tuned = load_config([path])
    assert tuned.train.learning_rate == 3e-5 and tuned.tune.origin.trial == 1
    assert with_layer(cfg, layer).config_hash() == load_config(None, ["train.learning_rate=3.0e-5"]).config_hash()
    assert optuna.load_study(study_name="demo", storage=tuning.storage_url(cfg)).best_trial.number == 1
