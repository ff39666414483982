import os

from pipeline_lib.config import load_config
from pipeline_lib.registry import store


def test_each_config_gets_its_own_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    a = load_config(None, [f"paths.store={tmp_path / 'a'}"])
    b = load_config(None, [f"paths.store={tmp_path / 'b'}"])
    store.connect(a)
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert store.tracking_uri(b).endswith("/b/mlflow.db")
    assert store.connect(b)._tracking_client.tracking_uri.endswith("/b/mlflow.db")


def test_user_environment_wins_over_the_local_default(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'team.db'}")
    cfg = load_config(None, [f"paths.store={tmp_path / 'local'}"])
    store.connect(cfg)
    assert os.environ["MLFLOW_TRACKING_URI"].endswith("team.db")
    assert store.tracking_uri(cfg).endswith("team.db")


def _first_use(store_dir: str, barrier, results) -> None:
    import traceback

    from pipeline_lib.layout import write_json  # noqa: F401  (imported before the barrier, like a real run)

    barrier.wait()
    try:
        client = store.connect(load_config(None, [f"paths.store={store_dir}"]))
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
        results.put("ok")
    except Exception:  # reported to the parent, which asserts on it
        results.put(traceback.format_exc(limit=3))


def test_runs_starting_together_on_a_fresh_local_store_all_get_it(tmp_path, monkeypatch):
    """A fresh sqlite store is created and migrated on first use; runs that start at the same moment must not
    each try to migrate it (MLflow's `_alembic_tmp_experiments already exists`)."""
    import multiprocessing

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(4), context.Queue()
    procs = [context.Process(target=_first_use, args=(str(tmp_path / "s"), barrier, results)) for _ in range(4)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert outcomes == ["ok"] * 4, "\n".join(outcomes)
    assert (tmp_path / "s" / "mlflow.db").is_file()
