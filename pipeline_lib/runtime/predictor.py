"""The ONNX predictor: tokenize, run the exported graph with onnxruntime, turn logits into labels, probabilities or
entities. What `predict`, `serve`, the gates and the MLflow pyfunc all run.

Light on purpose: onnxruntime, numpy and the `tokenizers` library (the fast tokenizer's Rust core, read from the
folder's tokenizer.json), no torch, no pandas, and transformers only for token classification (whose word windows
use its tokenizer API); from `pipeline_lib` only the numpy-only NER helpers (`task_types.windows`,
`task_types.entities`), so the module ships inside an MLflow model (`code_paths`) and a classification `predict`
starts in well under a second.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"  # dynamic int8
STATIC_INT8_FILE = "model.int8-static.onnx"  # static int8 (QDQ), calibrated on training sentences
META_FILE = "tunepipe.json"
OUTPUT_NAME = "logits"
DEFAULT_BATCH_SIZE = 32
LENGTH_GROUP = 8  # a batch's texts are sorted by length and run this many at a time: little padding is computed
PROB_DECIMALS = 6
EXAMPLE_TEXTS = [
    "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the corresponding period in 2007.",
    "The company's shares fell sharply after the profit warning.",
]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax (kept local: `task_types.metrics` would pull in scikit-learn)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def check_texts(texts: Any) -> list[str]:
    """`texts` as a list of strings, or a clear error."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not a single string (wrap it in a list)")
    if not (isinstance(texts, Sequence | np.ndarray) or hasattr(texts, "tolist")):  # lists, arrays, pandas Series
        raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: pass at least one string")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__} ({text!r}), expected str")
    return texts


