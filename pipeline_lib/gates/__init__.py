"""Judging a challenger: the checks (`checks`: floors, ONNX parity, budgets, slices, the paired bootstrap against
the champion) and the champion itself, found in the registry and re-scored through its ONNX graph on the
challenger's test rows (`champion`). Used by the gate step and by `commands.promote`."""
