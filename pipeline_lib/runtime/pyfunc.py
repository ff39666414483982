"""The MLflow pyfunc of a registered model: `OnnxPredictor` behind MLflow's `predict`, logged as code
(`pyfunc_model.py`), with the ONNX folder as its artifact and `pipeline_lib` as its code path."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from pipeline_lib.runtime.predictor import DEFAULT_BATCH_SIZE, EXAMPLE_TEXTS, OnnxPredictor, check_texts

MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")  # the file MLflow runs to load the model
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # pipeline_lib, shipped with the model


def texts_from_input(model_input: Any) -> list[str]:
    """The texts in a pyfunc input: a DataFrame with a `text` column, a Series or a list of strings."""
    if isinstance(model_input, pd.DataFrame):
        if "text" not in model_input.columns:
            raise ValueError(f"input DataFrame needs a 'text' column, got {list(model_input.columns)}")
        return check_texts(model_input["text"].tolist())
    return check_texts(model_input)


def predictions_frame(predictions: list[dict[str, Any]], labels: list[str]) -> pd.DataFrame:
    """Columns `label`, `probabilities` (a dict per row) and one `p_<label>` column per label (token
    classification: `entities`, a JSON list of {type, start, end, text, score} per row)."""
    if predictions and "entities" in predictions[0]:
        return pd.DataFrame({"entities": [json.dumps(p["entities"]) for p in predictions]})
    frame = pd.DataFrame(
        {
            "label": [p["label"] for p in predictions],
            "probabilities": [p["probabilities"] for p in predictions],
        }
    )
    for label in labels:
        frame[f"p_{label}"] = [p["probabilities"][label] for p in predictions]
    return frame


class TunepipePyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc around `OnnxPredictor`; the ONNX folder is the artifact named `onnx`. Logged as code
    (`pyfunc_model.py`), never pickled."""

    def __init__(self) -> None:
        self.predictor: OnnxPredictor | None = None

    def load_context(self, context: Any) -> None:
        self.predictor = OnnxPredictor.from_dir(context.artifacts["onnx"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        """Predict for a DataFrame with a `text` column (or a list of strings); `batch_size` in params."""
        if self.predictor is None:
            raise RuntimeError("model not loaded: load it with mlflow.pyfunc.load_model")
        batch_size = int((params or {}).get("batch_size", DEFAULT_BATCH_SIZE))
        predictions = self.predictor.predict(texts_from_input(model_input), batch_size=batch_size)
        return predictions_frame(predictions, self.predictor.labels)


def _pinned(*packages: str) -> list[str]:
    """`name==version` for each installed package (the first installed of `a|b` alternatives)."""
    pins = []
    for spec in packages:
        for name in spec.split("|"):
            try:
                pins.append(f"{name}=={metadata.version(name)}")
                break
            except metadata.PackageNotFoundError:
                continue
    return pins


def pyfunc_requirements() -> list[str]:
    """What the served model needs: onnxruntime (CPU or GPU build), the tokenizer, pandas, numpy."""
    return _pinned("onnxruntime|onnxruntime-gpu", "transformers", "tokenizers", "pandas", "numpy")


def pyfunc_log_kwargs(onnx_dir: Path) -> dict[str, Any]:
    """Keyword arguments for `mlflow.pyfunc.log_model(name=..., **kwargs)` (or `save_model(path=...)`).

    The model is logged from code (`pyfunc_model.py`, MLflow's models-from-code), so loading it runs that file
    and never unpickles anything. The package `pipeline_lib` travels with it as `code_paths`, so loading does not
    need tunepipe installed; the signature is inferred from an example input and the model's own output.
    """
    from mlflow.models import infer_signature

    predictor = OnnxPredictor.from_dir(onnx_dir)
    example = pd.DataFrame({"text": EXAMPLE_TEXTS})
    output = predictions_frame(predictor.predict(EXAMPLE_TEXTS), predictor.labels)
    return {
        "python_model": str(MODEL_CODE),
        "artifacts": {"onnx": str(onnx_dir)},
        "code_paths": [str(PACKAGE_ROOT)],
        "signature": infer_signature(example, output, params={"batch_size": DEFAULT_BATCH_SIZE}),
        "input_example": example,
        "pip_requirements": pyfunc_requirements(),
    }
