"""Quiet, offline defaults for the libraries underneath (set only where the user has not chosen)."""

from __future__ import annotations

import os
import warnings

QUIET_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # MLflow logs at INFO to stderr by default: "Creating initial MLflow database tables..." on every fresh store,
    # a reply's noise before its answer; warnings and errors still print
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "pipeline_lib",
}
# pyspark 4 (the Spark engine's extra) warns on import that it does not yet fully support pandas 3; GX and MLflow
# import it whenever it is installed, on paths tunepipe never takes (pandas frames, not Spark ones)
PYSPARK_PANDAS_NOTICE = "PySpark does not yet fully support pandas"


def apply_quiet_env() -> None:
    """Set each default unless the environment already has a value for it; hide pyspark's pandas-3 notice."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", message=PYSPARK_PANDAS_NOTICE, category=FutureWarning)


def quiet_transformers() -> None:
    """No weight-loading progress bars or load reports (a fresh task head is expected)."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
