"""The library versions a model was trained and exported with, recorded as run params `lib.<name>` at registration
(and read back by `tunepipe lineage` and `tunepipe reproduce`, which says which differ from this environment's)."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

PARAM_PREFIX = "lib."
# What a fine-tuned model's figures depend on: the numerics (torch, numpy), the tokenization, the Trainer and its
# adapters, the data reading and splitting, the metrics and the ONNX side; tunepipe itself last.
LIBRARIES = (
    "torch",
    "transformers",
    "tokenizers",
    "accelerate",
    "peft",
    "safetensors",
    "numpy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "seqeval",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "tunepipe",
)


def library_versions() -> dict[str, str]:
    """`{"python": "3.11.9", "torch": "2.13.0+cpu", ...}` for this environment (libraries not installed left out)."""
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def library_params() -> dict[str, str]:
    """The versions as run params."""
    return {f"{PARAM_PREFIX}{name}": value for name, value in library_versions().items()}


def recorded_libraries(params: dict[str, str]) -> dict[str, str]:
    """The versions a run recorded (empty for runs registered before they were recorded)."""
    return {key.removeprefix(PARAM_PREFIX): value for key, value in params.items() if key.startswith(PARAM_PREFIX)}


def differences(recorded: dict[str, str], current: dict[str, str]) -> dict[str, tuple[str | None, str | None]]:
    """`{name: (recorded, current)}` for every library whose version differs (or is on one side only)."""
    return {
        name: (recorded.get(name), current.get(name))
        for name in sorted(set(recorded) | set(current))
        if recorded.get(name) != current.get(name)
    }
