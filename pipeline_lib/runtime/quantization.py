"""int8 graphs from the one fp32 ONNX export: dynamic (weights int8, activations quantized at run time) and static
QDQ (activations too, with ranges calibrated on a sample of training sentences). Which one serves is decided by
measurement in `runtime.selection`, not here."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

# dense layers only: embeddings (Gather), LayerNorm, GELU and softmax stay float (an int8 Gather cost 6 points of
# macro-F1 on PhraseBank)
QUANTIZED_OPS = ["MatMul"]


def _float_default() -> dict[str, int]:
    """Fused contrib ops (Attention, SkipLayerNormalization) defeat ONNX shape inference: their outputs are float."""
    import onnx

    return {"DefaultTensorType": onnx.TensorProto.FLOAT}


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """The quantizer warns on the root logger that shape pre-processing was skipped; it is skipped on purpose
    (symbolic shape inference does not know the optimizer's fused contrib ops)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_dynamic_int8(source: Path, target: Path) -> Path:
    """Dynamic int8 quantization of the MatMul/Gemm weights (activations quantized at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_root_logger():
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, extra_options=_float_default())
    return target


def quantize_static_int8(source: Path, target: Path, calibration: list[dict[str, np.ndarray]]) -> Path:
    """Static int8 in QDQ format: per-channel int8 weights, uint8 activations whose ranges come from running
    `calibration` (encoded batches of training sentences) through the fp32 graph (min-max)."""
    from onnxruntime.quantization import CalibrationDataReader

    if not calibration:
        raise ValueError("static int8 quantization needs at least one calibration batch")

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    shaped = target.with_name(f".shaped-{target.name}")
    with_value_shapes(source, shaped)
    try:
        with _quiet_root_logger():
            _quantize_static(shaped, target, Batches())
    finally:
        shaped.unlink(missing_ok=True)
    return target


def with_value_shapes(source: Path, target: Path) -> Path:
    """`source` with the type and shape of every intermediate tensor, by onnxruntime's symbolic shape inference
    (which knows the fused contrib ops): without them the quantizer cannot tell which activations are float and
    quantizes weights only."""
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model = SymbolicShapeInference.infer_shapes(onnx.load(str(source)), auto_merge=True, guess_output_rank=True)
    onnx.save(model, str(target))
    return target


def _quantize_static(source: Path, target: Path, reader: Any) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(source),
        str(target),
        reader,
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,  # u8 activations x s8 weights: the VNNI kernels' fast path on x86
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=QUANTIZED_OPS,
        calibrate_method=CalibrationMethod.MinMax,  # histogram methods need one fixed shape for every batch
        extra_options=_float_default(),
    )
