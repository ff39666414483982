"""Step cache keys follow exactly what a step reads (data, upstream files, config sections, code), and stored
outputs come back byte for byte into another run directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_lib.config import load_config
from pipeline_lib.layout import RunDir
from pipeline_lib.steps import cache


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("text,label\nup,positive\n")
    return tmp_path


def cfg(*extra: str):
    return load_config(None, ["data.path=data.csv", *extra])


def test_validate_key_follows_data_data_config_and_the_champion_only(workdir: Path):
    run = RunDir(workdir / "run")
    base = cache.fingerprint("validate", cfg(), run)
    assert base is not None and set(base.parts) == {"data_file", "champion", "config", "code"}
    assert base.parts["champion"] == "none"  # its drift check compares with the champion: no champion yet
    assert cache.fingerprint("validate", cfg("train.learning_rate=1e-3"), run).key == base.key
    assert cache.fingerprint("validate", cfg("data.min_chars=5"), run).key != base.key
    assert cache.fingerprint("validate", cfg("gates.drift.label_mix.max=0.3"), run).key != base.key
    (workdir / "data.csv").write_text("text,label\nup,positive\ndown,negative\n")
    changed = cache.fingerprint("validate", cfg(), run)
    assert changed.key != base.key
    assert cache.explain_miss(changed, base.to_dict()).startswith("changed: data_file ")


def test_train_key_follows_training_config_not_gates(workdir: Path):
    run = RunDir(workdir / "run")
    (run.tokenized).mkdir(parents=True)
    (run.tokenized / "meta.json").write_text('{"cache_key": "abc"}')
    base = cache.fingerprint("train", cfg(), run)
    assert base.parts["tokenized"] == "abc"
    assert cache.fingerprint("train", cfg("gates.min_improvement=0.1"), run).key == base.key
    assert cache.fingerprint("train", cfg("train.max_steps=3"), run).key != base.key
    (run.tokenized / "meta.json").write_text('{"cache_key": "def"}')
    assert cache.fingerprint("train", cfg(), run).key != base.key


def test_missing_input_or_uncacheable_step_has_no_key(workdir: Path):
    run = RunDir(workdir / "run")
    assert cache.fingerprint("train", cfg(), run) is None  # nothing tokenized yet
    assert cache.fingerprint("validate", cfg("data.path=missing.csv"), run) is None
    assert cache.fingerprint("gate", cfg(), run) is None
    assert cache.fingerprint("register", cfg(), run) is None


def test_code_version_covers_imported_library_modules_only():
    closure = {
        p.relative_to(cache.PACKAGE_ROOT).as_posix() for p in cache.module_closure("pipeline_lib.steps.validate")
    }
    assert {"steps/validate.py", "data/readers.py", "data/splits.py", "config.py"} <= closure
    assert "registry/registration.py" not in closure and "steps/cache.py" not in closure
    assert len(cache.code_version("steps.validate")) == 16


def test_model_hash_ignores_volatile_files(workdir: Path):
    model = workdir / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "training_args.bin").write_bytes(b"run-specific")
    before = cache.dir_md5(model)
    (model / "training_args.bin").write_bytes(b"another run")
    assert cache.dir_md5(model) == before
    (model / "model.safetensors").write_bytes(b"other weights")
    assert cache.dir_md5(model) != before


def test_store_saves_and_restores_outputs_into_another_run(workdir: Path):
    config = cfg()
    first = RunDir(workdir / "runs" / "a")
    for rel, content in (("data/train.parquet", b"t"), ("data/test.parquet", b"x"), ("validation/report.json", b"{}")):
        (first.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (first.root / rel).write_bytes(content)
    fp = cache.fingerprint("validate", config, first)
    store = cache.StepStore(config)
    assert not store.has(fp)
    store.save(fp, first)
    assert store.has(fp) and store.last("validate")["key"] == fp.key

    second = RunDir(workdir / "runs" / "b")
    assert store.restore(fp, second)
    assert (second.root / "data" / "train.parquet").read_bytes() == b"t"
    assert (second.root / "validation" / "report.json").read_bytes() == b"{}"
    other = cache.Fingerprint("validate", "0" * 24, fp.parts)
    assert not store.restore(other, RunDir(workdir / "runs" / "c"))
