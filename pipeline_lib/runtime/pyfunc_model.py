"""The model file MLflow runs when a registered tunepipe model is loaded (models-from-code): it names the
pyfunc class, so nothing is unpickled. The ONNX folder arrives as the `onnx` artifact in `load_context`."""

import mlflow

from pipeline_lib.runtime.pyfunc import TunepipePyfunc

mlflow.models.set_model(TunepipePyfunc())
