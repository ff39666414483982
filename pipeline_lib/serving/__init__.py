"""Serving a registered model: `tunepipe serve`'s HTTP app (`http`), which resolves `NAME@ALIAS` in the registry,
runs the ONNX predictor, follows alias moves without a restart and logs every prediction (`prediction_log`: a
rotating SQLite log without raw texts by default); and `tunepipe monitor` (`monitor`), which compares that log with
the model's own test split and says whether live traffic drifted."""
