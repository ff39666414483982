"""`tunepipe init DATA`: look at a labelled file or folder the project has never seen and propose a config that
runs as is. It finds the format, encoding, delimiter, the text / label / tag and split columns or split files,
reads the data with the pipeline's own readers, counts labels, repeats, near-duplicates, conflicts, damaged text
and lengths in tokens, and writes a commented YAML config with each choice and the reason for it."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline_lib.config import DataConfig, PipelineConfig
from pipeline_lib.data.keys import text_key
from pipeline_lib.data.readers import SUFFIX_FORMATS, read_data
from pipeline_lib.data.sniff import TEXT_NAMES, SniffError, detect_encoding, detect_format, read_head, sniff_delimiter
from pipeline_lib.data.splits import SPLIT_SYNONYMS, assign_splits
from pipeline_lib.data.text_quality import problems
from pipeline_lib.task_types import task_for

LABEL_NAMES = ("label", "labels", "sentiment", "class", "category", "target", "tag", "y", "airline_sentiment")
SPLIT_WORDS = {"train": "train", "dev": "validation", "valid": "validation", "val": "validation", "testa": "validation"}
SPLIT_WORDS |= {"validation": "validation", "test": "test", "testb": "test"}
LENGTHS = (32, 64, 128, 256, 512)
SAMPLE_ROWS = 5000  # rows whose token lengths are measured


class InitError(SniffError):
    """The data cannot be inspected; the message says what was found and what would be needed."""


@dataclass
class Inspection:
    """What `tunepipe init` found, and the options it chose (with the reason for each)."""

    path: Path
    task: str
    data: dict[str, Any]  # the `data:` section to write
    rows: dict[str, int]
    label_counts: dict[str, int]
    found: dict[str, Any] = field(default_factory=dict)  # duplicates, conflicts, damaged texts, lengths
    choices: list[tuple[str, str]] = field(default_factory=list)  # (option, why)
    max_length: int = 128
    train: dict[str, Any] = field(default_factory=dict)  # the `train:` options proposed (epoch cap, eval interval)


def split_files(folder: Path) -> dict[str, str]:
    """train / validation / test files of a folder, by the split word in each name (eng.testa is validation)."""
    found: dict[str, str] = {}
    for file in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        words = re.split(r"[^a-z]+", file.name.lower())
        splits = {SPLIT_WORDS[w] for w in words if w in SPLIT_WORDS}
        if len(splits) == 1:
            split = splits.pop()
            if split in found:
                raise InitError(f"{folder}: two {split} files ({found[split]}, {file.name}); keep one per split")
            found[split] = file.name
    return found if set(found) == {"train", "validation", "test"} else {}


def _table(file: Path, fmt: str, encoding: str) -> tuple[list[str], list[dict[str, Any]], str | None]:
    """Column names, the first rows and the CSV delimiter of a tabular file."""
    if fmt == "parquet":
        frame = pd.read_parquet(file).head(SAMPLE_ROWS)
        return list(frame.columns), frame.to_dict("records"), None
    if fmt == "jsonl":
        rows = [json.loads(line) for line in read_head(file, encoding).splitlines()[:SAMPLE_ROWS] if line.strip()]
        return sorted({key for row in rows for key in row}), rows, None
    head = read_head(file, encoding)
    delimiter = sniff_delimiter(file, head)
    rows = list(csv.DictReader(io.StringIO(head, newline=""), delimiter=delimiter))[:SAMPLE_ROWS]
    columns = list(rows[0].keys()) if rows else []
    return [str(c).strip() for c in columns if c is not None], rows, delimiter


def choose_columns(columns: list[str], rows: list[dict[str, Any]]) -> dict[str, str | None]:
    """The text column (longest values), the label column (few distinct short values) and a split column."""
    values = {c: [str(r.get(c, "")) for r in rows if r.get(c) not in (None, "")] for c in columns}
    splits = [c for c in columns if values[c] and {v.strip().lower() for v in values[c]} <= set(SPLIT_SYNONYMS)]
    candidates = [c for c in columns if c not in splits and values[c]]
    if len(candidates) < 2:
        raise InitError(f"found columns {columns}: expected a text column and a label column")

    def mean_length(column: str) -> float:
        return float(np.mean([len(v) for v in values[column]]))

    named_text = [c for c in candidates if c.strip().lower() in TEXT_NAMES]
    text = named_text[0] if named_text else max(candidates, key=mean_length)
    rest = [c for c in candidates if c != text]
    named = [c for c in rest if c.strip().lower() in LABEL_NAMES]
    limit = max(2, min(100, len(rows) // 5))
    few = [c for c in rest if 2 <= len(set(values[c])) <= limit and mean_length(c) < 40]
    label = (named or sorted(few, key=lambda c: len(set(values[c]))) or [None])[0]
    if label is None:
        raise InitError(f"found columns {columns}: none looks like a label (2 to {limit} distinct short values)")
    return {"text": text, "label": label, "split": splits[0] if splits else None}


def _tag_scheme(file: Path, data: dict[str, Any]) -> str:
    """iob1 when the file's I- tags open entities (invalid IOB2) and reading it as IOB1 leaves none invalid."""
    from pipeline_lib.data.conll import iob1_to_iob2, iob2_errors, read_tagged

    tags = read_tagged(file, DataConfig.model_validate({**data, "tag_scheme": "iob2"}))["tags"]
    invalid = sum(len(iob2_errors(list(t))) for t in tags)
    return "iob1" if invalid and not sum(len(iob2_errors(iob1_to_iob2(list(t)))) for t in tags) else "iob2"


