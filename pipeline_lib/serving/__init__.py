"""Serving a registered model: `tunepipe serve`'s HTTP app, which resolves `NAME@ALIAS` in the registry, runs the
ONNX predictor and follows alias moves without a restart."""
