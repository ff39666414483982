"""Step 2, tokenize: the model's fast tokenizer over each split, cached by content hash."""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from pipeline_lib.config import PipelineConfig
from pipeline_lib.layout import SPLITS, RunDir, cache_staging_dir, publish_cache_entry, read_json, write_json
from pipeline_lib.progress import ProgressReporter
from pipeline_lib.task_types import task_for
from pipeline_lib.training.modeling import load_tokenizer, resolve_model_source

PROGRESS_CHUNK = 10_000  # rows encoded at a time in a split larger than this, with progress shown
TOKENIZE_VERSION = "1"  # bump when the encoding below changes, to invalidate caches


@dataclass
class TokenizeResult:
    cache_key: str
    cache_hit: bool
    rows: dict[str, int]
    tokens: dict[str, int]
    at_max_length: dict[str, int]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


CONTENT_COLUMNS = ("text", "label", "tokens", "tags")  # what a split's content is, for either task


def split_content_hash(frame: pd.DataFrame) -> str:
    """Hash of a split's text and labels, or tokens and tags (independent of Parquet metadata)."""
    payload = frame[[c for c in CONTENT_COLUMNS if c in frame.columns]].to_json(orient="values", force_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of the fast tokenizer's full definition (vocab, normaliser, pre-tokeniser, specials)."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode("utf-8")).hexdigest()


def tokenize_cache_key(cfg: PipelineConfig, split_hashes: dict[str, str], tokenizer: Any) -> str:
    parts = [
        TOKENIZE_VERSION,
        cfg.task,
        str(cfg.model.max_length),
        str(cfg.model.stride),
        ",".join(cfg.data.label_names),
        tokenizer_fingerprint(tokenizer),
        *(f"{split}={split_hashes[split]}" for split in SPLITS),
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def encode_split(frame: pd.DataFrame, tokenizer: Any, cfg: PipelineConfig, name: str = "split") -> Any:
    """A `datasets.Dataset` of input ids, attention masks, lengths and labels, encoded as the task says
    (no padding: the collator pads each batch to its longest). A large split is encoded in chunks of
    `PROGRESS_CHUNK` rows, with progress shown (`pipeline_lib.progress`)."""
    from datasets import Dataset

    task = task_for(cfg.task)
    if len(frame) <= PROGRESS_CHUNK:
        return Dataset.from_dict(task.encode(frame, tokenizer, cfg))
    reporter = ProgressReporter(f"tokenizing {name}", len(frame), "rows", cfg.output)
    columns: dict[str, list[Any]] = {}
    for start in range(0, len(frame), PROGRESS_CHUNK):
        chunk = task.encode(frame.iloc[start : start + PROGRESS_CHUNK], tokenizer, cfg)
        if "sentence" in chunk:  # windows point at their sentence by position in the split, not in the chunk
            chunk["sentence"] = [start + owner for owner in chunk["sentence"]]
        for key, values in chunk.items():
            columns.setdefault(key, []).extend(values)
        reporter.advance(min(PROGRESS_CHUNK, len(frame) - start))
    reporter.close()
    return Dataset.from_dict(columns)


def tokenize(cfg: PipelineConfig, run: RunDir) -> TokenizeResult:
    """Tokenize the validated splits into `run.tokenized` (Arrow), reusing a cached copy when the data,
    tokenizer and settings are unchanged."""
    from datasets import DatasetDict

    start = time.perf_counter()
    frames = {split: pd.read_parquet(run.split_file(split)) for split in SPLITS}
    tokenizer = load_tokenizer(resolve_model_source(cfg.model.name))
    key = tokenize_cache_key(cfg, {s: split_content_hash(f) for s, f in frames.items()}, tokenizer)
    cached = cfg.paths.cache_dir / "tokenized" / key

    hit = (cached / "meta.json").is_file()
    if not hit:
        dataset = DatasetDict({split: encode_split(frame, tokenizer, cfg, split) for split, frame in frames.items()})
        staging = cache_staging_dir(cached)
        try:
            dataset.save_to_disk(str(staging))
            write_json(staging / "meta.json", _summary(dataset, cfg, key))
            publish_cache_entry(staging, cached, marker="meta.json")
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    shutil.rmtree(run.tokenized, ignore_errors=True)
    shutil.copytree(cached, run.tokenized)
    meta = read_json(run.tokenized / "meta.json")
    result = TokenizeResult(
        cache_key=key,
        cache_hit=hit,
        rows=meta["rows"],
        tokens=meta["tokens"],
        at_max_length=meta["at_max_length"],
        seconds=round(time.perf_counter() - start, 3),
    )
    write_json(run.tokenized / "result.json", result.to_dict())
    return result


def _summary(dataset: Any, cfg: PipelineConfig, key: str) -> dict[str, Any]:
    lengths = {split: ds.data.column("length").to_numpy() for split, ds in dataset.items()}  # Arrow, not row by row
    return {
        "cache_key": key,
        "rows": {split: len(ds) for split, ds in dataset.items()},
        "tokens": {split: int(found.sum()) for split, found in lengths.items()},
        "at_max_length": {split: int((found >= cfg.model.max_length).sum()) for split, found in lengths.items()},
    }


def load_tokenized(run: RunDir) -> Any:
    """The tokenized splits written by `tokenize`."""
    from datasets import load_from_disk

    if not (run.tokenized / "meta.json").is_file():
        raise FileNotFoundError(f"{run.tokenized} is missing: run the tokenize step first")
    return load_from_disk(str(run.tokenized))