def _token_lengths(texts: list[str]) -> dict[str, int]:
    from pipeline_lib.training.modeling import load_tokenizer, resolve_model_source

    tokenizer = load_tokenizer(resolve_model_source("default"))
    sample = texts[:SAMPLE_ROWS]
    lengths = [len(ids) for ids in tokenizer(sample, truncation=False)["input_ids"]] if sample else [0]
    p50, p95, p99 = np.percentile(lengths, [50, 95, 99])
    return {"p50": int(p50), "p95": int(p95), "p99": int(p99), "max": int(max(lengths)), "measured": len(sample)}


def inspect(path: Path, task: str | None = None) -> Inspection:
    """Look at `path` (a file, or a folder of split files or data files) and choose the data options."""
    path = Path(path)
    if not path.exists():
        raise InitError(f"{path}: no such file or folder")
    files = split_files(path) if path.is_dir() else {}
    first = path / files["train"] if files else path
    if path.is_dir() and not files:
        data_files = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIX_FORMATS)
        if not data_files:
            raise InitError(f"{path}: no data files, and no train / dev / test files by name")
        first = data_files[0]
    try:
        encoding = detect_encoding(first)
        fmt = detect_format(first, encoding)
    except SniffError as exc:
        raise InitError(str(exc)) from None
    tagged = fmt in ("conll", "jsonl-tagged")
    task = task or ("token_classification" if tagged else "sequence_classification")
    data: dict[str, Any] = {"path": _relative(path)}
    choices: list[tuple[str, str]] = []
    if files:
        data["files"] = files
        choices.append(
            ("data.files", f"one file per split, by name: {', '.join(f'{k}={v}' for k, v in files.items())}")
        )
    if encoding != "utf-8" and fmt != "phrasebank":  # PhraseBank files are ISO-8859-1, which the reader assumes
        data["encoding"] = encoding
        choices.append(("data.encoding", f"{first.name} is not UTF-8; it reads as {encoding}"))
    if tagged:
        data["format"] = "jsonl" if fmt == "jsonl-tagged" else "conll"
        data["tag_scheme"] = _tag_scheme(first, data)
        if data["tag_scheme"] == "iob1":
            choices.append(("data.tag_scheme", "iob1: entities start with I- (as in CoNLL-2003); read as IOB2"))
    elif fmt == "phrasebank":
        data["format"] = "phrasebank"
    else:
        columns, rows, delimiter = _table(first, fmt, encoding)
        chosen = choose_columns(columns, rows)
        data["text_column"], data["label_column"] = chosen["text"], chosen["label"]
        choices.append(("data.text_column", f"{chosen['text']!r}: the column with the longest values"))
        choices.append(("data.label_column", f"{chosen['label']!r}: few distinct short values"))
        if chosen["split"]:
            data["split_column"] = chosen["split"]
            choices.append(("data.split_column", f"{chosen['split']!r} holds train / validation / test"))
        if delimiter and delimiter != ("\t" if first.suffix.lower() == ".tsv" else ","):
            data["delimiter"] = delimiter
            choices.append(("data.delimiter", f"{delimiter!r} separates the fields"))
    return _count(path, task, data, choices)