def onnx_providers() -> list[str]:
    """CUDA first when this onnxruntime build offers it, CPU always."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OnnxPredictor:
    """Tokenize, run the ONNX graph, turn logits into labels and probabilities."""

    def __init__(self, session: Any, folder: Path, meta: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        self.session = session
        self.folder = Path(folder)
        self.meta = meta
        self.task: str = meta["task"]
        self.labels: list[str] = list(meta["labels"])
        self.max_length: int = int(meta["max_length"])
        self.input_names: list[str] = list(meta["input_names"])
        self._backend = Tokenizer.from_file(str(self.folder / "tokenizer.json"))  # the fast tokenizer's Rust core
        self._backend.no_padding()
        self._backend.enable_truncation(self.max_length)
        self.pad_id = _pad_id(self.folder, self._backend)
        self._tokenizer: Any = None
        self._single: dict[int, dict[str, np.ndarray]] = {}  # batch-1 input arrays, by sequence length

    @property
    def tokenizer(self) -> Any:
        """The transformers tokenizer of the folder (loaded on first use: only token classification needs it)."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.folder, trust_remote_code=False)
        return self._tokenizer

    @classmethod
    def from_dir(
        cls, path: str | Path, num_threads: int | None = None, cpu_only: bool = False, graph: str | None = None
    ) -> OnnxPredictor:
        """Load an ONNX folder written by the export step (model.onnx, tokenizer, tunepipe.json);
        `graph` picks another graph of the folder (e.g. the int8 one), `cpu_only` skips CUDA."""
        import onnxruntime as ort

        folder = Path(path)
        meta_file = folder / META_FILE
        if not meta_file.is_file():
            raise FileNotFoundError(f"{meta_file} is missing: {folder} is not an exported ONNX folder")
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        graph = graph or meta.get("graph", ONNX_FILE)  # the runtime the export chose by measurement
        if not (folder / graph).is_file():
            raise FileNotFoundError(f"{folder / graph} is missing: the export did not write this graph")
        options = ort.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
        providers = ["CPUExecutionProvider"] if cpu_only else onnx_providers()
        session = ort.InferenceSession(str(folder / graph), options, providers=providers)
        return cls(session, folder, meta)

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The graph's inputs for one batch: padded to the longest text, truncated at max_length."""
        encoded = self.encode_unpadded(texts)
        width = max(len(ids) for ids in encoded["input_ids"])
        everyone = np.arange(len(texts))
        return {name: self._padded(encoded[name], everyone, width, name) for name in self.input_names}

    def encode_unpadded(self, texts: list[str]) -> dict[str, list[list[int]]]:
        """Token ids, type ids and masks per text, truncated at max_length, not padded: straight from the fast
        tokenizer's Rust core (a tenth of the transformers wrapper's per-call cost, which dominates at batch 1)."""
        encodings = self._backend.encode_batch(texts)
        fields = {"input_ids": "ids", "token_type_ids": "type_ids", "attention_mask": "attention_mask"}
        return {name: [getattr(e, fields[name]) for e in encodings] for name in self.input_names}

    def run(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Logits for already encoded inputs."""
        return self.session.run([OUTPUT_NAME], features)[0]

    def logits(self, texts: list[str], batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Logits for `texts` (rows in input order), run in length-sorted groups of up to `batch_size` texts (token
        classification: one row per whitespace-separated word, all texts' words concatenated; see
        `task_types.windows`). The whole list is encoded at once: callers with a table pass it in chunks."""
        texts = check_texts(texts)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self.task == "token_classification":
            from pipeline_lib.task_types.windows import pretokenized_logits

            return pretokenized_logits(self, texts, batch_size)
        if len(texts) == 1:
            return self.single_logits(texts[0])
        # a few texts: groups of LENGTH_GROUP; many: the whole list sorted, so a run of `batch_size` neighbours is
        # about one length and pads to little (FPB, 3,200 texts: 1.25x the rows/s of sorting within each batch)
        return self.grouped_logits(texts, min(LENGTH_GROUP, batch_size) if len(texts) <= batch_size else batch_size)

    def single_logits(self, text: str) -> np.ndarray:
        """Logits of one text, the serving path at batch 1: one encoding straight into the graph's int64 inputs
        (no sorting, grouping or padding), the input arrays reused between calls."""
        encoding = self._backend.encode(text)
        n = len(encoding.ids)
        feeds = self._single.get(n)
        if feeds is None:
            feeds = {name: np.empty((1, n), dtype=np.int64) for name in self.input_names}
            self._single = {n: feeds}  # one length kept: texts of the same length in a row reuse it
        sources = {
            "input_ids": encoding.ids,
            "token_type_ids": encoding.type_ids,
            "attention_mask": encoding.attention_mask,
        }
        for name, array in feeds.items():
            array[0] = sources[name]
        return self.session.run([OUTPUT_NAME], feeds)[0]

    def grouped_logits(self, texts: list[str], group_size: int = LENGTH_GROUP) -> np.ndarray:
        """Logits of `texts` sorted by length and run `group_size` at a time (rows in input order).

        Real sentences vary in length, and one padded batch computes every text at the longest one's length:
        on Financial PhraseBank batches of 32 that is about 1.6x the work of groups of 8 sorted by length.
        """
        encoded = self.encode_unpadded(texts)
        lengths = np.array([len(ids) for ids in encoded["input_ids"]])
        order = np.argsort(lengths, kind="stable")
        rows: list[np.ndarray] = [np.empty(0)] * len(texts)
        for start in range(0, len(order), group_size):
            group = order[start : start + group_size]
            features = {
                name: self._padded(encoded[name], group, int(lengths[group].max()), name) for name in self.input_names
            }
            for index, row in zip(group, self.run(features), strict=True):
                rows[index] = row
        return np.stack(rows)

    def _padded(self, sequences: list[list[int]], group: np.ndarray, width: int, name: str) -> np.ndarray:
        pad = self.pad_id if name == "input_ids" else 0
        array = np.full((len(group), width), pad, dtype=np.int64)
        for row, index in enumerate(group):
            array[row, : len(sequences[index])] = sequences[index]
        return array

    def predict(self, texts: list[str], batch_size: int = DEFAULT_BATCH_SIZE) -> list[dict[str, Any]]:
        """One `{"text", "label", "probabilities": {label: p}}` per text (token classification:
        `{"text", "entities": [{"type", "start", "end", "text", "score"}]}`)."""
        texts = check_texts(texts)
        if self.task == "token_classification":
            from pipeline_lib.task_types.entities import predict_entities

            return predict_entities(self, texts, batch_size)
        probabilities = softmax(self.logits(texts, batch_size).astype(np.float64))
        return [
            {
                "text": text,
                "label": self.labels[int(row.argmax())],
                "probabilities": {
                    label: round(float(p), PROB_DECIMALS) for label, p in zip(self.labels, row, strict=True)
                },
            }
            for text, row in zip(texts, probabilities, strict=True)
        ]


def _pad_id(folder: Path, backend: Any) -> int:
    """The id of the tokenizer's pad token (tokenizer_config.json names it), else 0."""
    config = folder / "tokenizer_config.json"
    token = json.loads(config.read_text(encoding="utf-8")).get("pad_token") if config.is_file() else None
    if isinstance(token, dict):  # an AddedToken written out
        token = token.get("content")
    found = backend.token_to_id(token) if isinstance(token, str) else None
    return int(found) if found is not None else 0
