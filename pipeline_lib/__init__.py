"""tunepipe's library: the pipeline's steps as plain functions, and the packages they are made of (no Prefect
import anywhere below; `tasks/` and `flows/` wrap and compose it).

Layers, each importing only the ones above it:

- `config`, `layout`, `environment`, `hardware`, `roots`, `progress`: the typed config, the run directory, quiet
  library defaults, what the machine can do, the roots every configured path must stay in, and visible progress.
- `data/`: reading labelled files, splits, the validation rules (Great Expectations), dataset versions (DVC, git).
- `task_types/`: what differs between classification and NER (one strategy each), their metrics and bootstrap.
- `training/`: the encoder and its tokenizer, packaged weights (mpnet-base), Trainer set-up, freezing and LoRA,
  torchrun launch, and the hyper-parameter search's Optuna pieces.
- `runtime/`: the ONNX export, int8 quantization, the serving runtime chosen by measurement, the ONNX predictor and
  the MLflow pyfunc around it.
- `report/`: the model card and the HTML report.
- `registry/`: the MLflow store, registration with its journal, lineage, the ledger and alias moves.
- `gates/`: the checks a challenger must pass, against the champion re-scored on the same data.
- `scoring/`: `tunepipe score`, registered models applied to whole files in chunks (resumable Parquet parts and a
  manifest), locally or on Apache Spark.
- `serving/`: `tunepipe serve`, the HTTP app over a registered model, its prediction log, and `tunepipe monitor`.
- `monitoring/`: `tunepipe trend`, the watched label's share and a sentiment index per group and window of a scored
  dataset, the surge test against the trailing baseline, its report and alerts sent once.
- `steps/`: the pipeline's steps, one module each (decide, validate, tokenize, train, export, evaluate, gate,
  register), and their content-hash cache.
- `commands/`: what the CLI offers around the flow (init, promote, data add, reproduce, tune), composed of the
  packages above.
"""

import logging

# Step progress (epochs, cache hits) is INFO; it shows wherever the application attaches a handler
# (the CLI for `tunepipe step`, Prefect's extra loggers for flows).
logging.getLogger(__name__).setLevel(logging.INFO)