def _count(path: Path, task: str, data: dict[str, Any], choices: list[tuple[str, str]]) -> Inspection:
    """Read with the pipeline's readers and count what decides the remaining options."""
    strategy = task_for(task)
    config = DataConfig.model_validate(data)
    frame = read_data(config, strategy.read)
    frame = frame.assign(key=frame["text"].map(text_key, na_action="ignore"))
    found: dict[str, Any] = {}
    if task == "sequence_classification":
        labelled = frame[frame["label"].notna() & frame["key"].notna()]
        exact = int(labelled.duplicated(subset=["text", "label"]).sum())
        same_key = int(labelled.duplicated(subset=["key", "label"]).sum())
        conflicts = labelled.groupby("key")["label"].nunique()
        conflicted = int(labelled["key"].isin(conflicts[conflicts > 1].index).sum())
        found |= {"exact_repeats": exact, "near_duplicates": same_key - exact, "conflicting_rows": conflicted}
        if same_key:
            data["drop_duplicates"] = True
            why = f"{exact} exact repeats and {same_key - exact} near-duplicates (case, spacing, width)"
            choices.append(("data.drop_duplicates", why))
        if conflicted:
            data["drop_conflicting"] = True
            choices.append(("data.drop_conflicting", f"{conflicted} rows share a text with another label"))
        label_counts = {str(k): int(v) for k, v in frame["label"].value_counts().sort_index().items()}
    else:
        label_counts = strategy.label_counts(frame)
    damage: dict[str, int] = {}
    for text in frame["text"].dropna().astype(str):
        for kind in problems(text):
            damage[kind] = damage.get(kind, 0) + 1
    found["damaged_texts"] = damage
    if damage.get("text_mojibake") or damage.get("text_control_chars"):
        data["fix_text"] = True
        choices.append(("data.fix_text", ", ".join(f"{n} {kind.removeprefix('text_')}" for kind, n in damage.items())))
    given = "split" in frame.columns and frame["split"].notna().any()
    splits = assign_splits(frame, DataConfig.model_validate(data).split)
    found["split"] = "given by the data" if given else "hash of each text's key (new rows never move old ones)"
    if given:
        owners = pd.concat(part[["key"]].assign(split=name) for name, part in splits.items()).dropna()
        shared = int((owners.groupby("key")["split"].nunique() > 1).sum())
        found["texts_in_two_splits"] = shared
        if shared:
            data["cross_split_duplicates"] = "warn"
            choices.append(("data.cross_split_duplicates", f"the given splits share {shared} texts: reported, kept"))
    lengths = _token_lengths(frame["text"].dropna().astype(str).tolist())
    found["tokens"] = lengths
    max_length = next((n for n in LENGTHS if n >= lengths["p99"]), LENGTHS[-1])
    why = f"covers 99% of the texts (p50 {lengths['p50']}, p99 {lengths['p99']}, max {lengths['max']} tokens)"
    if task == "token_classification":
        why += "; longer sentences are windowed, never truncated"
    choices.append(("model.max_length", f"{max_length}: {why}"))
    rows = {name: len(part) for name, part in splits.items()}
    train, schedule = propose_schedule(task, rows.get("train", 0))
    return Inspection(path, task, data, rows, label_counts, found, [*choices, *schedule], max_length, train)


TARGET_STEPS = 1000  # optimizer steps a small dataset may take before the epoch cap: the recipes' steps on FPB
MAX_EPOCHS = 20  # the highest cap proposed (early stopping ends a run sooner once validation stalls)
LONG_EPOCH_STEPS = 1000  # an epoch longer than this is validated every EVAL_EVERY_STEPS steps instead of once
EVAL_EVERY_STEPS = 500


