"""The Spark engine of `tunepipe score --engine spark`: each chunk's texts go to Spark as a DataFrame and come back
scored, so reading, bad rows, row ids, parts, the manifest and resumption are those of the local engine (same
schema, same manifest). Two routes (`score.spark_route`):

- `map_in_pandas` (default, the faster in bench/scoring.py): the verified ONNX folder is shipped to the executors
  with `SparkContext.addFile`, and each Python worker runs `OnnxPredictor` (loaded once per worker) in
  `DataFrame.mapInPandas`, returning label and float32 probabilities;
- `spark_udf`: MLflow's own route, `mlflow.pyfunc.spark_udf` on `models:/NAME/VERSION` (the version the alias
  named when the run started), whose pyfunc returns rounded probabilities and a dict column it must drop.

On a cluster (`--spark-master spark://...`, or `spark-submit`), executors need tunepipe's `pipeline_lib`
(installed, or shipped here with `addPyFile`) and get the model from the driver (map_in_pandas) or from the MLflow
server (spark_udf); see the README."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline_lib.config import ScoreConfig
from pipeline_lib.scoring.models import ScoringModel, identity_columns

_PREDICTORS: dict[str, Any] = {}  # per executor Python worker: ONNX folder -> OnnxPredictor


def session(master: str) -> Any:
    """The Spark session (created once per process), Arrow transfers on, no UI."""
    import warnings

    from pyspark.sql import SparkSession

    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    spark = (
        SparkSession.builder.master(master)
        .appName("tunepipe-score")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def scored_schema(model: ScoringModel) -> str:
    """The DDL schema of one model's scored columns (unprefixed), after the row index `i`."""
    if model.task == "token_classification":
        return "i long, entities string"
    return "i long, label string, " + ", ".join(f"`p_{label}` float" for label in model.labels)


def _partition_scorer(folder_name: str, task: str, labels: list[str], batch_size: int, threads: int) -> Any:
    """The function mapInPandas runs on each partition (a closure: cloudpickled to the executors)."""

    def score_partition(frames: Any) -> Any:
        import json
        import warnings

        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
        import pandas as pd
        from pyspark import SparkFiles

        from pipeline_lib.runtime.predictor import OnnxPredictor
        from pipeline_lib.scoring.models import softmax

        folder = SparkFiles.get(folder_name)
        predictor = _PREDICTORS.get(folder)
        if predictor is None:
            predictor = _PREDICTORS[folder] = OnnxPredictor.from_dir(folder, num_threads=threads, cpu_only=True)
        for frame in frames:
            texts = frame["text"].tolist()
            out = pd.DataFrame({"i": frame["i"].to_numpy()})
            if not texts:
                yield out
                continue
            if task == "token_classification":
                out["entities"] = [json.dumps(r["entities"]) for r in predictor.predict(texts, batch_size=batch_size)]
            else:
                probabilities = softmax(predictor.logits(texts, batch_size=batch_size).astype(np.float64))
                out["label"] = np.asarray(labels, dtype=object)[probabilities.argmax(axis=1)]
                for j, label in enumerate(labels):
                    out[f"p_{label}"] = probabilities[:, j].astype(np.float32)
            yield out

    return score_partition


class SparkScorer:
    """Scores chunks on Spark, one job per model and chunk."""

    def __init__(self, models: list[ScoringModel], settings: ScoreConfig, tracking_uri: str | None = None) -> None:
        self.models, self.settings = models, settings
        self.spark = session(settings.spark_master)
        context = self.spark.sparkContext
        self.partitions = settings.spark_partitions or context.defaultParallelism
        self.threads = settings.num_threads or max(1, (os.cpu_count() or 1) // max(1, context.defaultParallelism))
        self._staging = Path(tempfile.mkdtemp(prefix="tunepipe-spark-"))
        self._shipped: dict[str, str] = {}
        self._udfs: dict[str, Any] = {}
        if not settings.spark_master.startswith("local"):
            context.addPyFile(_package_zip(self._staging))
        for model in models:
            if settings.spark_route == "map_in_pandas":
                self._shipped[model.name] = self._ship(model)
            else:
                self._udfs[model.name] = self._udf(model, tracking_uri)

    def _ship(self, model: ScoringModel) -> str:
        """Ship the model's verified ONNX folder to every executor under a name of its own."""
        name = f"{model.name}-v{model.version}-{model.digest[:12]}"
        staged = self._staging / name
        shutil.copytree(model.folder, staged, copy_function=_link_or_copy)
        self.spark.sparkContext.addFile(str(staged), recursive=True)
        return name

    def _udf(self, model: ScoringModel, tracking_uri: str | None) -> Any:
        import mlflow.pyfunc

        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        result = scored_schema(model).removeprefix("i long, ").replace("float", "double")
        return mlflow.pyfunc.spark_udf(
            self.spark, f"models:/{model.name}/{model.version}", result_type=result, env_manager="local"
        )

    def columns(self, texts: list[str]) -> dict[str, pa.Array]:
        import pandas as pd

        frame = self.spark.createDataFrame(
            pd.DataFrame({"i": np.arange(len(texts), dtype=np.int64), "text": texts}), schema="i long, text string"
        ).repartition(self.partitions)
        out: dict[str, pa.Array] = {}
        for model in self.models:
            if self.settings.spark_route == "map_in_pandas":
                scorer = _partition_scorer(
                    self._shipped[model.name], model.task, model.labels, self.settings.batch_size, self.threads
                )
                scored = frame.mapInPandas(scorer, scored_schema(model))
            else:
                from pyspark.sql import functions as F

                scored = frame.select("i", self._udfs[model.name](F.struct("text")).alias("r")).select("i", "r.*")
            table = scored.toArrow().sort_by("i")
            if table.num_rows != len(texts):
                raise RuntimeError(f"Spark returned {table.num_rows} rows for {len(texts)} texts")
            for name in table.column_names[1:]:
                column = table.column(name).combine_chunks()
                if name.startswith("p_"):
                    column = column.cast(pa.float32())
                out[model.prefix + name] = column
            for name, array in identity_columns(model, len(texts)).items():
                out[model.prefix + name] = array
        return out

    def close(self) -> None:
        shutil.rmtree(self._staging, ignore_errors=True)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _package_zip(folder: Path) -> str:
    """pipeline_lib as a zip for the executors of a cluster (addPyFile)."""
    import pipeline_lib

    root = Path(pipeline_lib.__file__).resolve().parent
    return shutil.make_archive(str(folder / "pipeline_lib"), "zip", root.parent, root.name)
