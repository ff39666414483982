"""The exported model and what runs it: the ONNX folder (`onnx_export`), int8 graphs (`quantization`), the
serving runtime chosen by timing each candidate on this machine (`selection`), the ONNX predictor every consumer
runs (`predictor`), and the MLflow pyfunc logged as code around it (`pyfunc`, `pyfunc_model`). No registry here:
the registry stores what this package writes."""