def propose_schedule(task: str, train_rows: int) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """`train.epochs` (the cap) and `train.eval_every` for a training split of `train_rows` rows (sentences for NER),
    with the reason for each. Early stopping ends a run once validation stops improving, so the cap only has to be
    high enough: a small split gets the epochs that reach about `TARGET_STEPS` optimizer steps (at most
    `MAX_EPOCHS`), never fewer than the task's recipe; an epoch of more than `LONG_EPOCH_STEPS` steps is validated
    every `EVAL_EVERY_STEPS` steps, so that early stopping can act inside it."""
    recipe = PipelineConfig.model_validate({"task": task}).train
    steps = max(1, math.ceil(train_rows / recipe.batch_size))
    epochs = min(MAX_EPOCHS, max(math.ceil(recipe.epochs), math.ceil(TARGET_STEPS / steps)))
    train: dict[str, Any] = {"epochs": epochs}
    rows = f"{train_rows} training {'sentences' if task == 'token_classification' else 'rows'}"
    size = f"{rows} = {steps} steps an epoch at batch {recipe.batch_size}"
    if epochs > recipe.epochs:
        why = (
            f"{epochs}: the cap; {size}: the recipe's {recipe.epochs:g} epochs ({steps * recipe.epochs:g} steps) "
            f"can end while validation still rises on data this small; {epochs} epochs allow {steps * epochs} steps"
            + (f" (at most {MAX_EPOCHS} epochs are proposed)" if epochs == MAX_EPOCHS else "")
        )
    else:
        why = f"{epochs}: the recipe's cap ({size}, {steps * epochs} steps in all)"
    patience = recipe.early_stopping_patience
    choices = [("train.epochs", f"{why}; the run stops sooner after {patience} validations without improvement")]
    if steps > LONG_EPOCH_STEPS:
        train["eval_every"] = EVAL_EVERY_STEPS
        choices.append(
            (
                "train.eval_every",
                f"{EVAL_EVERY_STEPS} steps: an epoch is {steps} steps, so validating about "
                f"{steps // EVAL_EVERY_STEPS} times an epoch lets early stopping end the run inside one",
            )
        )
    else:
        train["eval_every"] = "epoch"
        choices.append(("train.eval_every", f"epoch: an epoch is {steps} steps, short enough to validate after each"))
    return train, choices


def _relative(path: Path) -> str:
    return os.path.relpath(path.resolve(), Path.cwd())


def _slug(path: Path) -> str:
    stem = path.stem if path.is_file() else path.name
    return re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-") or "model"


def config_text(found: Inspection, name: str | None = None) -> str:
    """The proposed config as commented YAML (it loads as a valid `PipelineConfig`)."""
    import yaml

    name = name or _slug(found.path)
    data = {"name": name.replace("-", "_"), **found.data}
    roots = ["."]
    outside = Path(data["path"]).parts[:1] == ("..",) or Path(data["path"]).is_absolute()
    if outside:
        roots.append(str(Path(data["path"]).parent if Path(data["path"]).suffix else Path(data["path"])))
    raw = {
        "task": found.task,
        "data": data,
        "model": {"name": "default", "max_length": found.max_length},
        **({"train": found.train} if found.train else {}),
        "registry": {"model_name": name},
        "paths": {"read_roots": roots},
    }
    PipelineConfig.model_validate(raw)  # what is written must load
    labels = ", ".join(found.label_counts)
    header = [
        f"# Proposed by `tunepipe init {found.data['path']}`: review it, then `tunepipe run --config <this file>`.",
        f"# {found.task}; rows per split {found.rows}; labels found: {labels}.",
        "# data.labels is left out: the labels are inferred from the training split at each run (sorted).",
        *(f"# {option}: {why}" for option, why in found.choices),
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)


def summary(found: Inspection) -> str:
    """A short account of what was found and chosen, for the terminal."""
    lines = [f"{found.path}: {found.task}, rows per split {found.rows}"]
    shown = list(found.label_counts.items())[:12]
    lines.append(
        "  labels: " + ", ".join(f"{k} {v}" for k, v in shown) + (" …" if len(found.label_counts) > 12 else "")
    )
    for key, value in found.found.items():
        lines.append(f"  {key.replace('_', ' ')}: {value}")
    lines.append("  chose:")
    lines += [f"    {option} — {why}" for option, why in found.choices]
    return "\n".join(lines)
